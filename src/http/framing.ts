// What XMPP over HTTP frames alike, on a WebSocket (RFC 7395) and in BOSH bodies (XEP-0206):
// each element sent stands alone, so it carries the namespace declarations a stream header gave
// it on TCP; and input the transport cannot stop while the stream is rate limited is bounded.
import { NS } from "../xml/ns.ts";
import type { Config } from "../config/schema.ts";

const CLIENT_NS = ` xmlns='${NS.client}'`;
const STREAM_NS = ` xmlns:stream='${NS.streams}'`;

/**
 * Characters held while a stream is rate limited before its client is refused: what TCP's
 * window would hold (one burst), and one stanza more.
 */
export function heldLimit(limits: Config["limits"]): number {
  return limits.rate_burst_bytes + limits.max_stanza_size;
}

/**
 * An element as it stands alone, a message of its own (RFC 7395 §3.3.3) or a payload of a BOSH
 * <body/>: a stanza names jabber:client, a stream element (features, error) declares the stream
 * prefix. The serializer escapes `>` in attribute values, so the first `>` ends the start tag.
 */
export function standalone(item: string): string {
  // Per stanza sent: first characters and one search, no regular expression, no slice to test.
  const name = item.startsWith("<message")
    ? 8
    : item.startsWith("<presence")
    ? 9
    : item.startsWith("<iq")
    ? 3
    : item.startsWith("<stream:")
    ? -1
    : 0;
  if (name === 0) return item;
  const end = item.indexOf(">");
  if (name > 0) {
    const next = item.charCodeAt(name);
    if (next !== 32 && next !== 62 && next !== 47) return item; // another name, e.g. <iqx>
    // With its quote: the serializer escapes quotes in attribute values, so no value holds one.
    if (hasAttr(item, " xmlns=", end)) return item;
    return item.slice(0, name) + CLIENT_NS + item.slice(name);
  }
  if (hasAttr(item, " xmlns:stream=", end)) return item;
  const at = item.search(/[\s/>]/);
  return item.slice(0, at) + STREAM_NS + item.slice(at);
}

/** Whether the start tag ending at `end` has the attribute `name` (" name=", then a quote). */
function hasAttr(item: string, name: string, end: number): boolean {
  for (let at = item.lastIndexOf(name, end); at !== -1; at = item.lastIndexOf(name, at - 1)) {
    const q = item.charCodeAt(at + name.length);
    if (q === 39 || q === 34) return true;
  }
  return false;
}
