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
import { logger } from "../log/logger.ts";

const log = logger("listener");
/** Pending connections the kernel queues for us (Node's default). */
const BACKLOG = 511;

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
  #perIp = new Map<string, number>();
  #server: net.Server;

  constructor(
    readonly options: ListenerOptions,
    readonly open: (transport: SocketTransport, secure: boolean) => S,
  ) {
    // Direct TLS wraps the accepted socket here rather than using tls.Server, so that admission
    // comes before any TLS work.
    this.#server = net.createServer((socket) => this.#accept(socket));
    this.#server.on("error", (e) => log.error("listener error: {error}", { error: e.message }));
  }

  listen(): Promise<{ address: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      const { port, bind: host } = this.options;
      this.#server.listen({ port, host, backlog: BACKLOG }, () => {
        this.#server.off("error", reject);
        const a = this.#server.address() as net.AddressInfo;
        log.info("listening for {type} on {address}:{port}", {
          type: this.options.name,
          address: a.address,
          port: a.port,
        });
        resolve({ address: a.address, port: a.port });
      });
    });
  }

  #accept(socket: net.Socket): void {
    const { descriptors, connectionsPerIp } = this.options;
    if (!descriptors.admit()) {
      socket.destroy();
      return;
    }
    const ip = socket.remoteAddress ?? "?";
    const n = (this.#perIp.get(ip) ?? 0) + 1;
    // A direct-TLS peer cannot be told why before a handshake, which is the work to spare.
    if (n > connectionsPerIp && this.options.tls) {
      descriptors.release();
      log.debug("refused a connection from {ip}: over {max} from that address", {
        ip,
        max: connectionsPerIp,
      });
      socket.destroy();
      return;
    }
    this.#perIp.set(ip, n);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      descriptors.release();
      const left = (this.#perIp.get(ip) ?? 1) - 1;
      if (left) this.#perIp.set(ip, left);
      else this.#perIp.delete(ip);
    };
    socket.setNoDelay(true);
    if (!this.options.tls) {
      const stream = this.#open(socket, false, release);
      if (n > connectionsPerIp) {
        stream.error("policy-violation", "too many connections from your address");
      }
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

  /**
   * Called every second. Deno's node:net stops accepting for good after a failed accept (EMFILE)
   * and reports nothing, so each listener's accept is re-armed here (listen() again on the same
   * handle: a no-op while it accepts); a failed accept thus costs at most a second of accepting.
   *
   * `_handle` is node:net's private TCP wrap, checked on Deno 2.9.6 (the version deno.json's tasks
   * pin). There is no public way: Deno.listen's accept() can be retried after EMFILE, but its
   * connections are no node:net sockets, which tls.TLSSocket (STARTTLS, and direct TLS admitted
   * before any TLS work) needs. If a Deno upgrade renames or drops it, the optional call does
   * nothing and tests/abuse/descriptors_test.ts fails: it exhausts the descriptors, closes the
   * connections, and requires a login on each client port within seconds.
   */
  sweep(now: number): void {
    (this.#server as unknown as { _handle?: { listen(backlog: number): number } })._handle
      ?.listen(BACKLOG);
    for (const s of this.streams) s.checkIdle(now);
  }

  /** Stops accepting; resolves once every stream of this listener is gone. */
  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#hello) socket.destroy();
    return closed;
  }
}
