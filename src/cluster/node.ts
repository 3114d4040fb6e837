// This node's part in the cluster: the mesh to its peers, the replicated session directory, the
// route of stanzas to sessions on other nodes, closes, and cache invalidation. The server makes
// one only when the configuration has a `cluster:` section; it observes the SessionRegistry, so
// the single-node paths never reach here.
//
// A stanza sent to another node is kept until that node says it handled it (DELIVERED counts
// frames per link): if the link dies first, the stanza is handled here as one for a session that
// is gone (a message to the account's other resources or offline storage, an iq answered with an
// error), never silently dropped.
import { type Element, x } from "../xml/element.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import type { ServerContext } from "../core/context.ts";
import type { Host } from "../core/host.ts";
import {
  isLocal,
  type LocalSession,
  type Session,
  type SessionObserver,
} from "../router/sessions.ts";
import { deliverToBare } from "../im/delivery.ts";
import { parseStanza } from "../xml/parse_string.ts";
import { Mesh, type PeerStatus } from "./mesh.ts";
import { meshOptions } from "./config.ts";
import { readClusterTls } from "./tls.ts";
import { Directory, type RemoteSession, toWire } from "./directory.ts";
import {
  CLEARED,
  CLOSE,
  DELIVER,
  DELIVERED,
  deliverPayload,
  FIRST_HOP,
  HANDOVER,
  INVALIDATE,
  RECORD,
  REROUTED,
  RESENT,
  type SessionRecord,
  SNAPSHOT,
  SNAPSHOT_PART,
  UNBOUND,
  type WireRecord,
} from "./wire.ts";
import { FrameError, utf8 } from "./codec.ts";
import { ALL_FRAMES } from "./frame_registry.ts";
import type { FrameType } from "./frame_type.ts";
import { logger } from "../log/logger.ts";
import { LimitedLog } from "../log/limited.ts";
import { Acks } from "./acks.ts";
import { Asks } from "./asks.ts";

const log = logger("cluster");
/** What peers' bad input causes to be logged, at a bounded rate per peer. */
const limited = new LimitedLog(log);
/** Every frame type of this protocol version, served here or not. */
const KNOWN_TYPES = new Set(ALL_FRAMES.map((f) => f.type));

/** How resumable sessions outlive their node (session_replicas.ts). */
export interface SessionSuccession {
  /** The node keeping the replica of a local session, if any (told with its record). */
  replicaOf(session: LocalSession): string | undefined;
  /** Whether a local session moved here from another node (told with its record). */
  movedHere(session: LocalSession): boolean;
  /** Takes over here a dead node's session whose replica is here; false when there is none. */
  adopt(session: RemoteSession): boolean;
}

/** A member as `parley cluster status` shows it. */
export interface MemberStatus extends Omit<PeerStatus, "state"> {
  state: PeerStatus["state"] | "self";
  sessions: number;
  /** What services add (ClusterNode.addStatus), e.g. the rooms and occupants a node runs. */
  [service: string]: unknown;
}

/**
 * A service's view of peers coming and going, after the session directory has handled them (on
 * `down`, the peer's sessions are already gone).
 */
export interface PeerObserver {
  up?(peer: string, incarnation: number): void;
  down?(peer: string): void;
  /** This node woke from a stall (MeshEvents.woke): what it had sent counts as handled. */
  woke?(): void;
}

/**
 * Handles one decoded frame from `peer`. A FrameError it throws (or rejects with) is invalid
 * input: the link closes, as for a frame that does not decode.
 */
export type FrameHandler<T> = (peer: string, value: T) => void | Promise<void>;

interface Registered {
  frame: FrameType<unknown>;
  handle: FrameHandler<unknown>;
}

export class ClusterNode implements SessionObserver {
  readonly name: string;
  #mesh: Mesh;
  #directory: Directory;
  #links = new Map<string, Acks>();
  /** Cache invalidations waiting for every peer to have cleared the key. */
  #invalidations = new Asks<true>();
  #handlers = new Map<number, Registered>();
  /** Peers whose snapshot's last part came on the current link. */
  #snapshotDone = new Set<string>();
  #observers: PeerObserver[] = [];
  #statusParts: ((member: string) => Record<string, unknown>)[] = [];
  /** Stanzas this node already rerouted once, after their target was gone. */
  #rerouted = new WeakSet<Element>();
  /** Replicas of resumable sessions (session_replicas.ts), once it joined. */
  #replicas: SessionSuccession | undefined;
  readonly startedAt = Date.now();
  /** Most records of each kind believed of one peer (cluster.max_records_per_peer). */
  readonly maxRecordsPerPeer: number;

  private constructor(
    readonly ctx: ServerContext,
    readonly hosts: Map<string, Host>,
    mesh: (node: ClusterNode) => Mesh,
  ) {
    this.name = ctx.config.cluster!.node!;
    this.maxRecordsPerPeer = ctx.config.cluster!.max_records_per_peer;
    this.#directory = new Directory(this.name, ctx.sessions, {
      domains: new Set(hosts.keys()),
      maxPerNode: this.maxRecordsPerPeer,
    }, {
      linked: (node) => this.#links.has(node),
      adopt: (r) => this.#replicas?.adopt(r) ?? false,
    });
    this.#mesh = mesh(this);
  }

  /**
   * Makes this node's part, with no link yet: the services' distributions register their frames
   * and follow peers on it (`on`, `follow`) before `connect` brings the links up, so that they
   * see every peer come up.
   */
  static async create(ctx: ServerContext, hosts: Map<string, Host>): Promise<ClusterNode> {
    const cluster = ctx.config.cluster!;
    const options = meshOptions(cluster, await readClusterTls(cluster.tls));
    const node = new ClusterNode(ctx, hosts, (self) =>
      new Mesh(options, {
        up: (peer, incarnation) => self.#up(peer, incarnation),
        down: (peer) => self.#down(peer),
        woke: () => self.#woke(),
        message: (peer, type, payload) => self.#message(peer, type, payload),
      }));
    node.#registerSessionFrames();
    ctx.sessions.observe(node);
    ctx.caches.broadcast = (cache, key) => node.#invalidate(cache, key);
    return node;
  }

  /** Listens for peers and dials them. */
  async connect(): Promise<void> {
    await this.#mesh.start();
  }

  stop(): Promise<void> {
    return this.#mesh.stop();
  }

  status(): MemberStatus[] {
    return this.members().map((m) =>
      Object.assign(m, ...this.#statusParts.map((part) => part(m.node)))
    );
  }

  /** This node and its peers, without what services add (addStatus): cheap, for /metrics. */
  members(): MemberStatus[] {
    const listen = this.#mesh.options.listen;
    return [
      {
        node: this.name,
        address: `${listen.host}:${listen.port}`,
        state: "self",
        since: this.startedAt,
        rttMs: null,
        queuedBytes: 0,
        sentBytes: 0,
        receivedBytes: 0,
        incarnation: this.#mesh.incarnation,
        version: this.#mesh.version,
        invalidInput: 0,
        sessions: this.ctx.sessions.size,
      },
      ...this.#mesh.status().map((p) => ({ ...p, sessions: this.#directory.count(p.node) })),
    ];
  }

  // --- For the services' distributions.

  /** Routes frames of `frame`'s type, decoded and checked, to `handle`. */
  on<T>(frame: FrameType<T>, handle: FrameHandler<T>): void {
    if (this.#handlers.has(frame.type)) {
      throw new Error(`cluster frame type ${frame.type} is taken`);
    }
    this.#handlers.set(frame.type, { frame, handle: handle as FrameHandler<unknown> });
  }

  /** Tells `observer` of peers coming and going. */
  follow(observer: PeerObserver): void {
    this.#observers.push(observer);
  }

  /** Resumable sessions live on through `succession` when their node dies. */
  succeed(succession: SessionSuccession): void {
    this.#replicas = succession;
  }

  /** The full JIDs a local session was shown available (the directory tells it if they go). */
  watched(session: LocalSession): string[] {
    return this.#directory.watched(session);
  }

  /** A session brought here was shown these full JIDs available on its node before. */
  watchAll(session: LocalSession, jids: readonly string[]): void {
    this.#directory.watchAll(session, jids);
  }

  /** A session of `jid` was brought here from `from`: what was on its way there comes first. */
  recall(from: string, jid: Jid): void {
    this.#follow(from, jid);
  }

  /** A local session was resumed on `node`: held there from `boundAt` on. */
  moved(session: LocalSession, node: string, boundAt: number): void {
    this.#directory.moved(session, node, boundAt);
  }

  /** Adds a service's fields to each member of `status()` (`member` is a node name). */
  addStatus(part: (member: string) => Record<string, unknown>): void {
    this.#statusParts.push(part);
  }

  /** Queues a frame to a linked peer; false when there is no link to it. */
  send(peer: string, frame: FrameType<unknown>, payload: string | Uint8Array): boolean {
    return this.#links.has(peer) && this.#mesh.send(peer, frame.type, payload);
  }

  /** The peers linked now (their sessions are in the directory). */
  peers(): Iterable<string> {
    return this.#links.keys();
  }

  // --- SessionObserver: local changes go to every peer, stanzas to the node holding the session.

  bound(session: LocalSession, old: Session | undefined): void {
    if (old && isLocal(old)) this.#directory.forget(old);
    else if (old) this.#directory.replaced(old);
    this.#broadcast(RECORD, this.#recordOf(session));
  }

  changed(session: LocalSession): void {
    this.#broadcast(RECORD, this.#recordOf(session));
  }

  #recordOf(session: LocalSession): string {
    return JSON.stringify(this.#wire(session));
  }

  #wire(session: LocalSession): WireRecord {
    const r = this.#replicas;
    return toWire(session, r?.replicaOf(session), r?.movedHere(session) || undefined);
  }

  unbound(session: LocalSession): void {
    this.#directory.forget(session);
    this.#broadcast(UNBOUND, session.jid.full);
  }

  delivering(session: LocalSession, stanza: Element): void {
    this.#directory.watch(session, stanza);
  }

  forward(session: Session, stanza: Element): void {
    const peer = session.node!;
    const link = this.#links.get(peer);
    const flag = this.#rerouted.has(stanza) ? REROUTED : FIRST_HOP;
    const payload = deliverPayload(flag, session.jid.full, stanza);
    if (!link || !this.#mesh.send(peer, DELIVER.type, payload)) {
      return this.#vanished(session.jid, stanza, flag);
    }
    link.sent(stanza.name === "presence" ? "" : payload);
  }

  close(session: Session, condition: string, text: string): void {
    this.#mesh.send(
      session.node!,
      CLOSE.type,
      JSON.stringify({ jid: session.jid.full, condition, text }),
    );
  }

  // --- Mesh events.

  #up(peer: string, incarnation: number): void {
    this.#links.set(peer, new Acks());
    // Invalidations may have been missed while the link was down.
    this.ctx.caches.clear();
    // In parts, each well under the largest frame; the peer acts on the last.
    let records: WireRecord[] = [];
    for (const s of this.ctx.sessions.local()) {
      records.push(this.#wire(s));
      if (records.length < SNAPSHOT_PART) continue;
      this.#mesh.send(peer, SNAPSHOT.type, JSON.stringify({ records, last: false }));
      records = [];
    }
    this.#mesh.send(peer, SNAPSHOT.type, JSON.stringify({ records, last: true }));
    this.#tell("up", (o) => o.up?.(peer, incarnation));
  }

  #woke(): void {
    for (const link of this.#links.values()) link.assumeAcked();
    this.#tell("woke", (o) => o.woke?.());
  }

  /**
   * Tells each service of a peer event. These run outside any frame's handling (a socket
   * closing, a timer): a service's error is logged here, never left to end the process.
   */
  #tell(event: string, call: (o: PeerObserver) => void): void {
    for (const o of this.#observers) {
      try {
        call(o);
      } catch (e) {
        log.error("a service failed on peer event {event}: {error}", {
          event,
          error: e instanceof Error ? e.stack ?? e.message : String(e),
        });
      }
    }
  }

  #down(peer: string): void {
    this.#snapshotDone.delete(peer);
    const link = this.#links.get(peer);
    this.#links.delete(peer);
    this.#directory.dropNode(peer);
    this.ctx.caches.clear();
    this.#invalidations.gone(peer);
    if (!link) return;
    // What the peer may not have handled is handled here: for its sessions that live on
    // elsewhere (resumable ones), or as for sessions that are gone.
    for (const payload of link.unacked()) {
      const nl = payload.indexOf("\n");
      const to = parseJid(payload.slice(1, nl));
      if (to) this.#resend(to, payload.slice(nl + 1), payload[0]);
    }
    this.#tell("down", (o) => o.down?.(peer));
  }

  /** Every frame from a peer passes here: decoded and checked before any handler sees it. */
  #message(peer: string, type: number, payload: Uint8Array): void {
    if (!this.#links.has(peer)) return;
    const registered = this.#handlers.get(type);
    if (!registered) return this.#unknown(peer, type);
    const { frame, handle } = registered;
    try {
      const done = handle(peer, frame.codec.decode(utf8(payload)));
      if (done) done.catch((e) => this.#refuse(peer, frame, e));
    } catch (e) {
      this.#refuse(peer, frame, e);
    }
  }

  /**
   * A frame type nobody here handles: of a service this node does not run, or from a peer of a
   * newer version, a frame this one does not know yet (ignored); from any other, invalid input.
   */
  #unknown(peer: string, type: number): void {
    if (KNOWN_TYPES.has(type) || (this.#mesh.peerVersion(peer) ?? 0) > this.#mesh.version) {
      return limited.debug(peer, "ignored a frame of type {type} from {peer}", { type, peer });
    }
    this.#refuse(peer, { type, name: `type ${type}` }, new FrameError("an unknown frame type"));
  }

  /**
   * A frame that does not decode, or a claim its peer may not make, closes the link: the peer
   * is refused for a while, and its view is exchanged afresh on the next link. An error of a
   * handler's own closes it too (what the frame changed may be half done), logged as a fault.
   */
  #refuse(peer: string, frame: { type: number; name: string }, e: unknown): void {
    const invalid = e instanceof FrameError;
    const reason = `${frame.name} frame: ${invalid ? e.message : String(e)}`;
    if (invalid) {
      limited.warn(peer, "closed the link to {peer}: invalid input ({reason})", { peer, reason });
    } else {
      limited.error(peer, "closed the link to {peer}: handling a {frame} frame failed: {error}", {
        peer,
        frame: frame.name,
        error: e instanceof Error ? e.stack ?? e.message : String(e),
      });
    }
    this.#mesh.refuse(peer, reason);
  }

  #registerSessionFrames(): void {
    this.on(DELIVER, (peer, frame) => this.#deliverHere(peer, frame));
    this.on(DELIVERED, (peer, n) => this.#links.get(peer)!.acked(n));
    this.on(RECORD, (peer, r) => this.#record(peer, r));
    this.on(UNBOUND, (peer, jid) => this.#directory.unbound(peer, jid.full));
    this.on(SNAPSHOT, (peer, { records, last }) => {
      if (this.#snapshotDone.has(peer)) throw new FrameError("a snapshot after the last part");
      if (last) this.#snapshotDone.add(peer);
      // The peer's records were dropped when its link went down: these are all it holds.
      for (const r of records) this.#record(peer, r);
      // Sessions there may have missed what ours said meanwhile (a healed partition).
      if (last) { for (const host of this.hosts.values()) host.events.fire("node/up", peer); }
    });
    this.on(HANDOVER, (_peer, { jid, directed }) => {
      if (!this.hosts.has(jid.domain)) throw new FrameError(`${jid.domain} is not served here`);
      const max = this.ctx.config.limits.max_directed_presences;
      if (directed.length > max) throw new FrameError(`more than ${max} directed presences`);
      const s = this.ctx.sessions.get(jid);
      if (s && isLocal(s)) { for (const to of directed) s.directed.add(to.full); }
      else if (!s) {
        // The new session is gone already: what it owed them is said now.
        for (const to of directed) {
          this.ctx.router.sendFrom(
            x("presence", { from: jid.full, to: to.full, type: "unavailable" }),
          );
        }
      }
    });
    // Only a removed account's sessions are closed at a peer's word: the store says whether it
    // is (a store that cannot say, or an account made again meanwhile, keeps them).
    this.on(CLOSE, async (peer, { jid, condition, text }) => {
      const s = this.ctx.sessions.get(jid);
      if (!s || !isLocal(s)) return;
      const account = await this.ctx.store.getCredentials(jid.local, jid.domain).catch(() => true);
      if (account === null) return s.close(condition, text);
      limited.info(peer, "kept {jid}: {peer} asked to close it, but its account exists", {
        jid: jid.full,
        peer,
      });
    });
    this.on(INVALIDATE, (peer, { id, cache, key }) => {
      this.ctx.caches.clear(cache, key);
      this.#mesh.send(peer, CLEARED.type, String(id));
    });
    this.on(CLEARED, (peer, id) => this.#invalidations.answered(peer, id, true));
  }

  /**
   * A peer's session record. When it replaces a session here, the entities that session sent
   * directed presence to go with it to its new node, which tells them when it goes unavailable.
   */
  #record(peer: string, r: SessionRecord): void {
    const before = r.moved ? this.ctx.sessions.get(r.jid) : undefined;
    const replaced = this.#directory.record(peer, r);
    if (before && !isLocal(before) && before.node !== peer) {
      if (this.ctx.sessions.get(r.jid)?.node === peer) this.#follow(before.node!, r.jid);
    }
    if (!replaced?.directed.size) return;
    this.#mesh.send(
      peer,
      HANDOVER.type,
      JSON.stringify({ jid: r.jid.full, directed: [...replaced.directed] }),
    );
    replaced.directed.clear();
  }

  /**
   * A session moved from `from` (resumed or taken over elsewhere, or here): what this node sent
   * it on `from` and was not acknowledged goes where it is now, before anything newer, marked as
   * perhaps had already (its node drops what the session was given; `from`, if alive, passes
   * its own copy on, marked the same).
   */
  #follow(from: string, jid: Jid): void {
    const link = this.#links.get(from);
    if (!link) return;
    const prefix = jid.full + "\n";
    for (const payload of link.take((p) => p.startsWith(prefix, 1))) {
      this.#resend(jid, payload.slice(prefix.length + 1), payload[0]);
    }
  }

  /** A stanza a dead peer may not have handled, for `to`: wherever its session is now. */
  #resend(to: Jid, xml: string, flag: string): void {
    const session = this.ctx.sessions.get(to);
    if (session && !isLocal(session)) {
      const payload = RESENT + to.full + "\n" + xml;
      const link = this.#links.get(session.node!);
      if (link && this.#mesh.send(session.node!, DELIVER.type, payload)) {
        return link.sent(xml.startsWith("<presence") ? "" : payload);
      }
    }
    if (session && isLocal(session) && session.received(xml)) return;
    const stanza = parseStanza(xml);
    if (!stanza) return;
    if (session && isLocal(session)) this.ctx.sessions.deliver(session, stanza);
    else this.#vanished(to, stanza, flag === RESENT ? FIRST_HOP : flag);
  }

  #deliverHere(peer: string, { flag, to, xml }: { flag: string; to: Jid; xml: string }): void {
    const link = this.#links.get(peer)!;
    link.received((n) => this.#mesh.send(peer, DELIVERED.type, String(n)));
    const session = this.ctx.sessions.get(to);
    if (flag === RESENT && session && isLocal(session) && session.received(xml)) return;
    // Most stanzas are only written to a client's stream: as the text they came as. Presence is
    // read on the way (the directory watches it), and a stanza for a session that is gone is
    // handled as such: those are parsed.
    if (session && isLocal(session) && !xml.startsWith("<presence")) {
      return this.ctx.sessions.deliverText(session, xml);
    }
    if (
      session && !isLocal(session) &&
      (flag === FIRST_HOP || (flag === RESENT && session.node !== peer))
    ) {
      // Moved on (resumed elsewhere, or this node has not seen yet where it lives on): it
      // follows, marked as perhaps had already.
      return this.#resend(to, xml, flag);
    }
    const stanza = link.decoder.stanza(xml);
    if (session && isLocal(session)) this.ctx.sessions.deliver(session, stanza);
    else this.#vanished(to, stanza, flag === RESENT ? FIRST_HOP : flag);
  }

  /**
   * A stanza for a full JID whose session is gone (RFC 6121 §8.5.3.2): a chat or normal message
   * goes to the account as to its bare JID (once: a second miss stores it offline), an iq request
   * and a groupchat message are answered with an error, the rest is ignored, as on one node.
   */
  #vanished(to: Jid, stanza: Element, flag: string): void {
    const host = this.hosts.get(to.domain);
    const type = stanza.attrs.type;
    if (stanza.name === "message" && host) {
      if (type === "groupchat") return host.server.router.bounce(stanza, "service-unavailable");
      if (type !== undefined && type !== "normal" && type !== "chat") return;
      const from = parseJid(stanza.attrs.from ?? "") ?? host.jid;
      const ev = { stanza, from, to };
      if (flag === FIRST_HOP) {
        this.#rerouted.add(stanza);
        return deliverToBare(host, ev);
      }
      if (!host.events.fire("message/offline", ev)) {
        host.server.router.bounce(stanza, "recipient-unavailable");
      }
    } else if (stanza.name === "iq" && (type === "get" || type === "set")) {
      this.ctx.router.bounce(stanza, "service-unavailable");
    }
  }

  #broadcast(frame: FrameType<unknown>, payload: string): void {
    for (const peer of this.#links.keys()) this.#mesh.send(peer, frame.type, payload);
  }

  async #invalidate(cache: string, key: string): Promise<void> {
    await this.#invalidations.ask(
      this.#links.keys(),
      (peer, id) => this.#mesh.send(peer, INVALIDATE.type, JSON.stringify({ id, cache, key })),
    );
  }
}
