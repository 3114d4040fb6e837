// What nodes say to each other about resumable client sessions (XEP-0198; frame types SM_TYPES +
// 0 … 15): the holder of a session keeps its replica on another node up to date (SM_SYNC, batched
// per tick), drops it (SM_FORGET), and a node where a client resumes takes the session from its
// holder (SM_TAKE, answered by SM_TAKEN with the session's state, or none).
import { z } from "zod";
import { count, fullJid, json, stanzaXml } from "./codec.ts";
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
const head = z.object({
  id: z.string().min(1).max(MAX_ID),
  timeoutMs: count,
  boundAt: count,
});

/** One session's changes since the last entry for it (or, with `head`, its whole state). */
const entry = z.object({
  jid: fullJid,
  head: head.optional(),
  handled: counter,
  acked: counter,
  /** Stanzas sent to the client since the last entry, oldest first. */
  add: z.array(stanzaXml).max(MAX_ADDED),
  seen,
  detached: z.boolean(),
  announced: z.boolean(),
  /** Present when it changed. */
  directed: z.array(z.string().max(3071)).max(MAX_DIRECTED).optional(),
});

export type SyncEntry = z.input<typeof entry>;
export type SyncEntryIn = z.output<typeof entry>;

const ENTRY = `{"jid":"alice@localhost/phone","head":{"id":"x.cGhvbmU","timeoutMs":300000,` +
  `"boundAt":1765000000000},"handled":3,"acked":1,"add":["<message to='alice@localhost/phone'>` +
  `<body>hi</body></message>"],"seen":[["m1",3]],"detached":false,"announced":true}`;

/** Replicas brought up to date: entries for sessions the sender holds. */
export const SM_SYNC = frameType(
  SM_TYPES,
  "sm sync",
  json(z.array(entry).max(100_000)),
  `[${ENTRY}]`,
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
