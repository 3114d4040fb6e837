// The replicated half of the session directory: records of sessions held by other nodes, kept in
// the SessionRegistry beside the local ones. Each node owns its own records and sends them (a
// snapshot on link up, deltas after); a full JID bound on two nodes ends with the newer bind, by
// (bind time, node name), on every node alike. A node's records go with its link (it is declared
// dead or partitioned away), and come back with its next snapshot, so no ghost outlives a
// partition. When they go, the local sessions that were shown one of them available are told it
// is unavailable: only this node knows which of its sessions saw what, so each node tells its own
// and nobody is told twice. A resumable session (XEP-0198) names the node keeping its replica:
// when its node dies it lives on there, so it does not go (session_replicas.ts).
import type { Element } from "../xml/element.ts";
import { x } from "../xml/element.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import { parseStanza } from "../xml/parse_string.ts";
import {
  capsOf,
  isLocal,
  type LocalSession,
  type Session,
  type SessionRegistry,
} from "../router/sessions.ts";
import { PEER_STANZA_LIMITS, type SessionRecord, type WireRecord } from "./wire.ts";
import { PeerOwned } from "./peer_owned.ts";
import { logger } from "../log/logger.ts";
import { LimitedLog } from "../log/limited.ts";

const limited = new LimitedLog(logger("cluster"));

/**
 * How far ahead of this node's clock a peer's bind time may be. A later one would win every
 * conflict for that full JID (the newer bind wins), so it is not believed.
 */
export const MAX_CLOCK_SKEW_MS = 60_000;
/** Presence text a peer's sessions may hold, on average per session it may have. */
const PRESENCE_BYTES = 2048;

/** What a peer is believed about. */
export interface DirectoryLimits {
  /** The domains this cluster serves: sessions of others are not believed. */
  domains: ReadonlySet<string>;
  /** Most sessions believed of one peer (and 2 KiB of presence each); more are invalid input. */
  maxPerNode: number;
}

/** Where a dead node's resumable sessions live on. */
export interface Successors {
  /** Whether `node` is linked now. */
  linked(node: string): boolean;
  /** Takes over here a session whose replica is here; false when there is none. */
  adopt(session: RemoteSession): boolean;
}

export class RemoteSession implements Session {
  available = false;
  priority = 0;
  rosterRequested = false;
  blocklistRequested = false;
  carbons = false;
  detached = false;
  /** The node keeping its replica (a resumable session), if any. */
  replica: string | undefined;
  /**
   * The last presence as it came, parsed when read (seldom: a probe, a resource coming online).
   * Parsed and kept, it would cost more memory than all the rest of the record.
   */
  #presence: string | null = null;
  /** What `caps` read from #presence (null: not read since it changed). */
  #caps: string | undefined | null = null;

  constructor(readonly jid: Jid, readonly node: string, readonly boundAt: number) {}

  get presence(): Element | null {
    // A peer's text: within the depth any node allows, or none at all.
    return this.#presence === null ? null : parseStanza(this.#presence, PEER_STANZA_LIMITS);
  }

  set presence(p: Element | null) {
    this.#presence = p?.toString() ?? null;
    this.#caps = null;
  }

  get caps(): string | undefined {
    if (this.#caps === null) this.#caps = capsOf(this.presence);
    return this.#caps;
  }

  update(r: SessionRecord): void {
    this.available = r.available;
    this.priority = r.priority;
    this.#presence = r.presence === null ? null : own(r.presence);
    this.#caps = null;
    this.rosterRequested = r.roster;
    this.blocklistRequested = r.blocklist;
    this.carbons = r.carbons;
    this.detached = r.detached ?? false;
    this.replica = r.replica === undefined ? undefined : own(r.replica);
  }

  /** The same session, now held by `node` from `boundAt` on. */
  movedTo(node: string, boundAt: number): RemoteSession {
    const s = RemoteSession.of(this, node, boundAt);
    s.#presence = this.#presence;
    s.detached = this.detached;
    return s;
  }

  /** A record of `session` (its IM state) as held by `node` from `boundAt` on. */
  static of(session: Session, node: string, boundAt: number): RemoteSession {
    const r = new RemoteSession(session.jid, node, boundAt);
    r.available = session.available;
    r.priority = session.priority;
    r.rosterRequested = session.rosterRequested;
    r.blocklistRequested = session.blocklistRequested;
    r.carbons = session.carbons;
    return r;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A copy of a string parsed out of a frame: V8 makes such strings slices of the frame's text,
 * which would keep the whole frame alive as long as the record.
 */
function own(s: string): string {
  return decoder.decode(encoder.encode(s));
}

export function toWire(s: Session, replica?: string, moved?: boolean): WireRecord {
  return {
    replica,
    moved,
    jid: s.jid.full,
    boundAt: s.boundAt,
    available: s.available,
    priority: s.priority,
    presence: s.presence?.toString() ?? null,
    roster: s.rosterRequested,
    blocklist: s.blocklistRequested,
    carbons: s.carbons,
    detached: s.detached || undefined,
  };
}

export class Directory {
  /** Records of other nodes by full JID, counted per node. */
  #remote: PeerOwned<RemoteSession>;
  /** Local sessions shown each full JID available (and not unavailable since). */
  #watchers = new Map<string, Set<LocalSession>>();
  /** The full JIDs each local session watches, to forget it when it ends. */
  #watching = new WeakMap<LocalSession, Set<string>>();

  constructor(
    readonly self: string,
    readonly sessions: SessionRegistry,
    readonly limits: DirectoryLimits,
    readonly successors: Successors,
  ) {
    this.#remote = new PeerOwned(
      limits.maxPerNode,
      "sessions (max_records_per_peer)",
      limits.maxPerNode * PRESENCE_BYTES,
    );
  }

  /** Records held for `node`. */
  count(node: string): number {
    return this.#remote.count(node);
  }

  /** Whether `a`, bound on `aNode`, wins over `b`: the newer bind; the larger name on a tie. */
  #newer(a: { boundAt: number }, aNode: string, b: Session): boolean {
    return a.boundAt > b.boundAt ||
      (a.boundAt === b.boundAt && aNode > (b.node ?? this.self));
  }

  /**
   * A record from `node`, new or changed; returns the local session it replaced, if any. A
   * session of a domain not served here, or bound later than this node's clock allows, is not
   * believed; more sessions than the limit are invalid input (FrameError).
   */
  record(node: string, r: SessionRecord): LocalSession | undefined {
    const jid = parseJid(own(r.jid.full))!;
    if (!this.limits.domains.has(jid.domain)) {
      limited.warn(
        node,
        "{peer} claims a session of {domain}, which this node does not serve",
        {
          peer: node,
          domain: jid.domain,
        },
      );
      return;
    }
    if (r.boundAt > Date.now() + MAX_CLOCK_SKEW_MS) {
      limited.warn(
        node,
        "{peer} claims a session bound {ahead} s ahead of this node's clock",
        {
          peer: node,
          ahead: Math.round((r.boundAt - Date.now()) / 1000),
        },
      );
      return;
    }
    const current = this.sessions.get(jid);
    const bytes = r.presence?.length ?? 0;
    if (
      current instanceof RemoteSession && current.node === node && current.boundAt === r.boundAt
    ) {
      this.#remote.set(jid.full, node, current, bytes);
      current.update(r);
      return;
    }
    // Another session with this full JID: the newer stays (its node replaces the older).
    if (current && !this.#newer(r, node, current)) return;
    const session = new RemoteSession(jid, node, r.boundAt);
    this.#remote.set(jid.full, node, session, bytes);
    session.update(r);
    this.sessions.put(session);
    if (!current || !isLocal(current)) return;
    current.replace();
    return current;
  }

  /** `node` ended a session: it tells its contacts itself. */
  unbound(node: string, full: string): void {
    const r = this.#remote.get(full);
    if (r?.node === node) this.#gone(r.value, false);
  }

  /**
   * `node` is declared dead: its sessions are gone, as on a logout, but for resumable ones
   * whose replica lives: taken over here, or held by the replica's node from now on.
   */
  dropNode(node: string): void {
    for (const [, r] of this.#remote.drop(node)) {
      const replica = r.replica;
      if (replica === this.self && this.successors.adopt(r)) continue;
      if (replica !== undefined && replica !== this.self && this.successors.linked(replica)) {
        // Until the replica's node says so itself (with a newer bind time).
        const moved = r.movedTo(replica, r.boundAt);
        try {
          this.#remote.set(r.jid.full, replica, moved, 0);
          this.sessions.put(moved);
          continue;
        } catch { /* more than that node may hold: gone */ }
      }
      this.#gone(r, true);
    }
  }

  /**
   * A local session was resumed on `node`: it is held there now, from `boundAt` on (its own
   * record follows from there).
   */
  moved(session: LocalSession, node: string, boundAt: number): void {
    this.forget(session);
    this.sessions.drop(session);
    // Resumed there: connected again (its own record follows from there).
    const r = RemoteSession.of(session, node, boundAt);
    r.presence = session.presence;
    this.#remote.set(session.jid.full, node, r, 0);
    this.sessions.put(r);
  }

  /** A local bind replaced `old`: a remote record is forgotten (its node closes the session). */
  replaced(old: Session): void {
    if (old instanceof RemoteSession && this.#remote.get(old.jid.full)?.value === old) {
      this.#remote.delete(old.jid.full);
    }
  }

  /** Notes which local sessions are shown which full JIDs available. */
  watch(session: LocalSession, stanza: Element): void {
    if (stanza.name !== "presence") return;
    const from = stanza.attrs.from;
    if (from === undefined || !from.includes("/")) return;
    const type = stanza.attrs.type;
    if (type === undefined) {
      this.#watch(session, from);
    } else if (type === "unavailable") {
      this.#unwatch(session, from);
      this.#watching.get(session)?.delete(from);
    }
  }

  #watch(session: LocalSession, from: string): void {
    let set = this.#watchers.get(from);
    if (!set) this.#watchers.set(from, set = new Set());
    set.add(session);
    let watched = this.#watching.get(session);
    if (!watched) this.#watching.set(session, watched = new Set());
    watched.add(from);
  }

  /** The full JIDs a local session was shown available (they go with it when it moves). */
  watched(session: LocalSession): string[] {
    return [...this.#watching.get(session) ?? []];
  }

  /** A session that moved here was shown these full JIDs available where it was. */
  watchAll(session: LocalSession, jids: readonly string[]): void {
    for (const from of jids) this.#watch(session, from);
  }

  /** A local session ended (or was replaced): it watches nothing any more. */
  forget(session: LocalSession): void {
    for (const from of this.#watching.get(session) ?? []) this.#unwatch(session, from);
    this.#watching.delete(session);
  }

  #unwatch(session: LocalSession, from: string): void {
    const set = this.#watchers.get(from);
    set?.delete(session);
    if (set?.size === 0) this.#watchers.delete(from);
  }

  #gone(r: RemoteSession, tell: boolean): void {
    this.#remote.delete(r.jid.full);
    this.sessions.drop(r);
    const watchers = this.#watchers.get(r.jid.full);
    this.#watchers.delete(r.jid.full);
    if (!tell || !watchers) return;
    for (const w of watchers) {
      if (this.sessions.get(w.jid) !== w) continue; // ended meanwhile
      this.sessions.deliver(
        w,
        x("presence", { from: r.jid.full, to: w.jid.full, type: "unavailable" }),
      );
    }
  }
}
