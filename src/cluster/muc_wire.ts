// What nodes say to each other about chat rooms (frame types MUC_TYPES + 0 … 15): which rooms each
// runs, stanzas forwarded to a room's node, one copy of a room's message per node for its local
// occupants, and a room's state as plain data (replicas, merges). Stanzas travel as XML text
// after a one-line JSON header; a room's state as JSON with its stanzas as XML text.
//
// Room names are prepared localparts and nicks valid nicknames, as a room made here has them;
// free text (names, descriptions, subject, password, nicks) holds only characters XML allows,
// for it reaches clients' streams. Limits of the receiver's MUC service (occupants, history,
// owners) are checked by the handlers (muc_rooms.ts), which know the service.
import { z } from "zod";
import type { Element } from "../xml/element.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import type { RoomSnapshot } from "../muc/room.ts";
import type { RoomStatus } from "../admin/socket.ts";
import { ALLOW_PM, type RoomConfig, WHOIS } from "../muc/room_config.ts";
import { MUC_TYPES } from "./wire.ts";
import { prepLocal, prepNickname } from "../jid/precis.ts";
import {
  count,
  decimal,
  domain,
  FrameError,
  headed,
  intIn,
  jid,
  jidString,
  json,
  name,
  stanzaXml,
} from "./codec.ts";
import { frameType } from "./frame_type.ts";

/** JIDs in room frames stay text (checked and prepared). */
const jidText = jid.transform((j) => j.full);

/** Characters XML 1.0 does not allow (controls but tab and newlines, U+FFFE, U+FFFF). */
// deno-lint-ignore no-control-regex -- the controls are what it finds
const NOT_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

/** Whether `s` can be written to an XML stream as it is (no lone surrogates either). */
function xmlSafe(s: string): boolean {
  return !NOT_XML.test(s) && s.isWellFormed();
}

/** Free text of at most `max` UTF-16 units that XML allows. */
const freeText = (max: number) =>
  z.string().max(max).refine(xmlSafe, "a character XML does not allow");

/** Longest free text of a room (name, description, subject). */
const text = freeText(65_536);

/** A room's name: a localpart as prepared (RFC 7622), the room JID's. */
const roomName = z.string().max(1023).refine(
  (s) => prepLocal(s) === s,
  "not a prepared localpart",
);

/** An occupant's nick: a valid nickname (RFC 8266). */
const nick = freeText(1023).refine((s) => prepNickname(s) !== null, "not a valid nickname");

/** The JID of a room: bare, with a localpart. */
const roomJid = jid.refine((j) => j.isBare && j.local !== "", "not a room JID").transform((j) =>
  j.full
);
/** Most entries of a room's lists (occupants, affiliations, history) in one frame. */
const MAX_ENTRIES = 1_000_000;

/** A record with at most `max` keys, checked before its entries are. */
function bounded<V extends z.ZodType>(key: z.ZodType<string, string>, value: V, max: number) {
  return z.custom<object>(
    (v) => typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length <= max,
    `an object of at most ${max} keys`,
  ).pipe(z.record(key, value));
}

const roomRef = z.object({ domain, room: roomName });
export type RoomRef = z.output<typeof roomRef>;

const roomStatus = z.object({
  jid: roomJid,
  name: text,
  occupants: count,
  persistent: z.boolean(),
  public: z.boolean(),
  membersOnly: z.boolean(),
  locked: z.boolean(),
  node: name.optional(),
}) satisfies z.ZodType<RoomStatus>;

/** A room as its node announces it: what `parley rooms` shows, and its owners. */
const announcedRoom = roomStatus.extend({ owners: z.array(jidText).max(MAX_ENTRIES) });
export type AnnouncedRoom = z.output<typeof announcedRoom>;

/** M_CLAIM: the room, as it is just after the stanza that brought it here; its status is its own. */
const claim = roomRef.extend({ status: announcedRoom }).refine(
  (c) => c.status.jid === `${c.room}@${c.domain}`,
  "the status of another room",
);
export type Claim = z.output<typeof claim>;

const hello = z.object({
  /** Domains whose rooms the sender runs (`host_rooms`). */
  hosting: z.array(domain).max(10_000),
  rooms: z.array(roomRef).max(MAX_ENTRIES),
});
export type Hello = z.output<typeof hello>;

const roomConfig = z.object({
  name: text,
  description: text,
  persistent: z.boolean(),
  public: z.boolean(),
  membersOnly: z.boolean(),
  moderated: z.boolean(),
  passwordProtected: z.boolean(),
  password: freeText(1024),
  whois: z.enum(WHOIS),
  maxUsers: z.number().int().min(1).max(1_000_000),
  changeSubject: z.boolean(),
  allowInvites: z.boolean(),
  allowPm: z.enum(ALLOW_PM),
  historyLength: z.number().int().min(0).max(10_000),
  // Absent from a node of a version before archives: that node's rooms did not archive.
  archiving: z.boolean().default(false),
}) satisfies z.ZodType<RoomConfig, unknown>;

const history = z.array(z.object({ xml: stanzaXml, at: z.number().min(0) })).max(10_000);

const wireSnapshot = z.object({
  config: roomConfig,
  affiliations: bounded(
    jidText,
    z.enum(["owner", "admin", "member", "outcast", "none"]),
    MAX_ENTRIES,
  ),
  subject: z.object({ text, nick: z.union([z.literal(""), nick]) }),
  locked: z.boolean(),
  occupants: z.array(z.object({
    nick,
    bare: jidText,
    role: z.enum(["moderator", "participant", "visitor", "none"]),
    sessions: z.array(z.object({ jid: jidText, presence: stanzaXml })).max(10_000),
  })).max(MAX_ENTRIES),
  history,
});
export type WireSnapshot = z.output<typeof wireSnapshot>;

const roomData = roomRef.extend({ snapshot: wireSnapshot });
export type RoomData = z.output<typeof roomData>;

const REF = `{"domain":"conference.localhost","room":"lobby"}`;
const STATUS = `{"jid":"lobby@conference.localhost","name":"Lobby","occupants":1,` +
  `"persistent":false,"public":true,"membersOnly":false,"locked":false,` +
  `"owners":["alice@localhost"]}`;
const SNAPSHOT = `{"config":{"name":"Lobby","description":"","persistent":false,"public":true,` +
  `"membersOnly":false,"moderated":false,"passwordProtected":false,"password":"",` +
  `"whois":"moderators","maxUsers":200,"changeSubject":false,"allowInvites":false,` +
  `"allowPm":"anyone","historyLength":20},"affiliations":{"alice@localhost":"owner"},` +
  `"subject":{"text":"","nick":""},"locked":false,"occupants":[{"nick":"alice",` +
  `"bare":"alice@localhost","role":"moderator","sessions":[{"jid":"alice@localhost/r",` +
  `"presence":"<presence from='alice@localhost/r'/>"}]}],` +
  `"history":[{"xml":"<message type='groupchat'><body>hi</body></message>","at":1}]}`;

/** On link up: the MUC domains the sender runs rooms for, and the rooms it runs (Hello). */
export const M_HELLO = frameType(
  MUC_TYPES,
  "muc hello",
  json(hello),
  `{"hosting":["conference.localhost"],"rooms":[${REF}]}`,
);
/** The sender now runs a room: JSON Claim. */
export const M_CLAIM = frameType(
  MUC_TYPES + 1,
  "muc claim",
  json(claim),
  `{"domain":"conference.localhost","room":"lobby","status":${STATUS}}`,
);
/** The sender no longer runs a room (gone, hibernated, merged away): JSON RoomRef. */
export const M_RELEASE = frameType(MUC_TYPES + 2, "muc release", json(roomRef), REF);
/**
 * A stanza for a room the receiver runs: JSON [from, to, hops], a newline, the XML. The sender
 * keeps it until acknowledged (M_STANZA_ACK, or the count in an M_FANOUT), and hands it to the
 * room's next node if the receiver is declared dead first.
 */
export const M_STANZA = frameType(
  MUC_TYPES + 3,
  "muc stanza",
  headed((h): [from: string, to: string, hops: number] => {
    if (!Array.isArray(h) || h.length !== 3) {
      throw new FrameError("the header: not [from, to, hops]");
    }
    return [jidString(h[0], "from"), jidString(h[1], "to"), intIn(h[2], 0, 16, "hops")];
  }),
  `["alice@localhost/r","lobby@conference.localhost",0]\n` +
    `<message type='groupchat' to='lobby@conference.localhost'><body>hi</body></message>`,
);
/**
 * One room stanza for the receiver's local sessions: JSON [from, [to…], acked], a newline, the
 * XML; `acked` acknowledges the receiver's first M_STANZA frames (as M_STANZA_ACK does).
 */
export const M_FANOUT = frameType(
  MUC_TYPES + 4,
  "muc fanout",
  headed((h): [from: string, to: string[], acked?: number] => {
    // Read by hand: every message of a room goes to each other node as one of these.
    const [from, to, acked] = Array.isArray(h) ? h : [];
    if (!Array.isArray(to) || to.length > MAX_ENTRIES || (h as unknown[]).length > 3) {
      throw new FrameError("the header: not [from, [to…], acked]");
    }
    return [
      jidString(from, "from"),
      to.map((t) => jidString(t, "to")),
      acked === undefined ? undefined : intIn(acked, 0, Number.MAX_SAFE_INTEGER, "acked"),
    ];
  }),
  `["lobby@conference.localhost/alice",["bob@localhost/r"],3]\n` +
    `<message type='groupchat' from='lobby@conference.localhost/alice'><body>hi</body></message>`,
);
/** The whole state of a room the sender runs, for the receiver to take over: JSON RoomData. */
export const M_REPLICA = frameType(
  MUC_TYPES + 5,
  "muc replica",
  json(roomData),
  `{"domain":"conference.localhost","room":"lobby","snapshot":${SNAPSHOT}}`,
);
/** Only the history of a replicated room changed: JSON RoomRef with `history`. */
export const M_HISTORY = frameType(
  MUC_TYPES + 6,
  "muc history",
  json(roomRef.extend({ history })),
  `{"domain":"conference.localhost","room":"lobby","history":[]}`,
);
/** The receiver no longer holds the sender's replica of a room: JSON RoomRef. */
export const M_UNREPLICATE = frameType(MUC_TYPES + 7, "muc unreplicate", json(roomRef), REF);
/** Take this copy of a room into yours, or run it if you have none: JSON RoomData. */
export const M_MERGE = frameType(
  MUC_TYPES + 8,
  "muc merge",
  json(roomData),
  `{"domain":"conference.localhost","room":"lobby","snapshot":${SNAPSHOT}}`,
);
/**
 * The rooms the sender runs, for `parley rooms`, disco#items and `max_rooms_per_user` on every
 * node: JSON AnnouncedRoom[].
 */
export const M_ROOMS = frameType(
  MUC_TYPES + 9,
  "muc rooms",
  json(z.array(announcedRoom).max(MAX_ENTRIES)),
  `[${STATUS}]`,
);
/** The sender has handled the receiver's first N M_STANZA frames on this link: N as text. */
export const M_STANZA_ACK = frameType(MUC_TYPES + 10, "muc stanza ack", decimal, "3");

export const MUC_FRAMES = [
  M_HELLO,
  M_CLAIM,
  M_RELEASE,
  M_STANZA,
  M_FANOUT,
  M_REPLICA,
  M_HISTORY,
  M_UNREPLICATE,
  M_MERGE,
  M_ROOMS,
  M_STANZA_ACK,
];

export function snapshotToWire(s: RoomSnapshot): WireSnapshot {
  return {
    config: s.config,
    affiliations: s.affiliations,
    subject: s.subject,
    locked: s.locked,
    occupants: s.occupants.map((o) => ({
      nick: o.nick,
      bare: o.bare,
      role: o.role,
      sessions: o.sessions.map((s) => ({ jid: s.jid.full, presence: s.presence.toString() })),
    })),
    history: historyToWire(s),
  };
}

export function historyToWire(s: Pick<RoomSnapshot, "history">): WireSnapshot["history"] {
  return s.history.map((e) => ({ xml: e.stanza.toString(), at: e.at }));
}

/** Reads a snapshot back; stanzas that do not parse are left out. */
export function snapshotFromWire(
  w: WireSnapshot,
  parse: (xml: string) => Element | null,
): RoomSnapshot {
  return {
    config: w.config,
    affiliations: w.affiliations,
    subject: w.subject,
    locked: w.locked,
    occupants: w.occupants.map((o) => ({
      nick: o.nick,
      bare: o.bare,
      role: o.role,
      sessions: o.sessions.flatMap((s) => {
        const jid = parseJid(s.jid);
        const presence = parse(s.presence);
        return jid && presence ? [{ jid, presence }] : [];
      }),
    })).filter((o) => o.sessions.length > 0),
    history: w.history.flatMap((e) => {
      const stanza = parse(e.xml);
      return stanza ? [{ stanza, at: e.at }] : [];
    }),
  };
}

/** A header line and a stanza's XML. */
export function withHeader(header: unknown, stanza: Element | string): string {
  return JSON.stringify(header) + "\n" + stanza;
}

export type StanzaHeader = [from: string, to: string, hops: number];
export type FanoutHeader = [from: string, to: string[], acked?: number];

export function jids(from: string, to: string): [Jid, Jid] | null {
  const f = parseJid(from);
  const t = parseJid(to);
  return f && t ? [f, t] : null;
}
