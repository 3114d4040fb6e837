// The node's resumable sessions (XEP-0198): found by resumption id when a client comes back,
// timed out when it does not. Where else a session lives is the business of its distribution:
// alone, nowhere; in a cluster, a replica on another node keeps it (and its unacknowledged
// stanzas) so that it survives this node, and a client may resume it on any node.
import type { Distribution } from "../core/distribution.ts";
import type { Config } from "../config/schema.ts";
import { parseDuration } from "../config/duration.ts";
import { randomBytes } from "node:crypto";
import { Buffer } from "node:buffer";
import { StreamManagement } from "./stream_management.ts";
import type { ClientSession } from "./client_session.ts";
import { type Jid, parseJid } from "../jid/jid.ts";

/** What resumable sessions ask of the other nodes. */
export interface SessionDistribution extends Distribution<Resumption> {
  /** A resumable session changed (stanzas sent, acknowledged, handled): its replica follows. */
  changed(session: ClientSession): void;
  /** The session ended, was replaced or moved: its replica goes. */
  forget(session: ClientSession): void;
  /**
   * Brings the session `id` of `full` here from the node holding it (or the replica of a dead
   * one), registered and detached; undefined when no node has it, or a stream that started
   * after `since` resumed it already.
   */
  take(id: string, full: Jid, since: number): Promise<ClientSession | undefined>;
  /** Whether the session outlives this node (another node keeps a replica of it). */
  survives(session: ClientSession): boolean;
  /** Acknowledged stanzas a session keeps, to recognise them resent by another node. */
  readonly keepAcked: number;
}

/** One node alone: nothing elsewhere. */
export class LocalSessions implements SessionDistribution {
  readonly keepAcked = 0;
  serve(): void {}
  changed(): void {}
  forget(): void {}
  take(): Promise<undefined> {
    return Promise.resolve(undefined);
  }
  survives(): boolean {
    return false;
  }
}

/**
 * Detached sessions one account may have: a session costs no connection once detached, so
 * without a bound one account could leave any number of them behind. Beyond, the oldest ends.
 */
export const MAX_DETACHED_PER_ACCOUNT = 16;

export class Resumption {
  readonly maxUnacked: number;
  /** Characters of unacknowledged stanzas one session may hold (limits.max_outbound_buffer). */
  readonly maxUnackedChars: number;
  /** How long a session waits for its client unless it asked for less. */
  readonly timeoutMs: number;
  readonly #maxTimeoutMs: number;
  /** Resumable sessions held here, attached or detached, by resumption id. */
  #byId = new Map<string, ClientSession>();
  #detached = new Set<ClientSession>();
  /** Detached sessions by account, oldest first. */
  #byAccount = new Map<string, ClientSession[]>();

  constructor(config: Config, readonly distribution: SessionDistribution) {
    const sm = config.stream_management;
    this.maxUnacked = sm.max_unacked;
    this.#maxTimeoutMs = parseDuration(sm.max_resume_timeout)!;
    this.timeoutMs = Math.min(parseDuration(sm.resume_timeout)!, this.#maxTimeoutMs);
    this.maxUnackedChars = config.limits.max_outbound_buffer;
    distribution.serve(this);
  }

  /** Resumable sessions here, and how many of them are detached (/metrics). */
  get counts(): { resumable: number; detached: number } {
    return { resumable: this.#byId.size, detached: this.#detached.size };
  }

  /** <enable/>: stream management for `session`, resumable when asked, for `maxS` at most. */
  enable(session: ClientSession, resume: boolean, maxS: number | undefined): StreamManagement {
    const timeout = maxS === undefined ? this.timeoutMs : Math.min(maxS * 1000, this.#maxTimeoutMs);
    // The id names the resource, so that any node finds the session from the id alone.
    const id = resume
      ? `${randomBytes(15).toString("base64url")}.${
        Buffer.from(session.jid.resource).toString("base64url")
      }`
      : null;
    const sm = new StreamManagement(id, timeout, undefined, this.distribution.keepAcked);
    session.sm = sm;
    if (id !== null) this.add(session);
    return sm;
  }

  /** A resumable session held here: new, or brought from another node. */
  add(session: ClientSession): void {
    this.#byId.set(session.sm!.id!, session);
    this.distribution.changed(session);
    if (session.detached) this.#detach(session);
  }

  /**
   * The session `id` held here, if it is `full`'s and was not resumed by a stream that started
   * after `since` (of two resumptions at once, the first wins).
   */
  get(id: string, full: string, since: number): ClientSession | undefined {
    const s = this.#byId.get(id);
    return s?.jid.full === full && s.live && s.resumedAt < since ? s : undefined;
  }

  /** The session `id` of account `bare`, for a stream started at `since`, if it is held here. */
  here(id: string, bare: string, since: number): ClientSession | undefined {
    const full = fullOf(id, bare);
    return full ? this.get(id, full.full, since) : undefined;
  }

  /**
   * The session `id` of account `bare`, for a stream started at `since`, from the node holding
   * it (brought here, detached); undefined when none has it.
   */
  elsewhere(id: string, bare: string, since: number): Promise<ClientSession | undefined> {
    const full = fullOf(id, bare);
    return full ? this.distribution.take(id, full, since) : Promise.resolve(undefined);
  }

  changed(session: ClientSession): void {
    // Not one that ended meanwhile (a stanza that closed its stream, counted after).
    if (this.#byId.get(session.sm!.id!) === session) this.distribution.changed(session);
  }

  detached(session: ClientSession): void {
    this.distribution.changed(session);
    this.#detach(session);
  }

  attached(session: ClientSession): void {
    this.#attach(session);
    this.distribution.changed(session);
  }

  forget(session: ClientSession): void {
    const id = session.sm?.id;
    if (id == null || this.#byId.get(id) !== session) return;
    this.#byId.delete(id);
    this.#attach(session);
    this.distribution.forget(session);
  }

  #detach(session: ClientSession): void {
    this.#detached.add(session);
    const bare = session.jid.bare;
    let list = this.#byAccount.get(bare);
    if (!list) this.#byAccount.set(bare, list = []);
    list.push(session);
    if (list.length > MAX_DETACHED_PER_ACCOUNT) list[0].end();
  }

  #attach(session: ClientSession): void {
    if (!this.#detached.delete(session)) return;
    const bare = session.jid.bare;
    const list = this.#byAccount.get(bare)!;
    list.splice(list.indexOf(session), 1);
    if (list.length === 0) this.#byAccount.delete(bare);
  }

  /** Ends the detached sessions whose time is up (called every second). */
  sweep(now: number): void {
    for (const s of this.#detached) {
      if (now - s.detachedAt >= s.sm!.timeoutMs) s.end();
    }
  }

  /** The node stops: sessions no other node keeps end now, so nothing owed to them is lost. */
  stop(): void {
    for (const s of [...this.#byId.values()]) if (!this.distribution.survives(s)) s.end();
  }
}

/** The full JID a resumption id names, with the account that asks. */
function fullOf(id: string, bare: string): Jid | null {
  const dot = id.indexOf(".");
  if (dot < 0) return null;
  const full = parseJid(`${bare}/${Buffer.from(id.slice(dot + 1), "base64url").toString()}`);
  return full?.bare === bare && !full.isBare ? full : null;
}
