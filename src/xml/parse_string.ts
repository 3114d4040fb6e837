// Parses one stored, trusted stanza string back into an Element (offline messages, vCards,
// private XML). It goes through the stream parser, so a stored stanza comes back exactly as the
// live one was built: same namespace normalization, same prefix declarations.
import type { Element } from "./element.ts";
import { NS_STREAM, type ParserLimits, StreamParser } from "./parser.ts";

// Stored top-level stanzas carry no xmlns: bind jabber:client so children resolve as before.
const HEADER = `<stream:stream xmlns="jabber:client" xmlns:stream="${NS_STREAM}">`;
const UNLIMITED = { maxStanzaSize: Infinity, maxDepth: Infinity };

/**
 * Stanzas kept as text (archived, queued by a session, brought from another node): read within
 * the depth any node allows (limits.max_depth's ceiling), their size bounded where they came from.
 */
export const KEPT_LIMITS: ParserLimits = { maxStanzaSize: Infinity, maxDepth: 1024 };

/** The stanza `xml` holds; null when it does not parse within `limits` (none by default). */
export function parseStanza(xml: string, limits: ParserLimits = UNLIMITED): Element | null {
  let first: Element | null = null;
  let error = false;
  const parser = new StreamParser({
    streamStart() {},
    stanza: (el) => first ??= el,
    streamEnd() {},
    streamError: () => error = true,
  }, limits);
  parser.writeText(HEADER + xml + "</stream:stream>");
  return error ? null : first;
}
