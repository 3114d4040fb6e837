// The proxy's SOCKS5 side: connections are paired by hash (the first two with one hash; a third is
// refused), wait for activation, then bytes flow both ways until either side closes.
//
// Backpressure: a side is read only while the other side's socket accepts writes. Per stream and
// direction the proxy holds at most one read chunk (≤ 64 KiB) plus the socket's write buffer
// (16 KiB high-water mark): about 160 KiB per stream in both directions, whatever the reader's pace.
import net from "node:net";
import { connectReply, REPLY, Socks5Handshake } from "./socks5.ts";
import type { Proxy65Config } from "../config/schema.ts";
import { logger } from "../log/logger.ts";

const log = logger("proxy65");

interface Pair {
  hash: string;
  sockets: net.Socket[];
  createdAt: number;
  /** Set at activation: the requester's bare JID, for the per-user limit. */
  owner?: string;
  lastActivity: number;
  bytes: number;
}

export type Activation = "ok" | "no-pair" | "already-active" | "user-limit";

export class Socks5Relay {
  readonly pairs = new Map<string, Pair>();
  #server: net.Server;
  #sweeper: ReturnType<typeof setInterval>;

  constructor(readonly config: Proxy65Config) {
    this.#server = net.createServer((s) => this.#accept(s));
    this.#server.on(
      "error",
      (e) => log.error("proxy65 listener error: {error}", { error: e.message }),
    );
    this.#sweeper = setInterval(() => this.#sweep(Date.now()), 1000);
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.config.port, this.config.bind, () => {
        const port = (this.#server.address() as net.AddressInfo).port;
        log.info("proxy65 listening on {bind}:{port}", { bind: this.config.bind, port });
        resolve(port);
      });
    });
  }

  close(): Promise<void> {
    clearInterval(this.#sweeper);
    for (const p of this.pairs.values()) for (const s of p.sockets) s.destroy();
    this.pairs.clear();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.on("error", () => {});
    const hs = new Socks5Handshake();
    const timer = setTimeout(() => socket.destroy(), this.config.pair_timeout * 1000);
    const onData = (chunk: Uint8Array) => {
      let step = hs.push(chunk);
      while (step.kind === "reply") {
        socket.write(step.bytes);
        if (step.close) {
          clearTimeout(timer);
          socket.end();
          return;
        }
        step = hs.pending();
      }
      if (step.kind === "connect") {
        clearTimeout(timer);
        socket.off("data", onData);
        this.#pairUp(socket, step.hash);
      }
    };
    socket.on("data", onData);
    socket.once("close", () => clearTimeout(timer));
  }

  #pairUp(socket: net.Socket, hash: string): void {
    let pair = this.pairs.get(hash);
    if (pair && pair.sockets.length >= 2) {
      socket.end(connectReply(REPLY.notAllowed, hash)); // a third connection with this hash
      return;
    }
    if (!pair && this.pairs.size >= this.config.max_streams) {
      socket.end(connectReply(REPLY.notAllowed, hash));
      return;
    }
    if (!pair) {
      pair = { hash, sockets: [], createdAt: Date.now(), lastActivity: Date.now(), bytes: 0 };
      this.pairs.set(hash, pair);
    }
    pair.sockets.push(socket);
    socket.pause(); // nothing flows before activation
    socket.write(connectReply(REPLY.succeeded, hash));
    const p = pair;
    socket.once("close", () => this.#drop(p));
  }

  #drop(pair: Pair): void {
    if (this.pairs.get(pair.hash) !== pair) return;
    this.pairs.delete(pair.hash);
    for (const s of pair.sockets) s.end();
    if (pair.owner) {
      log.debug("stream {hash} closed after {bytes} bytes", { hash: pair.hash, bytes: pair.bytes });
    }
  }

  /** Starts relaying the stream `hash` for `owner` (the requester's bare JID). */
  activate(hash: string, owner: string): Activation {
    const pair = this.pairs.get(hash);
    if (!pair || pair.sockets.length < 2) return "no-pair";
    if (pair.owner) return "already-active";
    let mine = 0;
    for (const p of this.pairs.values()) if (p.owner === owner) mine++;
    if (mine >= this.config.max_streams_per_user) return "user-limit";
    pair.owner = owner;
    pair.lastActivity = Date.now();
    const [a, b] = pair.sockets;
    this.#pipe(pair, a, b);
    this.#pipe(pair, b, a);
    return "ok";
  }

  /** Copies from → to, reading only while `to` keeps up and within the bandwidth limit. */
  #pipe(pair: Pair, from: net.Socket, to: net.Socket): void {
    const rate = this.config.bandwidth;
    let tokens = rate;
    let refilled = Date.now();
    let blocked = 0; // reasons `from` is paused: waiting for drain, waiting for tokens
    const resume = () => --blocked === 0 && from.resume();
    from.on("data", (chunk: Uint8Array) => {
      pair.lastActivity = Date.now();
      pair.bytes += chunk.length;
      if (!to.write(chunk)) {
        blocked++;
        from.pause();
        to.once("drain", resume);
      }
      if (rate > 0) {
        const now = Date.now();
        tokens = Math.min(rate, tokens + (now - refilled) * rate / 1000) - chunk.length;
        refilled = now;
        if (tokens < 0) {
          blocked++;
          from.pause();
          setTimeout(resume, Math.ceil(-tokens * 1000 / rate));
        }
      }
    });
    from.once("end", () => to.end());
    from.resume();
  }

  #sweep(now: number): void {
    for (const p of this.pairs.values()) {
      const limit = p.owner ? this.config.idle_timeout : this.config.pair_timeout;
      const since = p.owner ? p.lastActivity : p.createdAt;
      if (now - since > limit * 1000) {
        log.info("proxy65 stream {hash} timed out", { hash: p.hash });
        for (const s of p.sockets) s.destroy();
        this.#drop(p);
      }
    }
  }
}
