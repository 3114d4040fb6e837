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
import { Directory, toWire } from "./directory.ts";
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
  SNAPSHOT,
  type SnapshotPart,
  text,
  UNBOUND,
  type WireRecord,
} from "./wire.ts";
import { logger } from "../log/logger.ts";
import type { Services } from "../server/service.ts";
import { CLUSTER_EXTENSIONS } from "./extensions.ts";
import { Acks } from "./acks.ts";

const log = logger("cluster");
/** Records per SNAPSHOT frame (a few hundred bytes each). */
const SNAPSHOT_PART = 2000;

/** A member as `parley cluster status` shows it. */
export interface MemberStatus extends Omit<PeerStatus, "state"> {
  state: PeerStatus["state"] | "self";
  sessions: number;
  /** What services add (ClusterNode.addStatus), e.g. the rooms and occupants a node runs. */
  [service: string]: unknown;
}

/**
 * A service's traffic between nodes (MUC rooms, component pools, the proxy): frames of the types
 * it registered, and the comings and goings of peers, after the session directory has handled
 * them (on `down`, the peer's sessions are already gone).
 */
export interface ClusterChannel {
  message(peer: string, type: number, payload: Uint8Array): void;
  up?(peer: string, incarnation: number): void;
  down?(peer: string): void;
}

export class ClusterNode implements SessionObserver {
  readonly name: string;
  #mesh: Mesh;
  #directory: Directory;
  #links = new Map<string, Acks>();
  #invalidations = new Map<number, { waiting: Set<string>; done: () => void }>();
  #channels = new Map<number, ClusterChannel>();
  #statusParts: ((member: string) => Record<string, unknown>)[] = [];
  #nextId = 0;
  /** Stanzas this node already rerouted once, after their target was gone. */
  #rerouted = new WeakSet<Element>();
  readonly startedAt = Date.now();

  private constructor(
    readonly ctx: ServerContext,
    readonly hosts: Map<string, Host>,
    mesh: (node: ClusterNode) => Mesh,
  ) {
    this.name = ctx.config.cluster!.node!;
    this.#directory = new Directory(this.name, ctx.sessions);
    this.#mesh = mesh(this);
  }

  static async start(
    ctx: ServerContext,
    hosts: Map<string, Host>,
    services: Services,
  ): Promise<ClusterNode> {
    const cluster = ctx.config.cluster!;
    const options = meshOptions(cluster, await readClusterTls(cluster.tls));
    const node = new ClusterNode(ctx, hosts, (self) =>
      new Mesh(options, {
        up: (peer, incarnation) => self.#up(peer, incarnation),
        down: (peer) => self.#down(peer),
        message: (peer, type, payload) => self.#message(peer, type, payload),
      }));
    ctx.sessions.observe(node);
    ctx.caches.broadcast = (cache, key) => node.#invalidate(cache, key);
    // Before the mesh: extensions see every peer come up.
    for (const ext of CLUSTER_EXTENSIONS) await ext.start(node, services);
    await node.#mesh.start();
    return node;
  }

  stop(): Promise<void> {
    return this.#mesh.stop();
  }

  status(): MemberStatus[] {
    const listen = this.#mesh.options.listen;
    const members: MemberStatus[] = [
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
        sessions: this.ctx.sessions.size,
      },
      ...this.#mesh.status().map((p) => ({ ...p, sessions: this.#directory.count(p.node) })),
    ];
    return members.map((m) => Object.assign(m, ...this.#statusParts.map((part) => part(m.node))));
  }

  // --- For services (src/cluster/extensions.ts).

  /** Routes frames of `types` (from the ranges in wire.ts) to `channel`. */
  register(types: number[], channel: ClusterChannel): void {
    for (const t of types) {
      if (this.#channels.has(t)) throw new Error(`cluster frame type ${t} is taken`);
      this.#channels.set(t, channel);
    }
  }

  /** Adds a service's fields to each member of `status()` (`member` is a node name). */
  addStatus(part: (member: string) => Record<string, unknown>): void {
    this.#statusParts.push(part);
  }

  /** Queues a frame to a linked peer; false when there is no link to it. */
  send(peer: string, type: number, payload: string | Uint8Array): boolean {
    return this.#links.has(peer) && this.#mesh.send(peer, type, payload);
  }

  /** The peers linked now (their sessions are in the directory). */
  peers(): Iterable<string> {
    return this.#links.keys();
  }

  // --- SessionObserver: local changes go to every peer, stanzas to the node holding the session.

  bound(session: LocalSession, old: Session | undefined): void {
    if (old && isLocal(old)) this.#directory.forget(old);
    else if (old) this.#directory.replaced(old);
    this.#broadcast(RECORD, JSON.stringify(toWire(session)));
  }

  changed(session: LocalSession): void {
    this.#broadcast(RECORD, JSON.stringify(toWire(session)));
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
    if (!link || !this.#mesh.send(peer, DELIVER, payload)) {
      return this.#vanished(session.jid, stanza, flag);
    }
    link.sent(stanza.name === "presence" ? "" : payload);
  }

  close(session: Session, condition: string, text: string): void {
    this.#mesh.send(
      session.node!,
      CLOSE,
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
      records.push(toWire(s));
      if (records.length < SNAPSHOT_PART) continue;
      this.#mesh.send(peer, SNAPSHOT, JSON.stringify({ records, last: false }));
      records = [];
    }
    this.#mesh.send(peer, SNAPSHOT, JSON.stringify({ records, last: true }));
    for (const ch of new Set(this.#channels.values())) ch.up?.(peer, incarnation);
  }

  #down(peer: string): void {
    const link = this.#links.get(peer);
    this.#links.delete(peer);
    this.#directory.dropNode(peer);
    this.ctx.caches.clear();
    for (const [id, inv] of this.#invalidations) {
      inv.waiting.delete(peer);
      if (inv.waiting.size === 0) {
        this.#invalidations.delete(id);
        inv.done();
      }
    }
    if (!link) return;
    // What the peer may not have handled is handled here, its sessions being gone now.
    for (const payload of link.unacked()) {
      const nl = payload.indexOf("\n");
      const to = parseJid(payload.slice(1, nl));
      const stanza = parseStanza(payload.slice(nl + 1));
      if (to && stanza) this.#vanished(to, stanza, payload[0]);
    }
    for (const ch of new Set(this.#channels.values())) ch.down?.(peer);
  }

  #message(peer: string, type: number, payload: Uint8Array): void {
    const link = this.#links.get(peer);
    if (!link) return;
    switch (type) {
      case DELIVER:
        return this.#deliverHere(link, peer, text(payload));
      case DELIVERED:
        return link.acked(Number(text(payload)));
      case RECORD:
        return this.#record(peer, JSON.parse(text(payload)));
      case UNBOUND:
        return this.#directory.unbound(peer, text(payload));
      case SNAPSHOT: {
        // The peer's records were dropped when its link went down: these are all it holds.
        const { records, last } = JSON.parse(text(payload)) as SnapshotPart;
        for (const r of records) this.#record(peer, r);
        // Sessions there may have missed what ours said meanwhile (a healed partition).
        if (last) { for (const host of this.hosts.values()) host.events.fire("node/up", peer); }
        return;
      }
      case HANDOVER: {
        const { jid, directed } = JSON.parse(text(payload)) as { jid: string; directed: string[] };
        const target = parseJid(jid);
        const s = target && this.ctx.sessions.get(target);
        if (s && isLocal(s)) { for (const to of directed) s.directed.add(to); }
        else if (!s) {
          // The new session is gone already: what it owed them is said now.
          for (const to of directed) {
            this.ctx.router.sendFrom(x("presence", { from: jid, to, type: "unavailable" }));
          }
        }
        return;
      }
      case CLOSE: {
        const { jid, condition, text: why } = JSON.parse(text(payload));
        const target = parseJid(jid);
        const s = target && this.ctx.sessions.get(target);
        if (s && isLocal(s)) s.close(condition, why);
        return;
      }
      case INVALIDATE: {
        const { id, cache, key } = JSON.parse(text(payload));
        this.ctx.caches.clear(cache, key);
        this.#mesh.send(peer, CLEARED, String(id));
        return;
      }
      case CLEARED: {
        const id = Number(text(payload));
        const inv = this.#invalidations.get(id);
        inv?.waiting.delete(peer);
        if (inv?.waiting.size === 0) {
          this.#invalidations.delete(id);
          inv.done();
        }
        return;
      }
      default: {
        const channel = this.#channels.get(type);
        if (channel) return channel.message(peer, type, payload);
        log.warn("ignored a frame of unknown type {type} from {peer}", { type, peer });
      }
    }
  }

  /**
   * A peer's session record. When it replaces a session here, the entities that session sent
   * directed presence to go with it to its new node, which tells them when it goes unavailable.
   */
  #record(peer: string, r: WireRecord): void {
    const replaced = this.#directory.record(peer, r);
    if (!replaced?.directed.size) return;
    this.#mesh.send(
      peer,
      HANDOVER,
      JSON.stringify({ jid: r.jid, directed: [...replaced.directed] }),
    );
    replaced.directed.clear();
  }

  #deliverHere(link: Acks, peer: string, payload: string): void {
    link.received((n) => this.#mesh.send(peer, DELIVERED, String(n)));
    const nl = payload.indexOf("\n");
    const to = parseJid(payload.slice(1, nl));
    const session = to && this.ctx.sessions.get(to);
    // Most stanzas are only written to a client's stream: as the text they came as. Presence is
    // read on the way (the directory watches it), and a stanza for a session that is gone is
    // handled as such: those are parsed.
    if (session && isLocal(session) && !payload.startsWith("<presence", nl + 1)) {
      return this.ctx.sessions.deliverText(session, payload.slice(nl + 1));
    }
    const stanza = link.decoder.decode(payload.slice(nl + 1));
    if (!to || !stanza) {
      return log.warn("dropped an unreadable stanza from {peer}", { peer });
    }
    if (session && isLocal(session)) this.ctx.sessions.deliver(session, stanza);
    else this.#vanished(to, stanza, payload[0]);
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

  #broadcast(type: number, payload: string): void {
    for (const peer of this.#links.keys()) this.#mesh.send(peer, type, payload);
  }

  #invalidate(cache: string, key: string): Promise<void> {
    if (this.#links.size === 0) return Promise.resolve();
    const id = ++this.#nextId;
    const waiting = new Set(this.#links.keys());
    const payload = JSON.stringify({ id, cache, key });
    for (const peer of waiting) this.#mesh.send(peer, INVALIDATE, payload);
    return new Promise((done) => this.#invalidations.set(id, { waiting, done }));
  }
}
