// One TLS connection to a peer node: framing, write batching with a bound, the hello exchange
// and the heartbeat. Which connection becomes a pair's link, and when a peer is dead, is the
// mesh's decision (mesh.ts).
import type tls from "node:tls";
import {
  ACCEPT,
  FIRST_APP_TYPE,
  FrameReader,
  FrameWriter,
  HELLO,
  PING,
  PONG,
  readFloat,
} from "./frames.ts";
import { handshakeFailure } from "./tls.ts";
import { logger } from "../log/logger.ts";

const log = logger("cluster");

/** What each side says first. The hello stays JSON with these keys in every protocol version. */
export interface Hello {
  version: number;
  node: string;
  /** Start time in ms × 2048 + 11 random bits: a restarted node has a new, larger one. */
  incarnation: number;
}

export interface LinkOwner {
  hello(link: Link, hello: Hello): void;
  accepted(link: Link): void;
  /** An application frame on a link that is up; `payload` is only valid during the call. */
  message(link: Link, type: number, payload: Uint8Array): void;
  closed(link: Link, reason: string): void;
  /** This node's event loop runs at `now` (performance.now()): see Mesh.awake. */
  awake(now: number): void;
}

export interface LinkLimits {
  maxFrame: number;
  /** Bytes queued for a peer that does not read, beyond which the link is closed. */
  maxQueued: number;
  /** Silence after which the peer declares this node dead (the mesh's `deadAfterMs`). */
  deadAfterMs: number;
}

const decoder = new TextDecoder();

export class Link {
  state: "handshake" | "up" | "closed" = "handshake";
  /** Negotiated protocol version and the peer's incarnation, once its hello arrived. */
  version = 0;
  /** The version the peer's hello announced (it may speak newer frames than `version`). */
  peerVersion = 0;
  incarnation = 0;
  /** Closed by this node for invalid input. */
  refused = false;
  /** Last heartbeat round trip in ms. */
  rtt = NaN;
  readonly opened = performance.now();
  /** Set by every received chunk; the mesh's timer turns it into `lastHeard`. */
  heard = true;
  lastHeard = performance.now();
  lastPing = 0;
  /** Bytes written to and read from the connection (after framing, before TLS). */
  bytesOut = 0;
  bytesIn = 0;
  #closeReason = "";
  #writer: FrameWriter;
  #reader: FrameReader;
  #flushQueued = false;
  #gotHello = false;
  #lastData = performance.now();

  constructor(
    readonly socket: tls.TLSSocket,
    /** The node dialled, or the one the accepted connection's certificate names. */
    readonly peer: string,
    /** Whether this node dialled the connection. */
    readonly dialed: boolean,
    readonly owner: LinkOwner,
    readonly limits: LinkLimits,
  ) {
    this.#writer = new FrameWriter(limits.maxFrame);
    this.#reader = new FrameReader(limits.maxFrame, this.#onFrame);
    socket.setNoDelay(true);
    socket.on("data", (chunk: Uint8Array) => {
      // Heartbeats keep a link from being silent this long, unless one side was stalled
      // (stopped, swapped out) past the other's patience: the peer has declared this node dead,
      // or this node it, and what each had sent was handled as undelivered. What is still
      // buffered must not be handled a second time.
      const now = performance.now();
      const silent = now - this.#lastData;
      this.#lastData = now;
      owner.awake(now);
      if (this.state === "up" && silent > limits.deadAfterMs) {
        return this.close(`silent for ${Math.round(silent)} ms: declared dead`);
      }
      this.heard = true;
      this.bytesIn += chunk.length;
      const malformed = this.#reader.push(chunk);
      if (malformed) this.close(`malformed input: ${malformed}`);
    });
    socket.on("error", (e: Error) => {
      this.#closeReason ||= this.state === "handshake" ? handshakeFailure(e, socket) : e.message;
    });
    socket.on("close", () => this.#gone(this.#closeReason || "connection closed"));
  }

  /** Queues a frame; false when the link is closed. */
  send(type: number, payload: Uint8Array | string): boolean {
    if (this.state === "closed") return false;
    try {
      this.#writer.frame(type, payload);
    } catch (e) {
      // Over the largest frame: the frame is not sent (the caller handles it as undeliverable).
      log.error("a frame of type {type} for {peer} was not sent: {error}", {
        type,
        peer: this.peer,
        error: (e as Error).message,
      });
      return false;
    }
    this.#schedule();
    return true;
  }

  ping(now: number): void {
    this.lastPing = now;
    this.#writer.float(PING, now);
    this.#schedule();
  }

  /** Bytes waiting to be written to the peer. */
  get queuedBytes(): number {
    return this.#writer.length + this.socket.writableLength;
  }

  /** Closes the connection at once; `reason` reaches the owner. */
  close(reason: string): void {
    if (this.state === "closed") return;
    this.#closeReason ||= reason;
    this.socket.destroy();
    this.#gone(this.#closeReason);
  }

  #gone(reason: string): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.owner.closed(this, reason);
  }

  #schedule(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(this.#flush);
  }

  #flush = (): void => {
    this.#flushQueued = false;
    if (this.state === "closed" || this.#writer.length === 0) return;
    const out = this.#writer.take();
    this.bytesOut += out.length;
    this.socket.write(out);
    const queued = this.socket.writableLength;
    if (queued > this.limits.maxQueued) {
      this.close(
        `the peer does not read: ${queued} bytes queued (at most ${this.limits.maxQueued})`,
      );
    }
  };

  #onFrame = (type: number, payload: Uint8Array): boolean => {
    if (type >= FIRST_APP_TYPE && this.state === "up") {
      this.owner.message(this, type, payload);
    } else if (type === PING && this.#gotHello) {
      this.send(PONG, payload);
    } else if (type === PONG) {
      this.rtt = performance.now() - readFloat(payload);
    } else if (type === HELLO && !this.#gotHello) {
      this.#gotHello = true;
      const hello = parseHello(payload);
      if (hello) this.owner.hello(this, hello);
      else this.close("malformed input: an unreadable hello");
    } else if (type === ACCEPT && this.state === "handshake" && this.#gotHello) {
      this.owner.accepted(this);
    } else {
      this.close(`malformed input: an unexpected frame of type ${type} (${this.state})`);
    }
    return this.state !== "closed";
  };
}

function parseHello(payload: Uint8Array): Hello | undefined {
  try {
    const h = JSON.parse(decoder.decode(payload));
    return Number.isInteger(h?.version) && typeof h.node === "string" &&
        Number.isSafeInteger(h.incarnation)
      ? { version: h.version, node: h.node, incarnation: h.incarnation }
      : undefined;
  } catch {
    return undefined;
  }
}
