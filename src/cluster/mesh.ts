// The full mesh: this node listens for its peers and dials each of them, keeps exactly one link
// per pair, reconnects with jittered exponential backoff and declares a peer dead after
// `deadAfterMs` of silence. The layers above see only up / down / message events.
//
// One link per pair: both nodes dial (so a node that comes up joins at once, in any start
// order), and of the pair the node with the lower name decides which connection becomes the
// link: it sends ACCEPT on the first connection whose hello it accepts and closes the others.
// The higher node waits for that ACCEPT. A connection from a peer that is already linked with the
// same incarnation is refused (it is a late duplicate; a link that is really gone is noticed by
// its close or by the heartbeat); one from a new incarnation replaces the link (down, then up).
import tls from "node:tls";
import net from "node:net";
import { ACCEPT, HELLO, MAX_FRAME_BYTES } from "./frames.ts";
import { type Hello, Link, type LinkLimits, type LinkOwner } from "./link.ts";
import {
  certNodeName,
  clientOptions,
  type ClusterTls,
  handshakeFailure,
  serverOptions,
} from "./tls.ts";
import { logger } from "../log/logger.ts";
import { LimitedLog } from "../log/limited.ts";

const log = logger("cluster");
/** What strangers and misbehaving peers cause to be logged, at a bounded rate per source. */
const limited = new LimitedLog(log);

/** The protocol version this build speaks; it also talks to one version below and above. */
export const PROTOCOL_VERSION = 1;

export interface PeerAddress {
  node: string;
  host: string;
  port: number;
}

export interface MeshOptions {
  node: string;
  listen: { host: string; port: number };
  /** Every node of the cluster; this node's own entry is skipped. */
  peers: PeerAddress[];
  tls: ClusterTls;
  heartbeatMs: number;
  deadAfterMs: number;
  /** For tests of version negotiation. */
  version?: number;
  maxFrame?: number;
  maxQueued?: number;
  backoff?: { minMs: number; maxMs: number };
  /**
   * How long a peer whose link was closed for invalid input is refused (and not dialled);
   * doubled for each such link in a row, up to 64 times.
   */
  invalidInputBackoffMs?: number;
}

export interface MeshEvents {
  up(peer: string, incarnation: number): void;
  down(peer: string): void;
  /**
   * This node's event loop ran again after a stall (stopped, swapped out) of over half
   * `deadAfterMs`: its peers, up all along, have handled what it had sent them, though their
   * acknowledgements may be lost with links that close now (see Link). Said before anything is
   * sent after the stall.
   */
  woke?(): void;
  /** `payload` is only valid during the call: copy it to keep it. */
  message(peer: string, type: number, payload: Uint8Array): void;
}

export interface PeerStatus {
  node: string;
  address: string;
  state: "up" | "connecting" | "down";
  /** When the state last changed between up and not up (ms since the epoch). */
  since: number;
  rttMs: number | null;
  queuedBytes: number;
  /** Bytes sent and received over the current link. */
  sentBytes: number;
  receivedBytes: number;
  incarnation: number | null;
  version: number | null;
  /** Links with this peer closed for invalid input, since this node started. */
  invalidInput: number;
}

class Peer {
  link: Link | undefined;
  readonly candidates = new Set<Link>();
  since = Date.now();
  failures = 0;
  lastFailure = "";
  retry: ReturnType<typeof setTimeout> | undefined;
  /** Links closed in a row for invalid input, and until when the peer is refused for it. */
  strikes = 0;
  refusedUntil = 0;
  invalidInput = 0;
  constructor(readonly node: string, readonly host: string, readonly port: number) {}

  get address(): string {
    return this.host.includes(":") ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }
}

/** Two versions talk when they are at most one apart, in the older one's protocol. */
export function negotiate(mine: number, theirs: number): number | undefined {
  return Math.abs(mine - theirs) <= 1 ? Math.min(mine, theirs) : undefined;
}

/** Start time in ms, then 11 random bits: unique per start and ordered by start time. */
function newIncarnation(): number {
  return Date.now() * 2048 + Math.floor(Math.random() * 2048);
}

export class Mesh implements LinkOwner {
  readonly incarnation = newIncarnation();
  readonly version: number;
  #peers = new Map<string, Peer>();
  #limits: LinkLimits;
  #server: tls.Server | undefined;
  #sockets = new Set<net.Socket>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #stopped = false;
  #helloJson: string;
  #lastTick = performance.now();

  constructor(readonly options: MeshOptions, readonly events: MeshEvents) {
    this.version = options.version ?? PROTOCOL_VERSION;
    for (const p of options.peers) {
      if (p.node !== options.node) this.#peers.set(p.node, new Peer(p.node, p.host, p.port));
    }
    this.#limits = {
      maxFrame: options.maxFrame ?? MAX_FRAME_BYTES,
      maxQueued: options.maxQueued ?? 64 << 20,
      deadAfterMs: options.deadAfterMs,
    };
    this.#helloJson = JSON.stringify(
      {
        version: this.version,
        node: options.node,
        incarnation: this.incarnation,
      } satisfies Hello,
    );
  }

  /** Listens, then dials every peer. Resolves with the address listened on. */
  async start(): Promise<{ host: string; port: number }> {
    const server = tls.createServer({
      ...serverOptions(this.options.tls),
      handshakeTimeout: this.options.deadAfterMs,
    }, (socket) => this.#accept(socket));
    this.#server = server;
    server.on("connection", (s: net.Socket) => {
      s.setNoDelay(true);
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
    });
    server.on("tlsClientError", (e: Error, socket: tls.TLSSocket) => {
      // Deno's TLSSocket forgets the address when the handshake fails; the TCP socket knows it.
      const tcp = (socket as { _parent?: net.Socket })._parent ?? socket;
      const reason = handshakeFailure(e, socket);
      const props = { address: `${tcp.remoteAddress}:${tcp.remotePort}`, reason };
      // A connection closed mid-handshake is how two nodes dialling each other at once settle
      // on one link (the other is closed): routine, unless the certificate was the cause.
      const routine = !socket.authorizationError && (e as { code?: string }).code === "ECONNRESET";
      limited.at(
        routine ? "debug" : "warn",
        `${tcp.remoteAddress} ${reason}`,
        "refused a connection from {address}: {reason}",
        props,
      );
    });
    const { host, port } = this.options.listen;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (e) => log.error("cluster listener error: {error}", { error: e.message }));
    const bound = server.address() as net.AddressInfo;
    log.info("node {node} (incarnation {incarnation}) listening for peers on {host}:{port}", {
      node: this.options.node,
      incarnation: this.incarnation,
      host: bound.address,
      port: bound.port,
    });
    const tick = Math.max(10, Math.min(this.options.heartbeatMs, this.options.deadAfterMs) / 4);
    this.#timer = setInterval(this.#tick, tick);
    for (const peer of this.#peers.values()) this.#dial(peer);
    return { host: bound.address, port: bound.port };
  }

  /**
   * Notes that this node's event loop runs at `now`. The tick is due every quarter of the
   * shorter period: this late, this node was stalled, not its peers (`woke`).
   */
  awake(now: number): void {
    const late = now - this.#lastTick > this.options.deadAfterMs / 2;
    this.#lastTick = now;
    if (late) this.events.woke?.();
  }

  /** Queues a frame (type ≥ FIRST_APP_TYPE) for `peer`; false when there is no link to it. */
  send(peer: string, type: number, payload: Uint8Array | string): boolean {
    // Nothing leaves after a stall before the layers above have heard of it.
    this.awake(performance.now());
    const link = this.#peers.get(peer)?.link;
    return link !== undefined && link.send(type, payload);
  }

  status(): PeerStatus[] {
    return [...this.#peers.values()].map((p) => ({
      node: p.node,
      address: p.address,
      state: p.link ? "up" : p.candidates.size ? "connecting" : "down",
      since: p.since,
      rttMs: p.link && !Number.isNaN(p.link.rtt) ? p.link.rtt : null,
      queuedBytes: p.link?.queuedBytes ?? 0,
      sentBytes: p.link?.bytesOut ?? 0,
      receivedBytes: p.link?.bytesIn ?? 0,
      incarnation: p.link?.incarnation ?? null,
      version: p.link?.version ?? null,
      invalidInput: p.invalidInput,
    }));
  }

  /** The protocol version `peer` announced on its current link. */
  peerVersion(peer: string): number | undefined {
    return this.#peers.get(peer)?.link?.peerVersion;
  }

  /**
   * Closes the link to `peer` for invalid input: the peer is refused, and not dialled, for a
   * while that doubles with each such link in a row.
   */
  refuse(peer: string, reason: string): void {
    const p = this.#peers.get(peer);
    const link = p?.link;
    if (!p || !link) return;
    p.invalidInput++;
    const backoff = this.options.invalidInputBackoffMs ?? 1000;
    p.refusedUntil = performance.now() + backoff * 2 ** Math.min(p.strikes++, 6);
    link.refused = true;
    link.close(`invalid input: ${reason}`);
  }

  /** Closes every link and the listener; no events are reported from here on. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    for (const peer of this.#peers.values()) {
      clearTimeout(peer.retry);
      peer.link?.close("this node stops");
      for (const c of peer.candidates) c.close("this node stops");
    }
    for (const s of this.#sockets) s.destroy();
    if (this.#server) await new Promise((resolve) => this.#server!.close(resolve));
  }

  #accept(socket: tls.TLSSocket): void {
    const address = `${socket.remoteAddress}:${socket.remotePort}`;
    const name = certNodeName(socket.getPeerCertificate());
    const peer = name === undefined ? undefined : this.#peers.get(name);
    if (this.#stopped || !peer) {
      if (!this.#stopped) {
        limited.warn(
          String(socket.remoteAddress),
          "refused a connection from {address}: its certificate names {name}, {why}",
          { address, name: name ?? "no node", why: "which is not a peer of this node" },
        );
      }
      socket.destroy();
      return;
    }
    if (performance.now() < peer.refusedUntil) {
      limited.debug(peer.node, "refused a connection from {peer}: {why}", {
        peer: peer.node,
        why: "its last link sent invalid input",
      });
      socket.destroy();
      return;
    }
    const link = new Link(socket, peer.node, false, this, this.#limits);
    peer.candidates.add(link);
    link.send(HELLO, this.#helloJson);
  }

  #dial(peer: Peer): void {
    clearTimeout(peer.retry);
    peer.retry = undefined;
    if (this.#stopped || peer.link || [...peer.candidates].some((c) => c.dialed)) return;
    // Frames leave in batches already: no waiting for acknowledgements of the last one (Nagle).
    const tcp = net.connect({ host: peer.host, port: peer.port, noDelay: true });
    const socket = tls.connect({
      socket: tcp,
      ...clientOptions(this.options.tls, peer.node, peer.address),
    });
    tcp.on("error", (e) => socket.destroy(e));
    const link = new Link(socket, peer.node, true, this, this.#limits);
    peer.candidates.add(link);
    socket.once("secureConnect", () => link.send(HELLO, this.#helloJson));
  }

  #retry(peer: Peer): void {
    if (this.#stopped || peer.link || peer.retry !== undefined) return;
    const { minMs, maxMs } = this.options.backoff ?? { minMs: 100, maxMs: 2000 };
    const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(peer.failures++, 20));
    const refused = Math.max(0, peer.refusedUntil - performance.now());
    peer.retry = setTimeout(
      () => this.#dial(peer),
      refused + ceiling / 2 + Math.random() * ceiling / 2,
    );
  }

  hello(link: Link, hello: Hello): void {
    const version = negotiate(this.version, hello.version);
    if (version === undefined) {
      log.warn("refused {peer}: it speaks protocol version {theirs}, this node {mine} ({range})", {
        peer: link.peer,
        theirs: hello.version,
        mine: this.version,
        range: `it talks to versions ${this.version - 1} to ${this.version + 1}`,
      });
      return link.close("incompatible protocol version");
    }
    if (hello.node !== link.peer) {
      log.warn("refused a connection: its certificate names {peer} but its hello claims {claim}", {
        peer: link.peer,
        claim: hello.node,
      });
      return link.close("the hello names another node");
    }
    link.version = version;
    link.peerVersion = hello.version;
    link.incarnation = hello.incarnation;
    if (this.options.node > link.peer) return; // the peer decides; wait for its ACCEPT
    const current = this.#peers.get(link.peer)!.link;
    if (current && current.incarnation === hello.incarnation) {
      return link.close("a duplicate of the current link");
    }
    link.send(ACCEPT, "");
    this.#up(link);
  }

  accepted(link: Link): void {
    if (this.options.node < link.peer) return link.close("malformed input: ACCEPT from the peer");
    this.#up(link);
  }

  message(link: Link, type: number, payload: Uint8Array): void {
    this.events.message(link.peer, type, payload);
  }

  #up(link: Link): void {
    const peer = this.#peers.get(link.peer)!;
    const old = peer.link;
    peer.candidates.delete(link);
    const others = [...peer.candidates];
    peer.candidates.clear();
    link.state = "up";
    link.lastHeard = performance.now();
    peer.link = link;
    peer.failures = 0;
    peer.lastFailure = "";
    clearTimeout(peer.retry);
    peer.retry = undefined;
    for (const c of others) c.close("another connection became the link");
    if (old) {
      old.close("replaced by a new link");
      this.#down(peer, "replaced by a new link");
    }
    peer.since = Date.now();
    log.info("link to {peer} up ({direction}, protocol {version}, incarnation {incarnation})", {
      peer: peer.node,
      direction: link.dialed ? "dialled" : "accepted",
      version: link.version,
      incarnation: link.incarnation,
    });
    this.events.up(peer.node, link.incarnation);
  }

  #down(peer: Peer, reason: string): void {
    peer.since = Date.now();
    log.info("link to {peer} down: {reason}", { peer: peer.node, reason });
    this.events.down(peer.node);
  }

  closed(link: Link, reason: string): void {
    if (this.#stopped) return;
    const peer = this.#peers.get(link.peer)!;
    if (peer.link === link) {
      peer.link = undefined;
      // A link that lasted is a fresh start; one that only said nothing wrong before it went is not.
      if (!link.refused && performance.now() - link.opened > 10 * this.options.deadAfterMs) {
        peer.strikes = 0;
      }
      this.#down(peer, reason);
    } else if (!peer.candidates.delete(link)) {
      return; // superseded or replaced by the link in place
    } else if (peer.link) {
      // Both nodes dialled at once and the other connection became the link: a tie-break.
      return log.debug("a second connection with {peer} closed: {reason}", {
        peer: peer.node,
        reason,
      });
    } else if (link.dialed) {
      // Failing again the same way (a node that stays down) is routine: said once, then at debug.
      const level = reason === peer.lastFailure ? "debug" : "info";
      peer.lastFailure = reason;
      log[level]("no link to {peer} at {address}: {reason}", {
        peer: peer.node,
        address: peer.address,
        reason,
      });
    }
    this.#retry(peer);
  }

  #tick = (): void => {
    const now = performance.now();
    const { heartbeatMs, deadAfterMs } = this.options;
    this.awake(now);
    for (const peer of this.#peers.values()) {
      for (const c of peer.candidates) {
        if (now - c.opened > deadAfterMs) c.close("the handshake timed out");
      }
      const link = peer.link;
      if (!link) continue;
      if (link.heard) {
        link.heard = false;
        link.lastHeard = now;
      } else if (now - link.lastHeard > deadAfterMs) {
        link.close(`silent for ${Math.round(now - link.lastHeard)} ms: declared dead`);
        continue;
      }
      if (now - link.lastPing >= heartbeatMs) link.ping(now);
    }
  };
}
