// One XML stream over a transport (a TCP or TLS socket, a WebSocket, a BOSH session): parsing in,
// batched writes out, rate limiting on input, backpressure on output, stream errors and orderly
// close. Client (c2s) and component streams build on it.
import type tls from "node:tls";
import { randomBytes } from "node:crypto";
import type { Logger } from "@logtape/logtape";
import { type StreamHandler, StreamParser } from "../xml/parser.ts";
import type { Attrs, Element } from "../xml/element.ts";
import { escapeAttr } from "../xml/escape.ts";
import { NS } from "../xml/ns.ts";
import type { Transport } from "./transport.ts";
import { TokenBucket } from "../core/token_bucket.ts";
import { type StreamErrorCondition, streamErrorXml } from "./stream_error.ts";

export interface StreamLimits {
  maxStanzaSize: number;
  maxDepth: number;
  rateBytesPerSecond: number;
  rateBurstBytes: number;
  /** Bytes queued towards a peer that does not read before the stream is dropped. */
  maxOutboundBuffer: number;
  /** Milliseconds the TLS handshake after STARTTLS may take (unbounded when absent). */
  tlsHandshakeMs?: number;
}

const CLOSE_GRACE_MS = 2000;

/** Input as a transport hands it over: bytes off a socket, or text a framing already decoded. */
type Input = Uint8Array | string;

export abstract class XmlStream implements StreamHandler {
  readonly id = randomBytes(9).toString("base64url");
  readonly remote: string;
  secure: boolean;
  closed = false;
  /** Milliseconds timestamp of the last byte received (idle and ping checks). */
  lastActivity = Date.now();
  protected parser: StreamParser;
  protected headerSent = false;
  #out: string[] = [];
  #flushQueued = false;
  #input: TokenBucket;
  #rateWait: ReturnType<typeof setTimeout> | undefined;
  #waitingDrain = false;
  /** Input held back by holdInput. */
  #inputHeld = false;
  #held: Input[] = [];
  #pingSentAt = 0;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #gone_ = false;
  #closedResolve!: () => void;
  /** Settles once the connection is gone, whatever the cause. */
  readonly whenClosed = new Promise<void>((r) => this.#closedResolve = r);

  constructor(
    readonly transport: Transport,
    secure: boolean,
    protected readonly limits: StreamLimits,
    protected readonly log: Logger,
    /** The content namespace of this kind of stream (jabber:client, jabber:component:accept). */
    protected readonly contentNs: string,
  ) {
    this.secure = secure;
    this.remote = transport.remote;
    this.#input = new TokenBucket(limits.rateBytesPerSecond, limits.rateBurstBytes);
    this.parser = new StreamParser(this, limits);
    transport.attach({
      data: (chunk) => this.#receive(chunk),
      drain: () => {
        this.#waitingDrain = false;
        this.#resumeIfFree();
      },
      close: () => this.#gone(),
      refuse: (condition, text) => this.error(condition, text),
    });
  }

  abstract streamStart(attrs: Attrs, defaultNs: string | undefined): void;
  abstract stanza(el: Element): void;
  /** Called once when the connection is gone, whatever the cause. */
  protected abstract closedHook(): void;

  streamEnd(): void {
    this.close();
  }

  /** From the parser: malformed or forbidden input. */
  streamError(condition: string, text: string): void {
    this.error(condition as StreamErrorCondition, text);
  }

  #receive(chunk: Input): void {
    if (this.closed) return;
    this.lastActivity = Date.now();
    // pause() does not stop data a TLS socket has already decrypted: hold it until our turn.
    if (this.#rateWait !== undefined || this.#inputHeld) this.#held.push(chunk);
    else this.#consume(chunk);
  }

  /**
   * Feeds the parser, which hands stanzas to this stream's handling and on through the router. A
   * bug anywhere on that path ends this one stream with internal-server-error, never the server.
   */
  #parse(data: Input): void {
    try {
      if (typeof data === "string") this.parser.writeText(data);
      else this.parser.write(data);
    } catch (e) {
      this.log.error("failed handling input on {id}: {error}", {
        id: this.id,
        error: String((e as Error)?.stack ?? e),
      });
      this.error("internal-server-error");
    }
  }

  /**
   * Parses as much of `chunk` as the token bucket allows now (text counts its characters); holds
   * the rest for later.
   */
  #consume(chunk: Input): void {
    const now = Date.now();
    const allowed = this.#input.takeUpTo(chunk.length, now);
    if (allowed > 0) this.#parse(allowed === chunk.length ? chunk : part(chunk, 0, allowed));
    if (allowed === chunk.length || this.closed) return;
    // Over the rate: stop reading until the bucket refills (TCP pushes back on the sender).
    const rest = part(chunk, allowed);
    this.#held.unshift(rest);
    this.transport.pause();
    this.#rateWait = setTimeout(() => {
      this.#rateWait = undefined;
      this.#consumeHeld();
    }, this.#input.msUntil(rest.length, now));
  }

  /** Parses what was held back while nothing holds input any more, then reads on. */
  #consumeHeld(): void {
    while (
      this.#held.length && this.#rateWait === undefined && !this.#inputHeld && !this.closed
    ) {
      this.#consume(this.#held.shift()!);
    }
    this.#resumeIfFree();
  }

  #resumeIfFree(): void {
    if (!this.closed && this.#rateWait === undefined && !this.#waitingDrain && !this.#inputHeld) {
      this.transport.resume();
    }
  }

  /**
   * Stops reading the peer's input until `until` settles: what its stanzas started is not done
   * (backpressure from work behind the router, e.g. archive writes). The chunk being parsed is
   * finished; the next ones wait.
   */
  protected holdInput(until: Promise<unknown>): void {
    if (this.#inputHeld || this.closed) return;
    this.#inputHeld = true;
    this.transport.pause();
    void until.catch(() => {}).then(() => {
      this.#inputHeld = false;
      this.#consumeHeld();
    });
  }

  /** Queues data for the peer; writes are batched until the current task ends. */
  send(data: string | Element): void {
    if (this.closed) return;
    this.#out.push(typeof data === "string" ? data : data.toString());
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }

  flush(): void {
    this.#flushQueued = false;
    const out = this.#out;
    if (out.length === 0 || this.transport.destroyed) return;
    // Transports take a batch at once: the array is reused.
    const taken = this.transport.write(out);
    out.length = 0;
    if (!taken) {
      if (this.transport.queuedBytes > this.limits.maxOutboundBuffer) {
        this.log.info("dropping {id}: peer does not read", { id: this.id });
        this.transport.destroy();
        return;
      }
      // Our peer reads slowly: stop reading its requests until it catches up.
      this.#waitingDrain = true;
      this.transport.pause();
    }
  }

  sendHeader(attrs: Attrs): void {
    let s = "";
    for (const k in attrs) if (attrs[k] !== undefined) s += ` ${k}='${escapeAttr(attrs[k]!)}'`;
    this.send(this.transport.header(this.contentNs, s));
    this.headerSent = true;
  }

  /** Sends a stream error and closes the stream (RFC 6120 §4.9.1). */
  error(condition: StreamErrorCondition, text?: string, extra?: Element): void {
    if (this.closed) return;
    this.log.info("stream error {condition} on {id} from {remote}: {text}", {
      condition,
      id: this.id,
      remote: this.remote,
      text: text ?? "",
    });
    if (!this.headerSent) this.sendHeader({ id: this.id, version: "1.0" });
    this.send(streamErrorXml(condition, text, extra));
    this.close();
  }

  /** Closes our side of the stream and the connection after a short grace period. */
  close(): void {
    if (this.closed) return;
    if (!this.headerSent) this.sendHeader({ id: this.id, version: "1.0" });
    this.send(this.transport.closing);
    this.flush();
    this.closed = true;
    this.transport.end();
    this.#closeTimer = setTimeout(() => this.transport.destroy(), CLOSE_GRACE_MS);
  }

  #gone(): void {
    clearTimeout(this.#closeTimer);
    clearTimeout(this.#rateWait);
    this.closed = true;
    if (this.#gone_) return;
    this.#gone_ = true;
    this.closedHook();
    this.#closedResolve();
  }

  /** Upgrades the connection to TLS in place (STARTTLS, RFC 6120 §5.4.3.3). */
  protected startTls(context: tls.SecureContext): void {
    // Reading stops before <proceed/> goes out (socket_transport.ts says why).
    this.transport.pause();
    this.flush();
    this.transport.startTls!(context, this.limits.tlsHandshakeMs);
    this.secure = true;
    this.parser.reset();
  }

  /**
   * Keepalive (XEP-0199), called periodically: pings a peer silent for `interval` seconds and
   * closes the stream when nothing at all arrives within `timeout` seconds of the ping.
   */
  protected keepalive(
    now: number,
    interval: number,
    timeout: number,
    from: string,
    to: string,
  ): void {
    if (interval === 0) return;
    if (this.#pingSentAt > this.lastActivity) {
      if (now - this.#pingSentAt > timeout * 1000) this.error("connection-timeout");
    } else if (now - this.lastActivity > interval * 1000) {
      this.#pingSentAt = now;
      this.sendPing(
        `<iq type='get' id='ping-${now}' from='${escapeAttr(from)}' to='${
          escapeAttr(to)
        }'><ping xmlns='${NS.ping}'/></iq>`,
      );
    }
  }

  protected sendPing(xml: string): void {
    this.send(xml);
  }

  /** Called periodically by the server for idle checks. */
  abstract checkIdle(now: number): void;

  /** Starts a new stream on the same connection (after SASL success). */
  protected restartStream(): void {
    this.parser.reset();
    this.headerSent = false;
  }
}

/** A part of some input, without copying bytes. */
function part(chunk: Input, start: number, end?: number): Input {
  return typeof chunk === "string" ? chunk.slice(start, end) : chunk.subarray(start, end);
}
