// Client listeners: plain TCP with STARTTLS (port 5222) or direct TLS (XEP-0368, port 5223).
// Connections per IP address are capped; every live session is known for idle checks and shutdown.
import net from "node:net";
import tls from "node:tls";
import type { ListenerConfig } from "../config/schema.ts";
import { type C2SDeps, C2SSession } from "./session.ts";
import { logger } from "../log/logger.ts";

const log = logger("c2s");

export class C2SListener {
  readonly sessions = new Set<C2SSession>();
  #perIp = new Map<string, number>();
  #server: net.Server;

  constructor(readonly config: ListenerConfig, readonly deps: Omit<C2SDeps, "listener">) {
    const onSocket = (socket: net.Socket) => this.#accept(socket);
    this.#server = config.type === "c2s_tls"
      ? tls.createServer({
        SNICallback: deps.tls.sni,
        secureContext: deps.tls.default,
        minVersion: "TLSv1.2",
      }, onSocket)
      : net.createServer(onSocket);
    this.#server.on("error", (e) => log.error("listener error: {error}", { error: e.message }));
    if (config.type === "c2s_tls") {
      this.#server.on(
        "tlsClientError",
        (e: Error) => log.debug("TLS handshake failed: {error}", { error: e.message }),
      );
    }
  }

  listen(): Promise<{ address: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.config.port, this.config.bind, () => {
        this.#server.off("error", reject);
        const a = this.#server.address() as net.AddressInfo;
        log.info("listening for {type} on {address}:{port}", {
          type: this.config.type,
          address: a.address,
          port: a.port,
        });
        resolve({ address: a.address, port: a.port });
      });
    });
  }

  #accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    const ip = socket.remoteAddress ?? "?";
    const n = (this.#perIp.get(ip) ?? 0) + 1;
    this.#perIp.set(ip, n);
    const session = new C2SSession(socket, this.config.type === "c2s_tls", {
      ...this.deps,
      listener: this.config,
    });
    this.sessions.add(session);
    session.whenClosed.then(() => {
      this.sessions.delete(session);
      const left = (this.#perIp.get(ip) ?? 1) - 1;
      if (left) this.#perIp.set(ip, left);
      else this.#perIp.delete(ip);
    });
    if (n > this.deps.ctx.config.limits.connections_per_ip) {
      session.error("policy-violation", "too many connections from your address");
    }
  }

  /** Stops accepting; open sessions are left to the caller. */
  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
