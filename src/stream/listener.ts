// A TCP listener for XML streams (clients, components), with direct TLS where configured. Every
// connection is admitted at accept time, before any TLS work: refused near the descriptor limit
// or beyond the cap per IP address, and given a deadline for its TLS handshake. Live streams are
// kept for idle checks and shutdown.
import net from "node:net";
import type tls from "node:tls";
import type { XmlStream } from "./xml_stream.ts";
import { SocketTransport } from "./socket_transport.ts";
import type { DescriptorBudget } from "./descriptor_budget.ts";
import { acceptTls } from "./tls_accept.ts";
import { AddressCaps } from "./address_caps.ts";
import { listenOn, rearm } from "./tcp_server.ts";
import { logger } from "../log/logger.ts";

const log = logger("listener");

export interface ListenerOptions {
  name: string;
  bind: string;
  port: number;
  /** Direct TLS: the handshake, with the certificate for the name the client asks for, comes first. */
  tls?: (serverName: string | undefined) => tls.SecureContext;
  connectionsPerIp: number;
  /** Milliseconds a direct-TLS connection has to complete its handshake. */
  tlsHandshakeMs: number;
  descriptors: DescriptorBudget;
}

/** What the server keeps of any listener (TCP here, HTTP in src/http/): streams, sweep, close. */
export interface Listener {
  readonly streams: Set<XmlStream>;
  listen(): Promise<{ address: string; port: number }>;
  /** Called every second: idle checks. */
  sweep(now: number): void;
  /** Stops accepting; resolves once the listener is closed. */
  close(): Promise<void>;
}

export class StreamListener<S extends XmlStream> implements Listener {
  readonly streams = new Set<S>();
  /** Direct-TLS connections still waiting for their ClientHello. */
  #hello = new Set<net.Socket>();
  #caps: AddressCaps;
  #server: net.Server;

  constructor(
    readonly options: ListenerOptions,
    readonly open: (transport: SocketTransport, secure: boolean) => S,
  ) {
    this.#caps = new AddressCaps(options.connectionsPerIp);
    // Direct TLS wraps the accepted socket here rather than using tls.Server, so that admission
    // comes before any TLS work.
    this.#server = net.createServer((socket) => this.#accept(socket));
    this.#server.on("error", (e) => log.error("listener error: {error}", { error: e.message }));
  }

  async listen(): Promise<{ address: string; port: number }> {
    const a = await listenOn(this.#server, this.options.bind, this.options.port);
    log.info("listening for {type} on {address}:{port}", { type: this.options.name, ...a });
    return a;
  }

  #accept(socket: net.Socket): void {
    const { descriptors } = this.options;
    if (!descriptors.admit()) {
      socket.destroy();
      return;
    }
    const ip = socket.remoteAddress ?? "?";
    const counted = this.#caps.take(ip);
    const release = () => {
      counted.release();
      descriptors.release();
    };
    // A direct-TLS peer cannot be told why before a handshake, which is the work to spare.
    if (counted.over && this.options.tls) {
      release();
      log.debug("refused a connection from {ip}: over {max} from that address", {
        ip,
        max: this.#caps.max,
      });
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    if (!this.options.tls) {
      const stream = this.#open(socket, false, release);
      if (counted.over) stream.error("policy-violation", "too many connections from your address");
      return;
    }
    socket.once("close", release);
    this.#startTls(socket, this.options.tls, release);
  }

  #open(socket: net.Socket, secure: boolean, release: () => void): S {
    const stream = this.open(new SocketTransport(socket), secure);
    this.streams.add(stream);
    stream.whenClosed.then(() => {
      this.streams.delete(stream);
      release();
    });
    return stream;
  }

  /** Direct TLS (tls_accept.ts), then the stream; `#hello` holds it until its ClientHello. */
  #startTls(
    socket: net.Socket,
    context: (serverName: string | undefined) => tls.SecureContext,
    release: () => void,
  ): void {
    this.#hello.add(socket);
    socket.once("close", () => this.#hello.delete(socket));
    acceptTls(socket, context, this.options.tlsHandshakeMs, (secure) => {
      this.#hello.delete(socket);
      this.#open(secure, true, release);
    });
  }

  /** Called every second: re-arms accept (tcp_server.ts), idle checks. */
  sweep(now: number): void {
    rearm(this.#server);
    for (const s of this.streams) s.checkIdle(now);
  }

  /** Stops accepting; resolves once every stream of this listener is gone. */
  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#hello) socket.destroy();
    return closed;
  }
}
