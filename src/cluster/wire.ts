// What nodes say to each other above the link: session records (a snapshot on link up, then
// deltas), stanzas for sessions held by the receiver, closes, cache invalidations and their acks.
// Records are JSON; a stanza travels as its XML text, serialized once per frame. Nothing here
// carries a password or a SCRAM key: links carry stanzas and session records only.
import type { Element } from "../xml/element.ts";
import { NS_STREAM, StreamParser } from "../xml/parser.ts";
import { FIRST_APP_TYPE } from "./frames.ts";

/** Sessions the sender holds, sent on link up in parts (SnapshotPart); `last` ends it. */
export const SNAPSHOT = FIRST_APP_TYPE;
/** One session bound or changed. */
export const RECORD = FIRST_APP_TYPE + 1;
/** One session ended: its full JID. */
export const UNBOUND = FIRST_APP_TYPE + 2;
/** A stanza for a session the receiver holds: a flag, the full JID, a newline, the XML. */
export const DELIVER = FIRST_APP_TYPE + 3;
/** How many DELIVER frames of this link the receiver has handled (decimal). */
export const DELIVERED = FIRST_APP_TYPE + 4;
/** Close a session: JSON { jid, condition, text }. */
export const CLOSE = FIRST_APP_TYPE + 5;
/** Drop a cached key: JSON { id, cache, key }; answered by CLEARED with the id. */
export const INVALIDATE = FIRST_APP_TYPE + 6;
export const CLEARED = FIRST_APP_TYPE + 7;
/**
 * To the node of a bind that replaced a session here: the entities that session sent directed
 * presence to (JSON { jid, directed }), to be told when the new session goes unavailable.
 */
export const HANDOVER = FIRST_APP_TYPE + 8;

/** Frame types of the services' cluster sides (src/cluster/extensions.ts): 16 each. */
export const MUC_TYPES = FIRST_APP_TYPE + 16;
export const COMPONENT_TYPES = FIRST_APP_TYPE + 32;
export const PROXY65_TYPES = FIRST_APP_TYPE + 48;

/** A session record as it travels. */
export interface WireRecord {
  jid: string;
  boundAt: number;
  available: boolean;
  priority: number;
  presence: string | null;
  roster: boolean;
  blocklist: boolean;
  carbons: boolean;
}

export interface SnapshotPart {
  records: WireRecord[];
  last: boolean;
}

/** The DELIVER flag of a stanza already rerouted once by a node that found its target gone. */
export const REROUTED = "1";
export const FIRST_HOP = "0";

export function deliverPayload(flag: string, to: string, stanza: Element): string {
  return flag + to + "\n" + stanza.toString();
}

const decoder = new TextDecoder();

export function text(payload: Uint8Array): string {
  return decoder.decode(payload);
}

/**
 * Parses the stanzas of one peer's DELIVER frames with one long-lived stream parser (a parser
 * per stanza would cost more than the delivery itself).
 */
export class StanzaDecoder {
  #last: Element | null = null;
  #parser = this.#fresh();

  #fresh(): StreamParser {
    const parser = new StreamParser({
      streamStart() {},
      stanza: (el) => this.#last = el,
      streamEnd() {},
      streamError: () => this.#parser = this.#fresh(),
    }, { maxStanzaSize: Infinity, maxDepth: Infinity });
    parser.writeText(`<stream:stream xmlns="jabber:client" xmlns:stream="${NS_STREAM}">`);
    return parser;
  }

  decode(xml: string): Element | null {
    this.#last = null;
    this.#parser.writeText(xml);
    return this.#last;
  }
}
