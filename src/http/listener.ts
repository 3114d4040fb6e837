// The HTTP listener (`type: http`, ejabberd's and Prosody's port 5280): each request handed to the
// route of its path (routes.ts) by Deno.serve, Deno's own HTTP/1.1 server with WebSocket upgrades
// (Deno.upgradeWebSocket): no framework is needed for a handful of fixed paths. Deno.serve listens
// on loopback only; clients connect to the front (front.ts), which admits each connection, ends
// TLS with SNI when the listener has `tls`, and relays it.
//
// XML streams carried over HTTP (WebSocket, BOSH) are kept here like a TCP listener's: counted
// against the cap per client address (behind a trusted proxy: the forwarded address), swept for
// idle checks, refused once the server is stopping, closed at shutdown.
import type tls from "node:tls";
import type { XmlStream } from "../stream/xml_stream.ts";
import type { DescriptorBudget } from "../stream/descriptor_budget.ts";
import { AddressCaps } from "../stream/address_caps.ts";
import { AddressList } from "../core/address_list.ts";
import { clientAddress, type ForwardedHeader } from "./addresses.ts";
import { type HttpClient, type HttpRoutes, type StreamAdmission, text } from "./routes.ts";
import { HttpFront } from "./front.ts";
import { logger } from "../log/logger.ts";

const log = logger("http");

export interface HttpListenerOptions {
  bind: string;
  port: number;
  /** https: the TLS context for the server name a client asks for (SNI); none: plain http. */
  tls?: (serverName: string | undefined) => tls.SecureContext;
  /** Milliseconds a client has to complete its TLS handshake. */
  tlsHandshakeMs: number;
  /** Milliseconds a connection may stay silent both ways before it is closed. */
  idleMs: number;
  /** Milliseconds a request may take from its first byte to the start of its answer. */
  requestMs: number;
  trustedProxies: string[];
  forwardedHeader: ForwardedHeader;
  connectionsPerIp: number;
  descriptors: DescriptorBudget;
}

export class HttpListener implements StreamAdmission {
  readonly streams = new Set<XmlStream>();
  readonly #trusted: AddressList;
  /** XML streams per client address (connections are counted by the front). */
  readonly #streamCaps: AddressCaps;
  readonly #front: HttpFront;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #stopping = false;

  constructor(readonly options: HttpListenerOptions, readonly routes: HttpRoutes) {
    this.#trusted = new AddressList(options.trustedProxies);
    this.#streamCaps = new AddressCaps(options.connectionsPerIp);
    const { bind, port, tls, tlsHandshakeMs, idleMs, requestMs, descriptors } = options;
    this.#front = new HttpFront({
      bind,
      port,
      tls,
      handshakeMs: tlsHandshakeMs,
      idleMs,
      requestMs,
      descriptors,
      caps: new AddressCaps(options.connectionsPerIp),
      trusted: this.#trusted,
    });
  }

  async listen(): Promise<{ address: string; port: number }> {
    const backend = await this.#serve();
    const address = await this.#front.listen(backend);
    log.info("listening for {type} on {address}:{port}", {
      type: this.options.tls ? "https" : "http",
      ...address,
    });
    return address;
  }

  /** Starts Deno.serve on a loopback port: the port. Started again should it ever stop. */
  #serve(): Promise<number> {
    return new Promise((resolve, reject) => {
      try {
        const server = this.#server = Deno.serve({
          hostname: "127.0.0.1",
          port: 0,
          onListen: (addr) => resolve(addr.port),
          onError: (e) => {
            log.error("http request failed: {error}", { error: String((e as Error)?.stack ?? e) });
            return new Response("internal server error", { status: 500 });
          },
        }, (req, info) => this.#handle(req, info));
        server.finished.catch((e) => {
          if (this.#stopping || server !== this.#server) return;
          log.error("the http server stopped ({error}): starting it again", { error: String(e) });
          this.#serve().then((port) => this.#front.backend = port, (e) => {
            log.error("the http server could not start again: {error}", { error: String(e) });
          });
        });
      } catch (e) {
        reject(e);
      }
    });
  }

  #handle(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response | Promise<Response> {
    // The client whose relay came from this loopback port; anyone reaching the loopback port
    // directly is no client of this listener.
    const remote = this.#front.clientOf(info.remoteAddr);
    if (!remote) return text(403, "not a client of this listener");
    const peer = remote.hostname;
    const ip = clientAddress(peer, req.headers, this.#trusted, this.options.forwardedHeader);
    const proxied = ip !== peer || this.#trusted.has(peer);
    const secure = !!this.options.tls ||
      (proxied && req.headers.get("x-forwarded-proto")?.toLowerCase() === "https");
    const port = ip === peer ? remote.port : 0;
    const client: HttpClient = {
      ip,
      remote: `${ip}:${port}`,
      secure,
      proxied,
      listener: this,
      streaming: () => this.#front.streaming(info.remoteAddr),
    };
    return this.routes.handle(req, client);
  }

  /** Admits a stream from `ip`: a release to call once it is gone, or the response refusing it. */
  admit(ip: string): (() => void) | Response {
    if (this.#stopping) return text(503, "the server is stopping", { "retry-after": "10" });
    const counted = this.#streamCaps.take(ip);
    if (!counted.over) return counted.release;
    counted.release();
    return text(429, "too many connections from your address", { "retry-after": "10" });
  }

  /** Keeps a stream for idle checks and shutdown until it is gone, then releases its place. */
  track(stream: XmlStream, release: () => void): void {
    this.streams.add(stream);
    stream.whenClosed.then(() => {
      this.streams.delete(stream);
      release();
    });
  }

  /** No more streams from now on: the server is stopping (the listener still answers /health). */
  drain(): void {
    this.#stopping = true;
  }

  /** Called every second: accept re-armed, idle checks of the streams. */
  sweep(now: number): void {
    this.#front.sweep();
    for (const s of this.streams) s.checkIdle(now);
  }

  /** Stops accepting, closes what is left, and shuts the server down. */
  async close(): Promise<void> {
    this.#stopping = true;
    await this.#front.close();
    for (const s of this.streams) s.error("system-shutdown");
    await this.#server?.shutdown();
  }
}
