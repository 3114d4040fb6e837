// A TCP or TLS listener for XML streams (clients now, components too). It caps connections per
// IP address and keeps every live stream for idle checks and shutdown.
import net from "node:net";
import tls from "node:tls";
import type { XmlStream } from "./xml_stream.ts";
import { logger } from "../log/logger.ts";

const log = logger("listener");

export interface ListenerOptions {
  name: string;
  bind: string;
  port: number;
  /** Direct TLS: the handshake happens before the XML stream starts. */
  tls?: tls.TlsOptions;
  connectionsPerIp: number;
}

export class StreamListener<S extends XmlStream> {
  readonly streams = new Set<S>();
  #perIp = new Map<string, number>();
  #server: net.Server;

  constructor(
    readonly options: ListenerOptions,
    readonly open: (socket: net.Socket, secure: boolean) => S,
  ) {
    const onSocket = (socket: net.Socket) => this.#accept(socket);
    this.#server = options.tls
      ? tls.createServer(options.tls, onSocket)
      : net.createServer(onSocket);
    this.#server.on("error", (e) => log.error("listener error: {error}", { error: e.message }));
    this.#server.on("tlsClientError", (e: Error) => {
      log.debug("TLS handshake failed: {error}", { error: e.message });
    });
  }

  listen(): Promise<{ address: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.options.port, this.options.bind, () => {
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
    socket.setNoDelay(true);
    const ip = socket.remoteAddress ?? "?";
    const n = (this.#perIp.get(ip) ?? 0) + 1;
    this.#perIp.set(ip, n);
    const stream = this.open(socket, this.options.tls !== undefined);
    this.streams.add(stream);
    stream.whenClosed.then(() => {
      this.streams.delete(stream);
      const left = (this.#perIp.get(ip) ?? 1) - 1;
      if (left) this.#perIp.set(ip, left);
      else this.#perIp.delete(ip);
    });
    if (n > this.options.connectionsPerIp) {
      stream.error("policy-violation", "too many connections from your address");
    }
  }

  /** Stops accepting; resolves once every stream of this listener is gone. */
  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
