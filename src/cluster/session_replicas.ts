// Resumable client sessions (XEP-0198) over a cluster: the SessionDistribution of
// src/c2s/resumption.ts.
//
// Each resumable session held here has a replica on the next node in rendezvous order of its full
// JID. What the session is sent goes to the replica in the same tick as to the client (SM_SYNC,
// one frame per replica node per tick, before the cluster acknowledges the stanza to the node it
// came from): counters, the stanzas not acknowledged yet, the ids of what the client sent,
// directed presence. Its record tells every node where the replica is, so that when this node
// dies the others hold the session there (directory.ts) and no contact sees it go; the replica's
// node takes it over, detached, with its queue.
//
// A client resuming on another node names the session by its id, which names its resource: that
// node asks the session's holder for it (SM_TAKE) — or the replica's node, the holder being
// gone — and gets its state (SM_TAKEN); the holder keeps a record pointing there. Of two nodes
// asking at once the first served wins. A peer is believed only about its own sessions' replicas,
// within max_records_per_peer and REPLICA_BYTES.
import type { Jid } from "../jid/jid.ts";
import { randomBytes } from "node:crypto";
import { isLocal, type LocalSession } from "../router/sessions.ts";
import { pick } from "../component/balance.ts";
import { ClientSession, type SessionState } from "../c2s/client_session.ts";
import type { Resumption, SessionDistribution } from "../c2s/resumption.ts";
import { KEEP_ACKED, StreamManagement } from "../c2s/stream_management.ts";
import type { ClusterNode, PeerObserver, SessionSuccession } from "./node.ts";
import type { RemoteSession } from "./directory.ts";
import { FrameError } from "./codec.ts";
import { PeerOwned } from "./peer_owned.ts";
import {
  encodeSync,
  MAX_ADDED,
  SM_FORGET,
  SM_SYNC,
  SM_TAKE,
  SM_TAKEN,
  type SyncEntry,
  type SyncEntryIn,
  type TakenState,
} from "./session_wire.ts";
import { logger } from "../log/logger.ts";
import { LimitedLog } from "../log/limited.ts";

const log = logger("cluster");
const limited = new LimitedLog(log);

const WRAP = 2 ** 32;
/** Stanza text one peer's replicas may hold here, all together. */
const REPLICA_BYTES = 512 << 20;
/** Stanza text per SM_SYNC frame before another one starts (frames are at most 8 MiB). */
const FRAME_BYTES = 2 << 20;
/** The largest state a session moves with (frames are at most 8 MiB; UTF-8 may double). */
const TAKEN_CHARS = 4 << 20;
/** How long a node waits for a session's holder to give it up. */
const TAKE_TIMEOUT_MS = 5000;

/** A replica of a session another node holds. */
interface Replica {
  jid: Jid;
  boundAt: number;
  sm: StreamManagement;
  detached: boolean;
  announced: boolean;
  directed: string[];
}

/** What the replica of a session held here has heard of. */
interface Mark {
  target: string | undefined;
  /** The replica needs the whole session (new, or a new replica node). */
  fresh: boolean;
  sent: number;
  /** StreamManagement.remembered when the replica last heard of the session's ids. */
  remembered: number;
  directed: number;
}

interface Take {
  peer: string;
  full: string;
  done(session: ClientSession | undefined): void;
}

export class SessionReplicas implements SessionDistribution, SessionSuccession, PeerObserver {
  readonly keepAcked = KEEP_ACKED;
  #resumption: Resumption | undefined;
  /** Replicas held here of other nodes' sessions, by full JID. */
  #replicas: PeerOwned<Replica>;
  /** Resumable sessions held here, with what their replica has. */
  #held = new Map<ClientSession, Mark>();
  #dirty = new Set<ClientSession>();
  #flushQueued = false;
  #takes = new Map<number, Take>();
  #nextAsk = 0;
  /** Sessions taken over here from a dead node's replica; SM_SYNC frames sent. */
  adopted = 0;
  synced = 0;

  constructor(readonly node: ClusterNode) {
    this.#replicas = new PeerOwned(node.maxRecordsPerPeer, "session replicas", REPLICA_BYTES);
    node.on(SM_SYNC, (peer, entries) => this.#sync(peer, entries));
    node.on(SM_FORGET, (peer, jids) => {
      for (const jid of jids) {
        if (this.#replicas.get(jid.full)?.node === peer) this.#replicas.delete(jid.full);
      }
    });
    node.on(SM_TAKE, (peer, t) => this.#give(peer, t));
    node.on(SM_TAKEN, (peer, { ask, state }) => this.#taken(peer, ask, state));
    node.follow(this);
    node.succeed(this);
    node.addStatus((member) =>
      member === node.name
        ? { resumable: this.#held.size, replicas: this.#replicas.size, adopted: this.adopted }
        : {}
    );
  }

  serve(resumption: Resumption): void {
    this.#resumption = resumption;
  }

  // --- Sessions held here.

  changed(session: ClientSession): void {
    if (!this.#held.has(session)) this.#retarget(session, this.#mark());
    this.#dirty.add(session);
    this.#queueFlush();
  }

  forget(session: ClientSession): void {
    const mark = this.#held.get(session);
    if (!mark) return;
    this.#held.delete(session);
    this.#dirty.delete(session);
    if (mark.target !== undefined) {
      this.node.send(mark.target, SM_FORGET, JSON.stringify([session.jid.full]));
    }
  }

  survives(session: ClientSession): boolean {
    const target = this.#held.get(session)?.target;
    return target !== undefined && [...this.node.peers()].includes(target);
  }

  movedHere(session: LocalSession): boolean {
    return session instanceof ClientSession && session.restored;
  }

  replicaOf(session: LocalSession): string | undefined {
    return session instanceof ClientSession ? this.#held.get(session)?.target : undefined;
  }

  #mark(): Mark {
    return { target: undefined, fresh: true, sent: 0, remembered: 0, directed: -1 };
  }

  /**
   * The session's replica goes to the next node in rendezvous order; when that changes, the
   * old one is dropped and every node hears where it is now.
   */
  #retarget(session: ClientSession, mark: Mark): void {
    this.#held.set(session, mark);
    const target = pick(this.node.peers(), session.jid.full);
    if (target === mark.target) return;
    if (mark.target !== undefined) {
      this.node.send(mark.target, SM_FORGET, JSON.stringify([session.jid.full]));
    }
    Object.assign(mark, this.#mark(), { target });
    this.#dirty.add(session);
    this.node.ctx.sessions.changed(session);
  }

  #flush = (): void => {
    this.#flushQueued = false;
    const frames = new Map<string, { entries: SyncEntry[]; bytes: number }>();
    const behind: ClientSession[] = [];
    for (const session of this.#dirty) {
      const mark = this.#held.get(session);
      if (mark?.target === undefined || !session.sm) continue;
      const [entry, bytes, more] = this.#entry(session, session.sm, mark);
      if (more) behind.push(session);
      let frame = frames.get(mark.target);
      if (frame && frame.bytes + bytes > FRAME_BYTES) {
        this.#send(mark.target, frame.entries);
        frame = undefined;
      }
      if (!frame) frames.set(mark.target, frame = { entries: [], bytes: 0 });
      frame.entries.push(entry);
      frame.bytes += bytes;
    }
    this.#dirty.clear();
    for (const [target, { entries }] of frames) this.#send(target, entries);
    if (behind.length === 0) return;
    // More than a frame's worth: the rest in a later task, letting other work in between.
    for (const session of behind) this.#dirty.add(session);
    this.#flushQueued = true;
    setTimeout(this.#flush, 0);
  };

  #send(target: string, entries: SyncEntry[]): void {
    this.synced++;
    this.node.send(target, SM_SYNC, encodeSync(entries));
  }

  /**
   * What the replica has not heard of (as much as fits a frame), its stanzas' length, and
   * whether more is left.
   */
  #entry(
    session: ClientSession,
    sm: StreamManagement,
    mark: Mark,
  ): [SyncEntry, number, boolean] {
    const pending = sm.unackedCount;
    const added = mark.fresh ? pending : Math.min(pending, (sm.sent - mark.sent + WRAP) % WRAP);
    const all = added === 0 ? [] : sm.unackedFrom(pending - added);
    let n = 0;
    let bytes = 0;
    while (n < all.length && n < MAX_ADDED && (n === 0 || bytes + all[n].length <= FRAME_BYTES)) {
      bytes += all[n++].length;
    }
    const newIds = mark.fresh ? Infinity : sm.remembered - mark.remembered;
    const directed = session.directed.size;
    const entry: SyncEntry = {
      jid: session.jid.full,
      head: mark.fresh
        ? { id: sm.id!, timeoutMs: sm.timeoutMs, boundAt: session.boundAt }
        : undefined,
      handled: sm.handled,
      acked: sm.acked,
      add: n === all.length ? all : all.slice(0, n),
      seen: sm.recentSeen(newIds),
      detached: session.detached,
      announced: session.announced,
      // Sent whole while not empty: a room left and another joined keep its size.
      directed: mark.fresh || directed > 0 || mark.directed > 0 ? [...session.directed] : undefined,
    };
    mark.fresh = false;
    mark.sent = (sm.sent - (all.length - n) + WRAP) % WRAP;
    mark.remembered = sm.remembered;
    mark.directed = directed;
    return [entry, bytes, n < all.length];
  }

  // --- Replicas held here.

  #sync(peer: string, entries: SyncEntryIn[]): void {
    for (const e of entries) {
      const full = e.jid.full;
      if (!this.node.hosts.has(e.jid.domain)) throw new FrameError(`${e.jid.domain} is not served`);
      let r = this.#replicas.get(full)?.node === peer ? this.#replicas.get(full)!.value : undefined;
      if (e.head) {
        const sm = new StreamManagement(e.head.id, e.head.timeoutMs, {
          handled: e.handled,
          acked: e.acked,
          unacked: [],
          recent: [],
          seen: [],
        });
        r = {
          jid: e.jid,
          boundAt: e.head.boundAt,
          sm,
          detached: false,
          announced: false,
          directed: [],
        };
      } else if (!r) {
        // A replica dropped here meanwhile (a FORGET crossing a new SYNC): the next whole one
        // brings it back.
        limited.debug(peer, "a session change from {peer} for no replica here", { peer });
        continue;
      }
      const sm = r.sm;
      for (const xml of e.add) sm.push(xml);
      // The client may have acknowledged what reaches the replica only with later entries (a
      // backlog sent over several frames): those will come acknowledged already.
      if (!sm.ack(e.acked)) sm.ack(sm.sent);
      sm.handled = e.handled;
      for (const [id, h] of e.seen) sm.remember(id, h);
      r.detached = e.detached;
      r.announced = e.announced;
      if (e.directed) r.directed = e.directed;
      try {
        this.#replicas.set(full, peer, r, sm.bytes);
      } catch (error) {
        // More than this node keeps of a peer's sessions: this one has no replica here (it
        // goes with its node), and the peer's link stays.
        this.#replicas.delete(full);
        limited.warn(peer, "dropped the replica of {jid} from {peer}: {error}", {
          jid: full,
          peer,
          error: String(error),
        });
      }
    }
  }

  /**
   * `session`'s node died and its replica is here: it is held here from now on, detached, with
   * what its record says of it (presence, priority) and what the replica says of the rest.
   */
  adopt(session: RemoteSession): boolean {
    const held = this.#replicas.get(session.jid.full);
    const host = this.node.hosts.get(session.jid.domain);
    if (!host || !this.#resumption) return false;
    this.#replicas.delete(session.jid.full);
    // Named the replica but never told of it (its sync lost with the link): the other nodes hold
    // it here now, so it is held, with nothing queued and an id nobody knows, until it times out
    // and is told gone as on a logout.
    const r = held?.node === session.node ? held.value : this.#unknown(session);
    const state: SessionState = {
      jid: session.jid.full,
      boundAt: session.boundAt,
      available: session.available,
      priority: session.priority,
      presence: session.presence?.toString() ?? null,
      roster: session.rosterRequested,
      blocklist: session.blocklistRequested,
      carbons: session.carbons,
      announced: r.announced,
      directed: r.directed,
      sm: r.sm.state(),
    };
    // A newer bind time than the dead node's: nodes that have not seen it die yet believe this.
    const boundAt = Math.max(Date.now(), session.boundAt + 1);
    const adopted = ClientSession.restore(state, session.jid, boundAt, host, this.#resumption);
    adopted.adopted = true;
    this.#register(adopted);
    this.adopted++;
    log.info("took over session {jid} from {peer}", { jid: session.jid.full, peer: session.node });
    return true;
  }

  #unknown(session: RemoteSession): Replica {
    const id = `${randomBytes(15).toString("base64url")}.`;
    return {
      jid: session.jid,
      boundAt: session.boundAt,
      sm: new StreamManagement(id, this.#resumption!.timeoutMs),
      detached: true,
      announced: session.available,
      directed: [],
    };
  }

  /** A session brought here, detached: registered, announced and replicated. */
  #register(session: ClientSession): void {
    const old = this.node.ctx.sessions.add(session);
    if (old && isLocal(old)) old.replace();
    else if (old) this.node.recall(old.node!, session.jid);
    this.#resumption!.add(session);
  }

  // --- Resumption on another node.

  take(id: string, full: Jid, since: number): Promise<ClientSession | undefined> {
    const record = this.node.ctx.sessions.get(full);
    if (!record || isLocal(record)) return Promise.resolve(undefined);
    const linked = new Set(this.node.peers());
    const replica = (record as RemoteSession).replica;
    const peer = linked.has(record.node!)
      ? record.node!
      : replica !== undefined && linked.has(replica)
      ? replica
      : undefined;
    if (peer === undefined) return Promise.resolve(undefined);
    const ask = ++this.#nextAsk;
    const boundAt = Math.max(Date.now(), record.boundAt + 1);
    return new Promise((resolve) => {
      const timer = setTimeout(() => take.done(undefined), TAKE_TIMEOUT_MS);
      const take: Take = {
        peer,
        full: full.full,
        done: (session) => {
          clearTimeout(timer);
          // Answered late, the session is registered here anyway (detached): never lost.
          take.done = () => {};
          resolve(session);
        },
      };
      this.#takes.set(ask, take);
      const sent = this.node.send(
        peer,
        SM_TAKE,
        JSON.stringify({ ask, id, jid: full.full, since, boundAt }),
      );
      if (!sent) {
        this.#takes.delete(ask);
        take.done(undefined);
      }
    });
  }

  /** A node where the client resumes asks for a session held here (or a replica of a dead one). */
  #give(
    peer: string,
    t: { ask: number; id: string; jid: Jid; since: number; boundAt: number },
  ): void {
    const resumption = this.#resumption!;
    let session = resumption.get(t.id, t.jid.full, t.since);
    // What the client sent before is counted (stored) first: the count it resumes with is exact.
    const counting = session?.counting;
    if (counting) return void counting.then(() => this.#give(peer, t));
    if (!session) {
      // The replica of a session whose node this one cannot reach: taken over first.
      const held = this.#replicas.get(t.jid.full);
      const record = this.node.ctx.sessions.get(t.jid);
      if (
        held?.value.sm.id === t.id && record && !isLocal(record) && record.node === held.node &&
        ![...this.node.peers()].includes(held.node) && this.adopt(record as RemoteSession)
      ) {
        session = resumption.get(t.id, t.jid.full, t.since);
      }
    }
    if (!session?.sm) {
      this.node.send(peer, SM_TAKEN, JSON.stringify({ ask: t.ask, state: null }));
      return;
    }
    // What client state indication held moves with the queue (presence the client is owed).
    session.releaseHeld();
    const state = {
      ...session.state(),
      boundAt: t.boundAt,
      watching: this.node.watched(session),
    };
    const taken = JSON.stringify({ ask: t.ask, state });
    // Too much to move in one frame: it stays here (the client binds anew, and what it was not
    // given goes offline as the old session is replaced).
    if (taken.length > TAKEN_CHARS || !this.node.send(peer, SM_TAKEN, taken)) {
      log.warn("session {jid} could not move to {peer}: {chars} characters of state", {
        jid: t.jid.full,
        peer,
        chars: taken.length,
      });
      this.node.send(peer, SM_TAKEN, JSON.stringify({ ask: t.ask, state: null }));
      return;
    }
    session.moved();
    this.node.moved(session, peer, t.boundAt);
    log.info("session {jid} resumed on {peer}", { jid: t.jid.full, peer });
  }

  #taken(peer: string, ask: number, state: TakenState | null): void {
    const take = this.#takes.get(ask);
    if (!take || take.peer !== peer) {
      if (state) throw new FrameError("a session nobody here asked for");
      return;
    }
    this.#takes.delete(ask);
    if (!state) return take.done(undefined);
    const jid = state.jid;
    const host = this.node.hosts.get(jid.domain);
    if (jid.full !== take.full || !host) throw new FrameError("another session than asked");
    const session = ClientSession.restore(
      { ...state, jid: jid.full },
      jid,
      state.boundAt,
      host,
      this.#resumption!,
    );
    this.#register(session);
    if (state.watching) this.node.watchAll(session, state.watching);
    take.done(session);
  }

  // --- Peers.

  up(): void {
    for (const [session, mark] of this.#held) this.#retarget(session, mark);
    this.#queueFlush();
  }

  down(peer: string): void {
    // Replicas here of the peer's sessions not taken over (its records were dropped first).
    this.#replicas.drop(peer);
    for (const [ask, take] of this.#takes) {
      if (take.peer !== peer) continue;
      this.#takes.delete(ask);
      take.done(undefined);
    }
    for (const [session, mark] of this.#held) {
      if (mark.target === peer) {
        mark.target = undefined;
        this.#retarget(session, mark);
      }
    }
    this.#queueFlush();
  }

  #queueFlush(): void {
    if (this.#dirty.size === 0 || this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(this.#flush);
  }
}
