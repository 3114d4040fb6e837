// https and wss with SNI (`tls: true` on an http listener). Deno.serve takes one certificate, so
// TLS ends here as on the XMPP ports: each connection is admitted at accept time, its ClientHello
// read for the name it asks for, and TLS done with that host's certificate (tls_accept.ts). The
// decrypted connection is relayed over loopback to the listener's own Deno.serve, which learns
// the client's address from the relay connection's local port (`clientOf`).
import net from "node:net";
import type tls from "node:tls";
import { acceptTls } from "../stream/tls_accept.ts";
import type { DescriptorBudget } from "../stream/descriptor_budget.ts";
import { logger } from "../log/logger.ts";

const log = logger("http");

export interface TlsFrontOptions {
  bind: string;
  port: number;
  /** The context for the server name a client asks for (or none). */
  context: (serverName: string | undefined) => tls.SecureContext;
  handshakeMs: number;
  descriptors: DescriptorBudget;
}

export class TlsFront {
  #server: net.Server;
  /** The clients of live relays, by the relay connection's local port. */
  #clients = new Map<number, { hostname: string; port: number }>();
  #sockets = new Set<net.Socket>();
  #backend = 0;

  constructor(readonly options: TlsFrontOptions) {
    this.#server = net.createServer((socket) => this.#accept(socket));
    this.#server.on(
      "error",
      (e) => log.error("https listener error: {error}", { error: e.message }),
    );
  }

  /** Listens; `backend` is the port of the plain Deno.serve on 127.0.0.1 behind it. */
  listen(backend: number): Promise<{ address: string; port: number }> {
    this.#backend = backend;
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen({ port: this.options.port, host: this.options.bind }, () => {
        this.#server.off("error", reject);
        const a = this.#server.address() as net.AddressInfo;
        resolve({ address: a.address, port: a.port });
      });
    });
  }

  /** The client behind a relay connection arriving from `port` on loopback. */
  clientOf(port: number): { hostname: string; port: number } | undefined {
    return this.#clients.get(port);
  }

  #accept(socket: net.Socket): void {
    if (!this.options.descriptors.admit()) return void socket.destroy();
    const client = { hostname: socket.remoteAddress ?? "?", port: socket.remotePort ?? 0 };
    this.#sockets.add(socket);
    socket.once("close", () => {
      this.#sockets.delete(socket);
      this.options.descriptors.release();
    });
    const { context, handshakeMs } = this.options;
    acceptTls(socket, context, handshakeMs, (secure) => {
      secure.on("error", () => secure.destroy());
      secure.once("secure", () => this.#relay(secure, client));
      secure.once("close", () => socket.destroy());
    });
  }

  #relay(secure: tls.TLSSocket, client: { hostname: string; port: number }): void {
    const inner = net.connect({ host: "127.0.0.1", port: this.#backend });
    let local: number | undefined;
    inner.once("connect", () => {
      local = inner.localPort!;
      this.#clients.set(local, client);
      secure.pipe(inner);
      inner.pipe(secure);
    });
    const end = () => {
      if (local !== undefined) this.#clients.delete(local);
      inner.destroy();
      secure.destroy();
    };
    inner.on("error", end);
    inner.once("close", end);
    secure.once("close", end);
  }

  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    return closed;
  }
}
