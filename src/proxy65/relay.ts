// The proxy's SOCKS5 side, on Deno's native sockets (no TLS here, and far less per-chunk work
// than node:net streams): connections are paired by hash (the first two with one hash; a third
// is refused), wait for activation, then bytes flow both ways until either side closes.
//
// Backpressure and memory: each direction copies through two reusable buffers and reads into one
// only once its previous chunk has been written. Buffers start at 64 KiB and double while reads
// fill them, up to the configured `buffer`: a stream therefore holds at most 4 × `buffer` (4 MiB by
// default) in the proxy, however slowly either side reads; a slow stream keeps small buffers.
import { connectReply, REPLY, Socks5Handshake } from "./socks5.ts";
import type { Proxy65Config } from "../config/schema.ts";
import { logger } from "../log/logger.ts";
import { writeAll } from "../stream/write_all.ts";

const log = logger("proxy65");
const INITIAL_BUFFER = 64 * 1024;

interface Pair {
  hash: string;
  conns: Deno.TcpConn[];
  createdAt: number;
  /** Set at activation: the requester's bare JID, for the per-user limit. */
  owner?: string;
  lastActivity: number;
  bytes: number;
  /** Bytes of copy buffers the stream holds (both directions): at most 4 × `buffer`. */
  held: number;
  closed: boolean;
}

export type Activation = "ok" | "no-pair" | "already-active" | "user-limit";

export class Socks5Relay {
  readonly pairs = new Map<string, Pair>();
  #listener: Deno.TcpListener | undefined;
  #pending = new Set<Deno.TcpConn>();
  #sweeper: ReturnType<typeof setInterval>;

  constructor(readonly config: Proxy65Config) {
    this.#sweeper = setInterval(() => this.#sweep(Date.now()), 1000);
  }

  listen(): Promise<number> {
    this.#listener = Deno.listen({ hostname: this.config.bind, port: this.config.port });
    const port = this.#listener.addr.port;
    log.info("proxy65 listening on {bind}:{port}", { bind: this.config.bind, port });
    this.#accepting(this.#listener);
    return Promise.resolve(port);
  }

  async #accepting(listener: Deno.TcpListener): Promise<void> {
    try {
      for await (const conn of listener) void this.#handshake(conn);
    } catch (e) {
      if (!(e instanceof Deno.errors.BadResource)) {
        log.error("proxy65 accept failed: {error}", { error: String(e) });
      }
    }
  }

  close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#listener?.close();
    for (const c of this.#pending) safeClose(c);
    for (const p of this.pairs.values()) this.#drop(p);
    return Promise.resolve();
  }

  async #handshake(conn: Deno.TcpConn): Promise<void> {
    conn.setNoDelay(true);
    this.#pending.add(conn);
    const timer = setTimeout(() => safeClose(conn), this.config.pair_timeout * 1000);
    const hs = new Socks5Handshake();
    const buf = new Uint8Array(512);
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) return safeClose(conn);
        let step = hs.push(buf.subarray(0, n));
        while (step.kind === "reply") {
          if (step.bytes.length) await writeAll(conn, step.bytes);
          if (step.close) return safeClose(conn);
          step = hs.pending();
        }
        if (step.kind === "connect") return this.#pairUp(conn, step.hash);
      }
    } catch {
      safeClose(conn);
    } finally {
      clearTimeout(timer);
      this.#pending.delete(conn);
    }
  }

  async #pairUp(conn: Deno.TcpConn, hash: string): Promise<void> {
    let pair = this.pairs.get(hash);
    if ((pair && pair.conns.length >= 2) || (!pair && this.pairs.size >= this.config.max_streams)) {
      // A third connection with this hash, or too many streams.
      await writeAll(conn, connectReply(REPLY.notAllowed, hash)).catch(() => {});
      return safeClose(conn);
    }
    if (!pair) {
      pair = {
        hash,
        conns: [],
        createdAt: Date.now(),
        lastActivity: Date.now(),
        bytes: 0,
        held: 0,
        closed: false,
      };
      this.pairs.set(hash, pair);
    }
    pair.conns.push(conn);
    await writeAll(conn, connectReply(REPLY.succeeded, hash)).catch(() => this.#drop(pair));
  }

  #drop(pair: Pair): void {
    if (pair.closed) return;
    pair.closed = true;
    if (this.pairs.get(pair.hash) === pair) this.pairs.delete(pair.hash);
    for (const c of pair.conns) safeClose(c);
    if (pair.owner) {
      log.debug("stream {hash} closed after {bytes} bytes", { hash: pair.hash, bytes: pair.bytes });
    }
  }

  /** Starts relaying the stream `hash` for `owner` (the requester's bare JID). */
  activate(hash: string, owner: string): Activation {
    const pair = this.pairs.get(hash);
    if (!pair || pair.conns.length < 2) return "no-pair";
    if (pair.owner) return "already-active";
    let mine = 0;
    for (const p of this.pairs.values()) if (p.owner === owner) mine++;
    if (mine >= this.config.max_streams_per_user) return "user-limit";
    pair.owner = owner;
    pair.lastActivity = Date.now();
    const [a, b] = pair.conns;
    // When either direction ends, the stream ends (XEP-0065: until either side closes).
    Promise.race([this.#copy(pair, a, b), this.#copy(pair, b, a)]).finally(() => this.#drop(pair));
    return "ok";
  }

  /**
   * Copies one direction with two buffers: the next read fills one while the previous chunk is
   * still being written from the other, so the proxy keeps both sockets busy. A read waits for a
   * free buffer, which is the backpressure: at most 2 × `buffer` per direction.
   */
  async #copy(pair: Pair, from: Deno.TcpConn, to: Deno.TcpConn): Promise<void> {
    const cap = this.config.buffer;
    let size = Math.min(INITIAL_BUFFER, cap);
    const bufs = [new Uint8Array(size), new Uint8Array(size)];
    pair.held += 2 * size;
    const rate = this.config.bandwidth;
    let tokens = rate;
    let refilled = Date.now();
    // Resolves false when the write failed (the other side went away).
    let writing = Promise.resolve(true);
    try {
      for (let i = 0;; i ^= 1) {
        // This buffer's last chunk has been written (awaited below), so it may be replaced.
        if (bufs[i].length < size) {
          pair.held += size - bufs[i].length;
          bufs[i] = new Uint8Array(size);
        }
        const n = await from.read(bufs[i]);
        if (n === null) {
          await writing;
          return;
        }
        pair.lastActivity = Date.now();
        pair.bytes += n;
        // A read that fills the buffer means the sender is ahead of us: grow, up to the cap.
        if (n === bufs[i].length && size < cap) size = Math.min(cap, size * 2);
        if (!(await writing)) return;
        writing = writeAll(to, bufs[i].subarray(0, n)).then(() => true, () => false);
        if (rate > 0) {
          const now = Date.now();
          tokens = Math.min(rate, tokens + (now - refilled) * rate / 1000) - n;
          refilled = now;
          if (tokens < 0) await new Promise((r) => setTimeout(r, Math.ceil(-tokens * 1000 / rate)));
        }
      }
    } catch {
      // A side went away: the stream ends.
    }
  }

  #sweep(now: number): void {
    for (const p of this.pairs.values()) {
      const limit = p.owner ? this.config.idle_timeout : this.config.pair_timeout;
      const since = p.owner ? p.lastActivity : p.createdAt;
      if (now - since > limit * 1000) {
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
