// What nodes say to each other about chat rooms (frame types MUC_TYPES + 0 … 15): which rooms each
// runs, stanzas forwarded to a room's node, one copy of a room's message per node for its local
// occupants, and a room's state as plain data (replicas, merges). Stanzas travel as XML text
// after a one-line JSON header; a room's state as JSON with its stanzas as XML text.
import type { Element } from "../xml/element.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import type { RoomSnapshot } from "../muc/room.ts";
import type { Role } from "../muc/roles.ts";
import type { RoomStatus } from "../admin/socket.ts";
import { MUC_TYPES } from "./wire.ts";

/** On link up: the MUC domains the sender runs rooms for, and the rooms it runs (Hello). */
export const M_HELLO = MUC_TYPES;
/** The sender now runs a room: JSON Claim. */
export const M_CLAIM = MUC_TYPES + 1;
/** The sender no longer runs a room (gone, hibernated, merged away): JSON RoomRef. */
export const M_RELEASE = MUC_TYPES + 2;
/** A stanza for a room the receiver runs: JSON [from, to, hops], a newline, the XML. */
export const M_STANZA = MUC_TYPES + 3;
/** One room stanza for the receiver's local sessions: JSON [from, [to…]], a newline, the XML. */
export const M_FANOUT = MUC_TYPES + 4;
/** The whole state of a room the sender runs, for the receiver to take over: JSON RoomData. */
export const M_REPLICA = MUC_TYPES + 5;
/** Only the history of a replicated room changed: JSON RoomData with `history` alone. */
export const M_HISTORY = MUC_TYPES + 6;
/** The receiver no longer holds the sender's replica of a room: JSON RoomRef. */
export const M_UNREPLICATE = MUC_TYPES + 7;
/** Take this copy of a room into yours, or run it if you have none: JSON RoomData. */
export const M_MERGE = MUC_TYPES + 8;
/**
 * The rooms the sender runs, for `parley rooms`, disco#items and `max_rooms_per_user` on every
 * node: JSON AnnouncedRoom[].
 */
export const M_ROOMS = MUC_TYPES + 9;

export const MUC_FRAME_TYPES = [
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
];

export interface RoomRef {
  domain: string;
  room: string;
}

/** A room as its node announces it: what `parley rooms` shows, and its owners. */
export interface AnnouncedRoom extends RoomStatus {
  owners: string[];
}

/** M_CLAIM: the room, as it is just after the stanza that brought it here. */
export interface Claim extends RoomRef {
  status: AnnouncedRoom;
}

export interface Hello {
  /** Domains whose rooms the sender runs (`host_rooms`). */
  hosting: string[];
  rooms: RoomRef[];
}

export interface WireSnapshot {
  config: RoomSnapshot["config"];
  affiliations: RoomSnapshot["affiliations"];
  subject: RoomSnapshot["subject"];
  locked: boolean;
  occupants: {
    nick: string;
    bare: string;
    role: Role;
    sessions: { jid: string; presence: string }[];
  }[];
  history: { xml: string; at: number }[];
}

export interface RoomData extends RoomRef {
  snapshot: WireSnapshot;
}

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

export function splitHeader<T>(payload: string): { header: T; xml: string } {
  const nl = payload.indexOf("\n");
  return { header: JSON.parse(payload.slice(0, nl)) as T, xml: payload.slice(nl + 1) };
}

export type StanzaHeader = [from: string, to: string, hops: number];
export type FanoutHeader = [from: string, to: string[]];

export function jids(from: string, to: string): [Jid, Jid] | null {
  const f = parseJid(from);
  const t = parseJid(to);
  return f && t ? [f, t] : null;
}
