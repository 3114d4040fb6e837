// What an XML stream runs over: a TCP or TLS socket (socket_transport.ts), a WebSocket (RFC 7395),
// a BOSH session (XEP-0206). The stream (xml_stream.ts) parses what arrives and queues what goes
// out; the transport frames it: its own stream header and close, one write per batch or one
// message per element, and its own way of pushing back on a peer that sends too fast or reads
// too slowly.
import type tls from "node:tls";
import type { StreamErrorCondition } from "./stream_error.ts";

export interface TransportEvents {
  /**
   * The stream as the parser reads it: bytes off a socket, or text (a WebSocket message, a BOSH
   * body), with a header and a close made by the framing.
   */
  data(chunk: Uint8Array | string): void;
  /** The peer reads again after `write` returned false. */
  drain(): void;
  /** The connection is gone, whatever the cause. */
  close(): void;
  /** The peer broke the transport's framing: the stream ends with this error. */
  refuse(condition: StreamErrorCondition, text: string): void;
}

/** What a transport is, as /metrics counts sessions (parley_sessions{transport}). */
export type TransportKind = "tcp" | "websocket" | "bosh";

export interface Transport {
  readonly kind: TransportKind;
  /** The peer's address as "ip:port" (from a trusted proxy: the address it forwarded for). */
  readonly remote: string;
  readonly destroyed: boolean;
  /** Bytes written and not yet taken by the peer. */
  readonly queuedBytes: number;
  /** The server's stream header with its attributes' text (` name='value'`…), as framed here. */
  header(contentNs: string, attrs: string): string;
  /** The server's end of the stream, as framed here. */
  readonly closing: string;
  attach(events: TransportEvents): void;
  /**
   * Writes a batch of top-level elements (or header, close), taking them before it returns (the
   * caller reuses the array); false when the peer reads slowly.
   */
  write(items: string[]): boolean;
  /** Stops handing over input (rate limiting) until resume. */
  pause(): void;
  resume(): void;
  /** Ends the connection once what was written has gone out. */
  end(): void;
  destroy(): void;
  /** Upgrades the connection to TLS in place (STARTTLS); only a TCP socket can. */
  startTls?(context: tls.SecureContext, handshakeMs?: number): void;
}
