// An XML stream over a TCP socket, or TLS over one (direct TLS, or STARTTLS in place): the bytes
// as they come, a batch of output as one write, and TCP's own backpressure (a paused socket stops
// reading; a full send buffer says so).
import type net from "node:net";
import tls from "node:tls";
import { NS } from "../xml/ns.ts";
import type { Transport, TransportEvents } from "./transport.ts";
import { tlsDeadline } from "./tls_deadline.ts";
import { logger } from "../log/logger.ts";

const log = logger("stream");

export class SocketTransport implements Transport {
  readonly kind = "tcp";
  readonly remote: string;
  readonly closing = "</stream:stream>";
  #events: TransportEvents | undefined;
  #onData = (chunk: Uint8Array) => this.#events!.data(chunk);
  #onDrain = () => this.#events!.drain();
  #onClose = () => this.#events!.close();

  constructor(public socket: net.Socket) {
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
  }

  get destroyed(): boolean {
    return this.socket.destroyed;
  }

  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  header(contentNs: string, attrs: string): string {
    return `<?xml version='1.0'?><stream:stream xmlns='${contentNs}' xmlns:stream='${NS.streams}'${attrs}>`;
  }

  attach(events: TransportEvents): void {
    this.#events = events;
    this.#listen(this.socket);
  }

  #listen(socket: net.Socket): void {
    socket.on("data", this.#onData);
    socket.on("drain", this.#onDrain);
    socket.on("close", this.#onClose);
    socket.on("error", (e: Error) => {
      log.debug("socket error from {remote}: {error}", { remote: this.remote, error: e.message });
    });
  }

  write(items: string[]): boolean {
    // Strings go to the socket as they are: encoding them here into a Buffer measured slower in
    // both throughput and tail latency (bench: one-to-one and MUC fan-out).
    return this.socket.write(items.length === 1 ? items[0] : items.join(""));
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  startTls(context: tls.SecureContext, handshakeMs?: number): void {
    const raw = this.socket;
    // Stop reading before <proceed/> goes out: a ClientHello read by the plain socket before the
    // TLS wrap owns it would be handed to us as plaintext (seen with Deno's node:tls).
    raw.pause();
    raw.off("data", this.#onData);
    raw.off("close", this.#onClose);
    raw.off("drain", this.#onDrain);
    const deadline = handshakeMs && tlsDeadline(raw, handshakeMs);
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
    if (deadline) deadline(secure);
    this.socket = secure;
    this.#listen(secure);
  }
}
