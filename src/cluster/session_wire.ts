// What nodes say to each other about resumable client sessions (XEP-0198; frame types SM_TYPES +
// 0 … 15): the holder of a session keeps its replica on another node up to date (SM_SYNC, batched
// per tick), drops it (SM_FORGET), and a node where a client resumes takes the session from its
// holder (SM_TAKE, answered by SM_TAKEN with the session's state, or none).
import { z } from "zod";
import {
  checkStanza,
  type Codec,
  count,
  FrameError,
  fullJid,
  intIn,
  json,
  stanzaXml,
} from "./codec.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import { frameType } from "./frame_type.ts";
import { sessionRecord, SM_TYPES } from "./wire.ts";

const MAX_COUNTER = 2 ** 32 - 1;
const counter = z.number().int().min(0).max(MAX_COUNTER);
/** Stanza ids remembered per session (stream_management.ts keeps fewer). */
const MAX_SEEN = 1024;
/** Stanzas one entry adds: the holder splits more over several frames. */
export const MAX_ADDED = 10_000;
const MAX_DIRECTED = 1_000_000;
/** A resumption id: 20 random characters, a dot, a resource of up to 1023 bytes in base64url. */
const MAX_ID = 1400;
/** Acknowledged stanzas a session carries (stream_management.ts keeps 64 of them). */
const MAX_RECENT = 256;

const seen = z.array(z.tuple([z.string().max(1024), counter])).max(MAX_SEEN);

/** A replica's start: what the session was when its replica began here. */
interface Head {
  id: string;
  timeoutMs: number;
  boundAt: number;
}

/** One session's changes since the last entry for it (or, with `head`, its whole state). */
export interface SyncEntry {
  jid: string;
  head?: Head;
  handled: number;
  acked: number;
  /** Stanzas sent to the client since the last entry, oldest first. */
  add: string[];
  seen: [string, number][];
  detached: boolean;
  announced: boolean;
  /** Present when it may have changed. */
  directed?: string[];
}

/** An entry as received: its JID prepared. */
export type SyncEntryIn = Omit<SyncEntry, "jid"> & { jid: Jid };

/** Entries per SM_SYNC frame at most. */
const MAX_ENTRIES = 100_000;

/**
 * SM_SYNC's payload: the entries as a JSON line with the length of each added stanza in place of
 * its text, then the stanzas' text one after the other. Stanzas are most of it: written as they
 * are, neither escaped into JSON nor checked by a schema one by one (what each costs per stanza
 * exceeded the rest of its delivery).
 */
export function encodeSync(entries: SyncEntry[]): string {
  let body = "";
  const header = entries.map((e) => {
    for (const xml of e.add) body += xml;
    return { ...e, add: e.add.map((xml) => xml.length) };
  });
  return JSON.stringify(header) + "\n" + body;
}

const syncCodec: Codec<SyncEntryIn[]> = {
  decode(text) {
    const nl = text.indexOf("\n");
    if (nl < 0) throw new FrameError("no header line");
    const header = parseJson(text.slice(0, nl));
    if (!Array.isArray(header) || header.length > MAX_ENTRIES) {
      throw new FrameError("the header: not a list of entries");
    }
    let at = nl + 1;
    const entries = header.map((v): SyncEntryIn => {
      const e = readEntry(v);
      const add = (v as { add: number[] }).add.map((n) => {
        if (at + n > text.length) throw new FrameError("the stanzas: shorter than their lengths");
        return checkStanza(text.slice(at, at += n));
      });
      return { ...e, add };
    });
    if (at !== text.length) throw new FrameError("the stanzas: longer than their lengths");
    return entries;
  },
};

function readEntry(v: unknown): Omit<SyncEntryIn, "add"> {
  if (typeof v !== "object" || v === null) throw new FrameError("an entry: not an object");
  const e = v as Record<string, unknown>;
  const jid = parseJid(typeof e.jid === "string" ? e.jid : "");
  if (!jid || jid.isBare) throw new FrameError("an entry: not a full JID");
  if (!Array.isArray(e.add) || e.add.length > MAX_ADDED) {
    throw new FrameError("an entry: add is not a list of lengths");
  }
  for (const n of e.add) intIn(n, 0, Number.MAX_SAFE_INTEGER, "a stanza's length");
  if (!Array.isArray(e.seen) || e.seen.length > MAX_SEEN) {
    throw new FrameError("an entry: seen is not a list");
  }
  for (const s of e.seen) {
    if (!Array.isArray(s) || s.length !== 2 || !shortString(s[0], 1024)) {
      throw new FrameError("an entry: seen is not a list of [id, count]");
    }
    intIn(s[1], 0, MAX_COUNTER, "a seen count");
  }
  if (typeof e.detached !== "boolean" || typeof e.announced !== "boolean") {
    throw new FrameError("an entry: detached and announced are not booleans");
  }
  if (
    e.directed !== undefined &&
    (!Array.isArray(e.directed) || e.directed.length > MAX_DIRECTED ||
      !e.directed.every((d) => shortString(d, 3071)))
  ) {
    throw new FrameError("an entry: directed is not a list of addresses");
  }
  let head: Head | undefined;
  if (e.head !== undefined) {
    const h = e.head as Record<string, unknown>;
    if (typeof h !== "object" || h === null || !shortString(h.id, MAX_ID)) {
      throw new FrameError("an entry: head is not an id, a timeout and a bind time");
    }
    head = {
      id: h.id as string,
      timeoutMs: intIn(h.timeoutMs, 0, Number.MAX_SAFE_INTEGER, "a timeout"),
      boundAt: intIn(h.boundAt, 0, Number.MAX_SAFE_INTEGER, "a bind time"),
    };
  }
  return {
    jid,
    head,
    handled: intIn(e.handled, 0, MAX_COUNTER, "handled"),
    acked: intIn(e.acked, 0, MAX_COUNTER, "acked"),
    seen: e.seen as [string, number][],
    detached: e.detached,
    announced: e.announced,
    directed: e.directed as string[] | undefined,
  };
}

function shortString(v: unknown, max: number): boolean {
  return typeof v === "string" && v.length >= 1 && v.length <= max;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new FrameError("the header is not JSON");
  }
}

const STANZA = "<message to='alice@localhost/phone'><body>hi</body></message>";

/** Replicas brought up to date: entries for sessions the sender holds. */
export const SM_SYNC = frameType(
  SM_TYPES,
  "sm sync",
  syncCodec,
  encodeSync([{
    jid: "alice@localhost/phone",
    head: { id: "x.cGhvbmU", timeoutMs: 300000, boundAt: 1765000000000 },
    handled: 3,
    acked: 1,
    add: [STANZA],
    seen: [["m1", 3]],
    detached: false,
    announced: true,
  }]),
);
/** Replicas to drop: the sender no longer holds these sessions (full JIDs). */
export const SM_FORGET = frameType(
  SM_TYPES + 1,
  "sm forget",
  json(z.array(fullJid).max(100_000)),
  `["alice@localhost/phone"]`,
);
/**
 * A client resumes a session of the receiver's here: JSON { ask, id, jid, since, boundAt };
 * `since` is when the resuming stream started (a session resumed by a later one is not given),
 * `boundAt` the session's bind time here from now on.
 */
export const SM_TAKE = frameType(
  SM_TYPES + 2,
  "sm take",
  json(z.object({
    ask: count,
    id: z.string().min(1).max(MAX_ID),
    jid: fullJid,
    since: count,
    boundAt: count,
  })),
  `{"ask":1,"id":"x.cGhvbmU","jid":"alice@localhost/phone","since":1765000000000,` +
    `"boundAt":1765000000001}`,
);

const state = sessionRecord.omit({ replica: true, moved: true }).extend({
  announced: z.boolean(),
  adopted: z.boolean().optional(),
  directed: z.array(z.string().max(3071)).max(MAX_DIRECTED),
  /** Full JIDs the session was shown available on the node it moves from. */
  watching: z.array(z.string().max(3071)).max(MAX_DIRECTED).optional(),
  sm: z.object({
    id: z.string().min(1).max(MAX_ID),
    timeoutMs: count,
    handled: counter,
    acked: counter,
    unacked: z.array(stanzaXml).max(1_000_000),
    recent: z.array(stanzaXml).max(MAX_RECENT),
    seen,
  }),
});

/** A session's state as SM_TAKEN brings it: its JID prepared. */
export type TakenState = z.output<typeof state>;

/** The answer to SM_TAKE: the session's state, now the asker's, or null. */
export const SM_TAKEN = frameType(
  SM_TYPES + 3,
  "sm taken",
  json(z.object({ ask: count, state: state.nullable() })),
  `{"ask":1,"state":null}`,
);

export const SM_FRAMES = [SM_SYNC, SM_FORGET, SM_TAKE, SM_TAKEN];
