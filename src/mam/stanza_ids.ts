// Unique and stable stanza ids (XEP-0359) for what the archives keep: the id an archived message
// carries in its live delivery (<stanza-id by=archive/>) is its archive entry's. A message a
// client may send again (stream management resends what it had no acknowledgement for) gets an
// id derived from what identifies it in that session, so a resend lands on the entry already
// there; any other gets a new one. Ids claiming this server that arrive from outside are removed
// where stanzas enter, so a stanza-id by one of our JIDs was put there by us.
import { createHash, randomBytes } from "node:crypto";
import { Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { parseJid } from "../jid/jid.ts";

/** This process's ids start with this: unique across nodes and restarts, then counted. */
const PREFIX = randomBytes(9).toString("base64url");
let counter = 0;

/** A new id, never given before by any node. */
export function newStanzaId(): string {
  return PREFIX + (counter++).toString(36);
}

/**
 * The id of a message known by `key` (e.g. its session's resumption id and its own id): the same
 * on every node for the same key, and telling nothing of it.
 */
export function derivedStanzaId(key: string): string {
  return createHash("sha256").update(key).digest("base64url").slice(0, 24);
}

/** The id `by` gave the message, if it carries one. */
export function stanzaIdBy(msg: Element, by: string): string | undefined {
  for (const c of msg.children) {
    if (typeof c !== "string" && c.name === "stanza-id" && c.attrs.by === by) {
      if (c.attrs.xmlns === NS.sid) return c.attrs.id;
    }
  }
  return undefined;
}

/** The message with `by`'s id added (a copy sharing its children). */
export function stamped(msg: Element, by: string, id: string): Element {
  return new Element(msg.name, msg.attrs, [
    ...msg.children,
    x("stanza-id", { xmlns: NS.sid, by, id }),
  ]);
}

/**
 * The message without the stanza ids whose `by` is served here (`ours(domain)`): from outside
 * they are forgeries. The message itself when it has none (the common case: no copy).
 */
export function withoutOurIds(msg: Element, ours: (domain: string) => boolean): Element {
  const forged = (c: Element | string) =>
    typeof c !== "string" && c.name === "stanza-id" && c.attrs.xmlns === NS.sid &&
    ours(domainOf(c.attrs.by ?? ""));
  if (!msg.children.some(forged)) return msg;
  return new Element(msg.name, msg.attrs, msg.children.filter((c) => !forged(c)));
}

/** The domain of a `by` as JIDs are compared (prepared), or the text itself if it is none. */
function domainOf(jid: string): string {
  return parseJid(jid)?.domain ?? jid;
}
