// The HTTP listener (`type: http`, ejabberd's and Prosody's port 5280): one Deno.serve per
// configured address, each request handed to the route of its path (routes.ts). Deno.serve is
// Deno's own HTTP/1.1 and HTTP/2 server with WebSocket upgrades (Deno.upgradeWebSocket): no
// framework is needed for a handful of fixed paths. With `tls`, TLS ends in front of it with the
// certificate each client asks for (tls_front.ts), and Deno.serve listens on loopback behind.
//
// XML streams carried over HTTP (WebSocket, BOSH) are kept here like a TCP listener's: admitted
// against the descriptor budget and the cap per client address (behind a trusted proxy: the
// forwarded address), swept for idle checks, closed at shutdown.
import type { XmlStream } from "../stream/xml_stream.ts";
import type { DescriptorBudget } from "../stream/descriptor_budget.ts";
import { AddressList, clientAddress } from "./addresses.ts";
import { type HttpClient, type HttpRoutes, type StreamAdmission, text } from "./routes.ts";
import { TlsFront } from "./tls_front.ts";
import type tls from "node:tls";
import { logger } from "../log/logger.ts";

const log = logger("http");

export interface HttpListenerOptions {
  bind: string;
  port: number;
  /** https: the TLS context for the server name a client asks for (SNI); none: plain http. */
  tls?: (serverName: string | undefined) => tls.SecureContext;
  /** Milliseconds a client has to complete its TLS handshake. */
  tlsHandshakeMs: number;
  trustedProxies: string[];
  connectionsPerIp: number;
  descriptors: DescriptorBudget;
}

export class HttpListener implements StreamAdmission {
  readonly streams = new Set<XmlStream>();
  readonly #trusted: AddressList;
  #perIp = new Map<string, number>();
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  readonly #front: TlsFront | undefined;

  constructor(readonly options: HttpListenerOptions, readonly routes: HttpRoutes) {
    this.#trusted = new AddressList(options.trustedProxies);
    const { bind, port, tls, tlsHandshakeMs, descriptors } = options;
    if (tls) {
      this.#front = new TlsFront({
        bind,
        port,
        context: tls,
        handshakeMs: tlsHandshakeMs,
        descriptors,
      });
    }
  }

  async listen(): Promise<{ address: string; port: number }> {
    const front = this.#front;
    const { bind, port } = this.options;
    const served = await this.#serve(front ? "127.0.0.1" : bind, front ? 0 : port);
    const address = front ? await front.listen(served.port) : served;
    log.info("listening for {type} on {address}:{port}", {
      type: front ? "https" : "http",
      ...address,
    });
    return address;
  }

  #serve(hostname: string, port: number): Promise<{ address: string; port: number }> {
    return new Promise((resolve, reject) => {
      try {
        this.#server = Deno.serve({
          hostname,
          port,
          onListen: (addr) => resolve({ address: addr.hostname, port: addr.port }),
          onError: (e) => {
            log.error("http request failed: {error}", { error: String((e as Error)?.stack ?? e) });
            return new Response("internal server error", { status: 500 });
          },
        }, (req, info) => this.#handle(req, info));
      } catch (e) {
        reject(e);
      }
    });
  }

  #handle(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response | Promise<Response> {
    // Behind the TLS front, the client is the one whose relay came from this port; anyone else
    // reaching the loopback port directly is no client of this listener.
    const remote = this.#front ? this.#front.clientOf(info.remoteAddr.port) : info.remoteAddr;
    if (!remote) return text(403, "connect over TLS");
    const peer = remote.hostname;
    const ip = clientAddress(peer, req.headers, this.#trusted);
    const proxied = ip !== peer || this.#trusted.has(peer);
    const secure = !!this.#front ||
      (proxied && req.headers.get("x-forwarded-proto")?.toLowerCase() === "https");
    const port = ip === peer ? remote.port : 0;
    const client: HttpClient = { ip, remote: `${ip}:${port}`, secure, proxied, listener: this };
    return this.routes.handle(req, client);
  }

  /**
   * Admits a stream from `ip` against the descriptor budget and the cap per address: a release
   * to call once it is gone, or the response refusing it.
   */
  admit(ip: string): (() => void) | Response {
    if (!this.options.descriptors.admit()) {
      return text(503, "the server is at its connection limit", { "retry-after": "10" });
    }
    const n = (this.#perIp.get(ip) ?? 0) + 1;
    if (n > this.options.connectionsPerIp) {
      this.options.descriptors.release();
      return text(429, "too many connections from your address", { "retry-after": "10" });
    }
    this.#perIp.set(ip, n);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.options.descriptors.release();
      const left = (this.#perIp.get(ip) ?? 1) - 1;
      if (left) this.#perIp.set(ip, left);
      else this.#perIp.delete(ip);
    };
  }

  /** Keeps a stream for idle checks and shutdown until it is gone, then releases its place. */
  track(stream: XmlStream, release: () => void): void {
    this.streams.add(stream);
    stream.whenClosed.then(() => {
      this.streams.delete(stream);
      release();
    });
  }

  /** Called every second: idle checks of the streams. */
  sweep(now: number): void {
    for (const s of this.streams) s.checkIdle(now);
  }

  /** Stops accepting; resolves once the server is shut down (the caller closes the streams). */
  async close(): Promise<void> {
    await this.#front?.close();
    await this.#server?.shutdown();
  }
}
