// The proxy's SOCKS5 side, on Deno's native sockets (no TLS here, and far less per-chunk work
// than node:net streams): connections are paired by hash (the first two with one hash; a third
// is refused), wait for activation, then bytes flow both ways until either side closes.
//
// Admission: until its stream is activated by a logged-in requester, a connection is anonymous,
// so what it may hold is bounded apart from the streams of real users: at most `pending_per_ip`
// such connections per address and 2 × `max_streams` in all (more are closed on accept), each
// given `handshake_timeout` seconds from accept to send its greeting and CONNECT and then
// `pair_timeout` seconds for its partner and the activation, and one that closes frees its place
// at once (a read watches it while it waits). `max_streams` counts active streams only, so a
// flood of unpaired connections cannot use up the streams of users.
//
// In a cluster (src/cluster/proxy65_relay.ts) the two connections of a stream may be on two
// nodes: `bridge` relays the one held here to a remote end (a link to the other node) instead of
// a second local connection; the limits are then checked cluster-wide before `start`/`bridge`.
//
// Backpressure and memory (pump.ts): each direction copies through two reusable buffers and reads
// into one only once its previous chunk has been written. Buffers start at 64 KiB and double while
// reads fill them, up to the configured `buffer`: a stream therefore holds at most 4 × `buffer`
// (4 MiB by default) in the proxy, however slowly either side reads; a slow stream keeps small
// buffers.
import { connectReply, REPLY, Socks5Handshake } from "./socks5.ts";
import type { Proxy65Config } from "../config/schema.ts";
import { logger } from "../log/logger.ts";
import { writeAll } from "../stream/write_all.ts";
import { pump } from "./pump.ts";
import { acceptLoop } from "../stream/accept_loop.ts";
import type { DescriptorBudget } from "../stream/descriptor_budget.ts";

const log = logger("proxy65");
/** The read that watches a waiting connection: small, as most waiting connections send nothing. */
const HEAD_BUFFER = 4096;

/** One connection to the proxy. */
interface Side {
  conn: Deno.TcpConn;
  ip: string;
  /** Closes the connection when its handshake, then its pairing, takes too long. */
  timer: ReturnType<typeof setTimeout>;
  pair?: Pair;
  closed?: boolean;
  /**
   * After CONNECT, the first chunk the client sends, or null when it closes first. While the
   * stream waits for activation this read notices a close; once active it is the first chunk.
   */
  head?: Promise<Uint8Array | null>;
}

/** The other end of a stream whose partner connection is on another node. */
export interface RemoteEnd {
  read(buf: Uint8Array): Promise<number | null>;
  write(chunk: Uint8Array): Promise<void>;
  close(): void;
}

interface Pair {
  hash: string;
  sides: Side[];
  remote?: RemoteEnd;
  /** Set at activation: the requester's bare JID, for the per-user limit. */
  owner?: string;
  lastActivity: number;
  bytes: number;
  /** Bytes of copy buffers the stream holds (both directions): at most 4 × `buffer`. */
  held: number;
  closed: boolean;
}

export type Activation = "ok" | "no-pair" | "already-active" | "user-limit" | "full";

/** What this node holds of a stream: its connections here, and whether it is active. */
export interface Held {
  count: number;
  active: boolean;
}

const NO_DATA = new Uint8Array(0);

export class Socks5Relay {
  readonly pairs = new Map<string, Pair>();
  /** Connections not (yet) part of an active stream, in all and per source address. */
  readonly waiting = new Set<Side>();
  #waitingPerIp = new Map<string, number>();
  #active = 0;
  #listener: Deno.TcpListener | undefined;
  #sweeper: ReturnType<typeof setInterval>;
  #closers: (() => void)[] = [];

  constructor(
    readonly config: Proxy65Config,
    /** Shared with the XMPP listeners: the proxy's connections hold descriptors too. */
    readonly descriptors: DescriptorBudget,
    /** Whether the stream `hash` runs on another node (in a cluster). */
    readonly activeElsewhere: (hash: string) => boolean = () => false,
  ) {
    this.#sweeper = setInterval(() => this.#sweep(Date.now()), 1000);
  }

  listen(): Promise<number> {
    this.#listener = Deno.listen({ hostname: this.config.bind, port: this.config.port });
    const port = this.#listener.addr.port;
    log.info("proxy65 listening on {bind}:{port}", { bind: this.config.bind, port });
    void acceptLoop(this.#listener, log, (conn) => this.#admit(conn));
    return Promise.resolve(port);
  }

  /** Runs `closer` when the relay closes (a cluster's relay port). */
  onClose(closer: () => void): void {
    this.#closers.push(closer);
  }

  close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#listener?.close();
    for (const closer of this.#closers) closer();
    for (const p of this.pairs.values()) this.#drop(p);
    for (const s of this.waiting) this.#close(s);
    return Promise.resolve();
  }

  #admit(conn: Deno.TcpConn): void {
    if (!this.descriptors.admit()) return safeClose(conn);
    const ip = conn.remoteAddr.hostname;
    const fromIp = this.#waitingPerIp.get(ip) ?? 0;
    if (fromIp >= this.config.pending_per_ip || this.waiting.size >= 2 * this.config.max_streams) {
      log.debug("proxy65 refused a connection from {ip}", { ip });
      this.descriptors.release();
      return safeClose(conn);
    }
    // Said once when a limit is reached, not for every refused connection of a flood.
    if (fromIp + 1 === this.config.pending_per_ip) {
      log.info("proxy65: {ip} reached pending_per_ip ({max}); further connections are refused", {
        ip,
        max: this.config.pending_per_ip,
      });
    }
    if (this.waiting.size + 1 === 2 * this.config.max_streams) {
      log.warn("proxy65: {count} connections wait for activation; new ones are refused", {
        count: this.waiting.size + 1,
      });
    }
    const side: Side = {
      conn,
      ip,
      timer: setTimeout(() => this.#abandon(side), this.config.handshake_timeout * 1000),
    };
    this.waiting.add(side);
    this.#waitingPerIp.set(ip, fromIp + 1);
    void this.#handshake(side);
  }

  async #handshake(side: Side): Promise<void> {
    const { conn } = side;
    conn.setNoDelay(true);
    const hs = new Socks5Handshake();
    const buf = new Uint8Array(512);
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) return this.#close(side);
        let step = hs.push(buf.subarray(0, n));
        while (step.kind === "reply") {
          if (step.bytes.length) await writeAll(conn, step.bytes);
          if (step.close) return this.#close(side);
          step = hs.pending();
        }
        if (step.kind === "connect") return await this.#connect(side, step.hash, step.rest);
      }
    } catch {
      this.#abandon(side);
    }
  }

  async #connect(side: Side, hash: string, rest: Uint8Array): Promise<void> {
    let pair = this.pairs.get(hash);
    if ((pair && (pair.sides.length >= 2 || pair.owner)) || this.activeElsewhere(hash)) {
      // A third connection with this hash (its stream's other end may be on another node).
      await writeAll(side.conn, connectReply(REPLY.notAllowed, hash)).catch(() => {});
      return this.#close(side);
    }
    if (!pair) {
      pair = { hash, sides: [], lastActivity: Date.now(), bytes: 0, held: 0, closed: false };
      this.pairs.set(hash, pair);
    }
    pair.sides.push(side);
    side.pair = pair;
    // The handshake is done: from now on the connection waits for its partner and activation.
    clearTimeout(side.timer);
    side.timer = setTimeout(() => this.#abandon(side), this.config.pair_timeout * 1000);
    side.head = rest.length ? Promise.resolve(rest) : this.#watch(side, pair);
    await writeAll(side.conn, connectReply(REPLY.succeeded, hash));
  }

  /** The first read after CONNECT; a close before activation ends the pair and frees its places. */
  async #watch(side: Side, pair: Pair): Promise<Uint8Array | null> {
    const buf = new Uint8Array(HEAD_BUFFER);
    const n = await side.conn.read(buf).catch(() => null);
    if (n === null && !pair.owner) this.#drop(pair);
    return n === null ? null : buf.subarray(0, n);
  }

  /** Closes a connection that is not part of an active stream, and its pair if it has one. */
  #abandon(side: Side): void {
    if (side.pair) this.#drop(side.pair);
    else this.#close(side);
  }

  #close(side: Side): void {
    this.#release(side);
    if (side.closed) return;
    side.closed = true;
    this.descriptors.release();
    safeClose(side.conn);
  }

  /** The connection no longer waits: its stream is active, or it is gone. */
  #release(side: Side): void {
    if (!this.waiting.delete(side)) return;
    clearTimeout(side.timer);
    const left = this.#waitingPerIp.get(side.ip)! - 1;
    if (left) this.#waitingPerIp.set(side.ip, left);
    else this.#waitingPerIp.delete(side.ip);
  }

  #drop(pair: Pair): void {
    if (pair.closed) return;
    pair.closed = true;
    if (this.pairs.get(pair.hash) === pair) this.pairs.delete(pair.hash);
    for (const s of pair.sides) this.#close(s);
    pair.remote?.close();
    if (pair.owner) {
      this.#active--;
      log.debug("stream {hash} closed after {bytes} bytes", { hash: pair.hash, bytes: pair.bytes });
    }
  }

  /** Starts relaying the stream `hash` for `owner` (the requester's bare JID), within limits. */
  activate(hash: string, owner: string): Activation {
    const pair = this.pairs.get(hash);
    if (!pair || pair.sides.length < 2) return "no-pair";
    if (pair.owner) return "already-active";
    if (this.#active >= this.config.max_streams) return "full";
    let mine = 0;
    for (const p of this.pairs.values()) if (p.owner === owner) mine++;
    if (mine >= this.config.max_streams_per_user) return "user-limit";
    this.start(hash, owner);
    return "ok";
  }

  /** Closes the connections held here for `hash` while it waits: it was paired elsewhere. */
  dropWaiting(hash: string): void {
    const pair = this.pairs.get(hash);
    if (pair && !pair.owner) this.#drop(pair);
  }

  /** The connections held here for `hash`. */
  held(hash: string): Held {
    const pair = this.pairs.get(hash);
    return { count: pair?.sides.length ?? 0, active: !!pair?.owner };
  }

  /**
   * Starts the stream of the two connections held here for `hash`, the limits being checked by
   * the caller; resolves when it ends, or is undefined when there is no such pair.
   */
  start(hash: string, owner: string): Promise<void> | undefined {
    const pair = this.pairs.get(hash);
    if (!pair || pair.sides.length !== 2 || pair.owner) return undefined;
    const [a, b] = pair.sides;
    return this.#run(pair, owner, [
      this.#copy(pair, a.head!, a.conn, (chunk) => writeAll(b.conn, chunk)),
      this.#copy(pair, b.head!, b.conn, (chunk) => writeAll(a.conn, chunk)),
    ]);
  }

  /**
   * Starts the stream of the one connection held here for `hash` with `remote`, the end of a
   * link to the node that holds the other one; resolves when it ends, or is undefined when there
   * is no such connection (the remote end is then left to the caller).
   */
  bridge(hash: string, owner: string, remote: RemoteEnd): Promise<void> | undefined {
    const pair = this.pairs.get(hash);
    if (!pair || pair.sides.length !== 1 || pair.owner) return undefined;
    const [a] = pair.sides;
    pair.remote = remote;
    return this.#run(pair, owner, [
      this.#copy(pair, a.head!, a.conn, (chunk) => remote.write(chunk)),
      this.#copy(pair, Promise.resolve(NO_DATA), remote, (chunk) => writeAll(a.conn, chunk)),
    ]);
  }

  #run(pair: Pair, owner: string, directions: Promise<void>[]): Promise<void> {
    pair.owner = owner;
    this.#active++;
    pair.lastActivity = Date.now();
    for (const s of pair.sides) this.#release(s);
    // When either direction ends, the stream ends (XEP-0065: until either side closes).
    return Promise.race(directions).finally(() => this.#drop(pair));
  }

  #copy(
    pair: Pair,
    first: Promise<Uint8Array | null>,
    from: { read(buf: Uint8Array): Promise<number | null> },
    write: (chunk: Uint8Array) => Promise<void>,
  ): Promise<void> {
    const { buffer: cap, bandwidth } = this.config;
    return pump(first, from, write, { cap, bandwidth, stats: pair });
  }

  #sweep(now: number): void {
    for (const p of this.pairs.values()) {
      if (p.owner && now - p.lastActivity > this.config.idle_timeout * 1000) {
        log.info("proxy65 stream {hash} timed out", { hash: p.hash });
        this.#drop(p);
      }
    }
  }
}

function safeClose(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
