// What nodes say to each other above the link: session records (a snapshot on link up, then
// deltas), stanzas for sessions held by the receiver, closes, cache invalidations and their acks.
// Records are JSON; a stanza travels as its XML text, serialized once per frame. Nothing here
// carries a password or a SCRAM key: links carry stanzas and session records only.
import { z } from "zod";
import type { Element } from "../xml/element.ts";
import { NS_STREAM, StreamParser } from "../xml/parser.ts";
import { parseJid } from "../jid/jid.ts";
import { FIRST_APP_TYPE } from "./frames.ts";
import {
  checkStanza,
  count,
  decimal,
  FrameError,
  fullJid,
  jid,
  jidText,
  json,
  name,
  stanzaXml,
} from "./codec.ts";
import { frameType } from "./frame_type.ts";
import { KEPT_LIMITS } from "../xml/parse_string.ts";

/** Directed presences a handed-over session may carry (limits.max_directed_presences' ceiling). */
const MAX_DIRECTED = 1_000_000;
/**
 * A stanza from a peer: nodes pass on what clients sent within their own limits, so the largest
 * depth any node may allow (limits.max_depth's ceiling); the frame size bounds the stanza.
 */
export const PEER_STANZA_LIMITS = KEPT_LIMITS;

/** Records per SNAPSHOT frame (a few hundred bytes each). */
export const SNAPSHOT_PART = 2000;

/** A session record: what every node knows of a session. */
export const sessionRecord = z.object({
  jid: fullJid,
  boundAt: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  available: z.boolean(),
  priority: z.number().int().min(-128).max(127),
  // Bounded by the frame, and by the bytes of presence believed of a peer (directory.ts).
  presence: z.string().pipe(stanzaXml).nullable(),
  roster: z.boolean(),
  blocklist: z.boolean(),
  carbons: z.boolean(),
  /** The node keeping a replica of the session (XEP-0198 resumption), where it lives on. */
  replica: name.optional(),
  /** The session moved to the sender from another node (resumed there, or taken over). */
  moved: z.boolean().optional(),
  /** Waiting for a resumption, its connection gone (absent from nodes before push existed). */
  detached: z.boolean().optional(),
});

/** A session record as it travels. */
export type WireRecord = z.input<typeof sessionRecord>;
/** A session record as received: its JID prepared. */
export type SessionRecord = z.output<typeof sessionRecord>;

const RECORD_EXAMPLE = JSON.stringify(
  {
    jid: "alice@localhost/phone",
    boundAt: 1_765_000_000_000,
    available: true,
    priority: 0,
    presence: "<presence from='alice@localhost/phone'/>",
    roster: true,
    blocklist: false,
    carbons: false,
  } satisfies WireRecord,
);

/** Sessions the sender holds, sent on link up in parts; `last` ends it. */
export const SNAPSHOT = frameType(
  FIRST_APP_TYPE,
  "snapshot",
  json(z.object({ records: z.array(sessionRecord).max(SNAPSHOT_PART), last: z.boolean() })),
  `{"records":[${RECORD_EXAMPLE}],"last":true}`,
);
/** One session bound or changed. */
export const RECORD = frameType(FIRST_APP_TYPE + 1, "record", json(sessionRecord), RECORD_EXAMPLE);
/** One session ended: its full JID. */
export const UNBOUND = frameType(FIRST_APP_TYPE + 2, "unbound", jidText, "alice@localhost/phone");
/** A stanza for a session the receiver holds: a flag, the full JID, a newline, the XML. */
export const DELIVER = frameType(FIRST_APP_TYPE + 3, "deliver", {
  decode(text) {
    const flag = text[0];
    const nl = text.indexOf("\n");
    if ((flag !== REROUTED && flag !== FIRST_HOP && flag !== RESENT) || nl < 0) {
      throw new FrameError("not a flag, a JID and a stanza");
    }
    const to = parseJid(text.slice(1, nl));
    if (!to) throw new FrameError("not a valid JID");
    return { flag, to, xml: checkStanza(text.slice(nl + 1)) };
  },
}, "0alice@localhost/phone\n<message to='alice@localhost/phone'><body>hi</body></message>");
/** How many DELIVER frames of this link the receiver has handled (decimal). */
export const DELIVERED = frameType(FIRST_APP_TYPE + 4, "delivered", decimal, "12");
/** Close a session whose account was removed: JSON { jid, condition, text }. */
export const CLOSE = frameType(
  FIRST_APP_TYPE + 5,
  "close",
  json(z.object({
    jid: fullJid,
    condition: z.literal("not-authorized"),
    text: z.string().max(1024),
  })),
  `{"jid":"alice@localhost/phone","condition":"not-authorized","text":"account removed"}`,
);
/** Drop a cached key: JSON { id, cache, key }; answered by CLEARED with the id. */
export const INVALIDATE = frameType(
  FIRST_APP_TYPE + 6,
  "invalidate",
  json(z.object({ id: count, cache: name, key: z.string().max(4096) })),
  `{"id":1,"cache":"roster","key":"alice@localhost"}`,
);
export const CLEARED = frameType(FIRST_APP_TYPE + 7, "cleared", decimal, "1");
/**
 * To the node of a bind that replaced a session here: the entities that session sent directed
 * presence to (JSON { jid, directed }), to be told when the new session goes unavailable.
 */
export const HANDOVER = frameType(
  FIRST_APP_TYPE + 8,
  "handover",
  json(z.object({ jid: fullJid, directed: z.array(jid).max(MAX_DIRECTED) })),
  `{"jid":"alice@localhost/phone","directed":["room@conference.localhost/nick"]}`,
);

/** Frame types of the services' cluster sides: 16 each. */
export const MUC_TYPES = FIRST_APP_TYPE + 16;
export const COMPONENT_TYPES = FIRST_APP_TYPE + 32;
export const PROXY65_TYPES = FIRST_APP_TYPE + 48;
export const SM_TYPES = FIRST_APP_TYPE + 64;

/** The session directory's frame types. */
export const SESSION_FRAMES = [
  SNAPSHOT,
  RECORD,
  UNBOUND,
  DELIVER,
  DELIVERED,
  CLOSE,
  INVALIDATE,
  CLEARED,
  HANDOVER,
];

/** The DELIVER flag of a stanza already rerouted once by a node that found its target gone. */
export const REROUTED = "1";
export const FIRST_HOP = "0";
/**
 * The DELIVER flag of a stanza resent after the node it went to died: the session's new node
 * may have it already (from the replica of a resumable session).
 */
export const RESENT = "2";

export function deliverPayload(flag: string, to: string, stanza: Element): string {
  return flag + to + "\n" + stanza.toString();
}

/**
 * Parses the stanzas of one peer's DELIVER frames with one long-lived stream parser (a parser
 * per stanza would cost more than the delivery itself).
 */
export class StanzaDecoder {
  #last: Element | null = null;
  #stanzas = 0;
  #parser = this.#fresh();

  #fresh(): StreamParser {
    const parser = new StreamParser({
      streamStart() {},
      stanza: (el) => {
        this.#last = el;
        this.#stanzas++;
      },
      streamEnd() {},
      streamError: () => this.#stanzas = -1,
    }, PEER_STANZA_LIMITS);
    parser.writeText(`<stream:stream xmlns="jabber:client" xmlns:stream="${NS_STREAM}">`);
    return parser;
  }

  /** The one stanza `xml` holds; null (and a fresh parser) when it holds anything else. */
  decode(xml: string): Element | null {
    this.#last = null;
    this.#stanzas = 0;
    this.#parser.writeText(xml);
    // One stanza, and nothing begun after it (which would swallow the next frame's stanza).
    if (this.#stanzas === 1 && this.#parser.betweenStanzas) return this.#last;
    this.#parser = this.#fresh();
    return null;
  }

  /** The one stanza `xml` holds; a FrameError when it holds anything else. */
  stanza(xml: string): Element {
    const el = this.decode(xml);
    if (!el) throw new FrameError("the stanza is not one well-formed stanza");
    return el;
  }
}
