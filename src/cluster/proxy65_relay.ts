// The SOCKS5 Bytestreams proxy (XEP-0065) over a cluster. Every node runs the proxy under the same
// JID and announces its own streamhost; a stream's two connections may reach any nodes, and its
// activation any node (the requester's).
//
// - Activation: the requester's node hands it to the decider, the first live node by name (every
//   node computes the same one from the membership). The decider asks every node what it holds
//   for the stream's hash, checks the limits over the whole cluster (`max_streams`,
//   `max_streams_per_user`: every node tells every other which streams it runs, and the decider
//   also counts the ones it let start and has not heard of yet), and tells the node that holds
//   the connections to start. With one connection on each of two nodes, the first by name asks
//   the other for a one-time ticket over the mesh link, dials it over a link of the stream's own
//   (proxy65_link.ts) and relays its connection to it. Connections with the hash of a stream that
//   runs are refused (0x02) on every node, and those that wait on a third node are closed when
//   the stream starts.
// - A node that dies ends the streams that ran through it (their connections or links close),
//   and nothing else: the others run on their own nodes, and its stream records are dropped.
import type { ClusterNode, PeerObserver } from "./node.ts";
import type { Proxy65Service, StreamDistribution } from "../proxy65/service.ts";
import type { Activation, Held } from "../proxy65/relay.ts";
import { HELLO, REQUEST, type Request, RESPONSE, RESULTS, STREAM } from "./proxy65_wire.ts";
import { FrameError } from "./codec.ts";
import { Asks } from "./asks.ts";
import { parseAddress } from "./config.ts";
import { type ClusterTls, readClusterTls } from "./tls.ts";
import {
  dialStream,
  type Expected,
  type LinkEnd,
  listenForStreams,
  relaying,
  type StreamTickets,
} from "./proxy65_link.ts";
import { logger } from "../log/logger.ts";

const log = logger("proxy65");

/** How long a node waits for another's answer; a node that dies meanwhile answers nothing. */
const REQUEST_MS = 10_000;

interface Counted {
  domain: string;
  owner: string;
}

/** The proxy's distribution over a cluster. */
export class Proxy65Cluster implements PeerObserver, StreamDistribution {
  /** The proxies of this node, by domain. */
  readonly proxies = new Map<string, Proxy65Service>();
  /** Requests to other nodes waiting for their answers, and what each asked (to check them). */
  #asks = new Asks<unknown>();
  #ops = new Map<number, Request["op"]>();
  /** Each peer's stream listener per proxy domain, from its HELLO. */
  #listeners = new Map<string, Map<string, { host: string; port: number }>>();
  /** The streams each node counts (a cross-node one by the node that dialled), by key. */
  #streams = new Map<string, Map<string, Counted>>();
  /** Streams this node, as the decider, let start and has not heard of yet. */
  #reserved = new Map<string, Counted>();
  /** The links of streams relayed with each peer, closed when the peer goes down. */
  #links = new Map<string, Set<LinkEnd>>();
  /** Each proxy's relay port, by domain. */
  #ports = new Map<string, number>();
  /** Each proxy's tickets for the links it expects, by domain. */
  #tickets = new Map<string, StreamTickets>();
  /** This node's credentials for stream links, and its host in the peer list (where it is dialled). */
  #creds: ClusterTls | undefined;
  #host = "";

  constructor(readonly node: ClusterNode) {
    this.#streams.set(node.name, new Map());
  }

  serve(proxy: Proxy65Service): void {
    this.proxies.set(proxy.domain, proxy);
  }

  /**
   * Listens for other nodes' stream links, one port per proxy, and joins the cluster's frames (a
   * node with no proxy takes no part in them).
   */
  async start(): Promise<void> {
    if (this.proxies.size === 0) return;
    const cluster = this.node.ctx.config.cluster!;
    const own = cluster.peers.find((p) => p.node === this.node.name)!;
    this.#host = parseAddress(own.address)!.host;
    const creds = await readClusterTls(cluster.tls);
    const listenHost = parseAddress(cluster.listen!)!.host;
    for (const proxy of this.proxies.values()) {
      const relayPort = listenForStreams(
        creds,
        listenHost,
        proxy.config.relay_port,
        (expected, end) => this.#accept(proxy, expected, end),
      );
      proxy.relay.onClose(relayPort.close);
      this.#tickets.set(proxy.domain, relayPort.tickets);
      const port = relayPort.port;
      this.#ports.set(proxy.domain, port);
      log.info("proxy65 {domain}: streams from other nodes on {host}:{port}", {
        domain: proxy.domain,
        host: listenHost,
        port,
      });
    }
    this.#creds = creds;
    this.#registerFrames();
    this.node.follow(this);
  }

  activate(proxy: Proxy65Service, hash: string, owner: string): Promise<Activation> {
    return this.#activate(proxy.domain, hash, owner);
  }

  activeElsewhere(proxy: Proxy65Service, hash: string): boolean {
    return this.#runsElsewhere(proxy.domain, hash);
  }

  // --- Peers

  up(peer: string): void {
    for (const proxy of this.proxies.values()) {
      const { host, port } = proxy.streamhost;
      this.node.send(
        peer,
        HELLO,
        JSON.stringify({
          domain: proxy.domain,
          host: this.#host,
          port: this.#ports.get(proxy.domain),
          streamhost: `${host}:${port}`,
        }),
      );
    }
    for (const [key, c] of this.#streams.get(this.node.name)!) {
      this.node.send(peer, STREAM, JSON.stringify({ key, ...c }));
    }
  }

  down(peer: string): void {
    this.#listeners.delete(peer);
    this.#streams.delete(peer);
    for (const end of this.#links.get(peer) ?? []) end.close();
    this.#links.delete(peer);
    this.#asks.gone(peer);
  }

  #registerFrames(): void {
    this.node.on(HELLO, (peer, { domain, host, port, streamhost }) => {
      if (!this.#listeners.has(peer)) this.#listeners.set(peer, new Map());
      this.#listeners.get(peer)!.set(domain, { host, port });
      const own = this.proxies.get(domain)?.streamhost;
      if (own && `${own.host}:${own.port}` === streamhost) {
        log.info(
          "proxy65 {domain}: {peer} announces the same streamhost {streamhost} as this node " +
            "(right behind a load balancer that spreads connections over the nodes)",
          { domain, peer, streamhost },
        );
      }
    });
    this.node.on(
      REQUEST,
      (peer, request) =>
        this.#handle(request, peer).then((result) =>
          void this.node.send(peer, RESPONSE, JSON.stringify({ id: request.id, result }))
        ),
    );
    this.node.on(RESPONSE, (peer, { id, result }) => {
      const op = this.#ops.get(id);
      if (!op || !this.#asks.waits(peer, id)) return; // answered too late: the asker gave up
      const checked = RESULTS[op].safeParse(result);
      if (!checked.success) throw new FrameError(`not an answer to ${op}`);
      this.#asks.answered(peer, id, checked.data);
    });
    this.node.on(STREAM, (peer, { key, domain, owner }) => {
      if (!this.#streams.has(peer)) this.#streams.set(peer, new Map());
      const streams = this.#streams.get(peer)!;
      if (!owner || !domain) return void streams.delete(key);
      const proxy = this.proxies.get(domain);
      if (!proxy) return;
      // No node runs more streams than the proxy allows in all.
      if (!streams.has(key) && streams.size >= proxy.config.max_streams) {
        throw new FrameError(`more than ${proxy.config.max_streams} streams (max_streams)`);
      }
      streams.set(key, { domain, owner });
      // Connections with its hash that wait here were not paired: they wait for nothing.
      proxy.relay.dropWaiting(key.slice(domain.length + 1));
    });
  }

  // --- Requests between nodes

  /** Asks `peer`; undefined when it does not answer (gone, or too slow). */
  async #ask<T>(peer: string, request: Request): Promise<T | undefined> {
    if (peer === this.node.name) return this.#handle(request, peer) as Promise<T>;
    let asked = 0;
    const answers = await this.#asks.ask([peer], (to, id) => {
      asked = id;
      this.#ops.set(id, request.op);
      return this.node.send(to, REQUEST, JSON.stringify({ id, ...request }));
    }, REQUEST_MS);
    this.#ops.delete(asked);
    return answers.get(peer) as T | undefined;
  }

  /** Answers `r` from node `from`. */
  #handle(r: Request, from: string): Promise<unknown> {
    const proxy = this.proxies.get(r.domain);
    if (!proxy) return Promise.resolve(undefined);
    switch (r.op) {
      case "activate":
        // Only the decider decides (nodes may briefly disagree on which one that is).
        if (this.#decider() !== this.node.name) return Promise.resolve("no-pair");
        return this.#decide(proxy, r.hash, r.owner);
      case "lookup":
        return Promise.resolve(proxy.relay.held(r.hash));
      case "expect": {
        const held = proxy.relay.held(r.hash);
        if (held.count !== 1 || held.active) return Promise.resolve(undefined);
        const expected = { peer: from, hash: r.hash, owner: r.owner };
        return Promise.resolve(this.#tickets.get(r.domain)!.issue(expected));
      }
      case "start":
        return this.#startHere(proxy, r.hash, r.owner, r.peer);
    }
  }

  // --- Activation

  /** The node that decides activations: the first live node by name, the same on every node. */
  #decider(): string {
    return [this.node.name, ...this.node.peers()].sort()[0];
  }

  async #activate(domain: string, hash: string, owner: string): Promise<Activation> {
    const result = await this.#ask<Activation>(this.#decider(), {
      op: "activate",
      domain,
      hash,
      owner,
    });
    return result ?? "no-pair";
  }

  async #decide(proxy: Proxy65Service, hash: string, owner: string): Promise<Activation> {
    const domain = proxy.domain;
    const nodes = [this.node.name, ...this.node.peers()].sort();
    const held = await Promise.all(
      nodes.map((n) => this.#ask<Held>(n, { op: "lookup", domain, hash })),
    );
    if (held.some((h) => h?.active)) return "already-active";
    const both = nodes.find((_, i) => held[i]?.count === 2);
    const halves = nodes.filter((_, i) => held[i]?.count === 1);
    // Connections on more nodes than two: two of them are paired, the others time out.
    if (!both && halves.length < 2) return "no-pair";
    const key = `${domain}\n${hash}`;
    let total = 0, mine = 0;
    for (
      const c of [
        ...[...this.#streams.values()].flatMap((m) => [...m.values()]),
        ...this.#reserved.values(),
      ]
    ) {
      if (c.domain !== domain) continue;
      total++;
      if (c.owner === owner) mine++;
    }
    if (total >= proxy.config.max_streams) return "full";
    if (mine >= proxy.config.max_streams_per_user) return "user-limit";
    this.#reserved.set(key, { domain, owner });
    try {
      const [at, peer] = both ? [both, undefined] : halves;
      const request: Request = { op: "start", domain, hash, owner, peer };
      return await this.#ask<Activation>(at, request) ?? "no-pair";
    } finally {
      this.#reserved.delete(key);
    }
  }

  /** Starts a stream held here, or the half held here with the other half on `peer`. */
  async #startHere(
    proxy: Proxy65Service,
    hash: string,
    owner: string,
    peer?: string,
  ): Promise<Activation> {
    if (!peer) return this.#counted(proxy, hash, owner, proxy.relay.start(hash, owner));
    const address = this.#listeners.get(peer)?.get(proxy.domain);
    if (!address || proxy.relay.held(hash).count !== 1) return "no-pair";
    const domain = proxy.domain;
    const ticket = await this.#ask<string>(peer, { op: "expect", domain, hash, owner });
    if (!ticket) return "no-pair";
    let end: LinkEnd;
    try {
      end = await dialStream(this.#creds!, peer, address, ticket);
    } catch (e) {
      log.warn("proxy65: no link to {peer} for a stream: {error}", {
        peer,
        error: (e as Error).message,
      });
      return "no-pair";
    }
    const ended = this.#linked(peer, end, proxy.relay.bridge(hash, owner, end));
    if (!ended) end.close();
    return this.#counted(proxy, hash, owner, ended);
  }

  /** A peer's link, with a valid ticket, for a stream whose other half is held here. */
  async #accept(proxy: Proxy65Service, { peer, hash, owner }: Expected, end: LinkEnd) {
    const held = proxy.relay.held(hash);
    if (held.count !== 1 || held.active) return false;
    const told = await relaying(end).then(() => true, () => false);
    if (!told || !this.#linked(peer, end, proxy.relay.bridge(hash, owner, end))) end.close();
    return true;
  }

  /** Whether the stream `hash` of `domain` runs on another node, as it told. */
  #runsElsewhere(domain: string, hash: string): boolean {
    const key = `${domain}\n${hash}`;
    for (const [node, streams] of this.#streams) {
      if (node !== this.node.name && streams.has(key)) return true;
    }
    return false;
  }

  #linked(peer: string, end: LinkEnd, ended: Promise<void> | undefined) {
    if (!ended) return undefined;
    if (!this.#links.has(peer)) this.#links.set(peer, new Set());
    this.#links.get(peer)!.add(end);
    return ended.finally(() => this.#links.get(peer)?.delete(end));
  }

  /** Tells every node of a stream started here, and of its end. */
  #counted(
    proxy: Proxy65Service,
    hash: string,
    owner: string,
    ended: Promise<void> | undefined,
  ): Activation {
    if (!ended) return "no-pair";
    const key = `${proxy.domain}\n${hash}`;
    const mine = this.#streams.get(this.node.name)!;
    const counted = { domain: proxy.domain, owner };
    mine.set(key, counted);
    this.#broadcast(JSON.stringify({ key, ...counted }));
    void ended.finally(() => {
      mine.delete(key);
      this.#broadcast(JSON.stringify({ key }));
    });
    return "ok";
  }

  #broadcast(payload: string): void {
    for (const peer of this.node.peers()) this.node.send(peer, STREAM, payload);
  }
}
