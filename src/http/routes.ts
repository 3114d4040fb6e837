// The paths of the HTTP listener and what answers each, as the server and services add them
// (WebSocket, BOSH, discovery, metrics, health: exact paths; file upload: every path under a
// prefix). An unknown path is 404. A route for browsers checks the request's Origin against
// `http.allowed_origins`.
import type { XmlStream } from "../stream/xml_stream.ts";

/** Admission of XML streams over HTTP (WebSocket, BOSH) by the listener they came in on. */
export interface StreamAdmission {
  /** A release to call once the stream is gone, or the response refusing it. */
  admit(ip: string): (() => void) | Response;
  /** Keeps a stream for idle checks and shutdown until it is gone, then releases its place. */
  track(stream: XmlStream, release: () => void): void;
}

/** Who is asking: the client's address, and how it reached us. */
export interface HttpClient {
  ip: string;
  /** "ip:port" as for a TCP client (the port is the peer's, or 0 behind a proxy). */
  remote: string;
  /** Over TLS: this listener's, or (from a trusted proxy) the proxy's. */
  secure: boolean;
  /** Came through a trusted proxy. */
  proxied: boolean;
  /** The listener the request came in on, which admits streams. */
  listener: StreamAdmission;
  /**
   * This request's body may take as long as it takes to arrive (a verified upload): the
   * listener's deadline for a request no longer applies to it, its idle timeout still does.
   */
  streaming(): void;
}

/** A path prefix (ending in "/") and what answers every path under it. */
export interface HttpRoute {
  prefix: string;
  handler: HttpHandler;
}

export type HttpHandler = (req: Request, client: HttpClient) => Response | Promise<Response>;

export class HttpRoutes {
  #routes = new Map<string, HttpHandler>();
  /** Prefix routes, longest first. */
  #prefixes: HttpRoute[] = [];

  constructor(readonly allowedOrigins: string[] = []) {}

  add(path: string, handler: HttpHandler): void {
    if (this.#routes.has(path)) throw new Error(`the http path ${path} is taken`);
    this.#routes.set(path, handler);
  }

  /** Answers every path under `route.prefix` (which ends in "/") that has no exact route. */
  addPrefix(route: HttpRoute): void {
    if (!route.prefix.endsWith("/")) throw new Error(`the http prefix ${route.prefix} needs a /`);
    if (this.#prefixes.some((r) => r.prefix === route.prefix)) {
      throw new Error(`the http prefix ${route.prefix} is taken`);
    }
    this.#prefixes.push(route);
    this.#prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  handle(req: Request, client: HttpClient): Response | Promise<Response> {
    const path = new URL(req.url).pathname;
    const route = this.#routes.get(path) ??
      this.#prefixes.find((r) => path.startsWith(r.prefix))?.handler;
    if (!route) return text(404, "not found");
    return route(req, client);
  }

  /** Whether a page from the request's origin may use this server (no Origin: not a page). */
  originAllowed(req: Request): boolean {
    const origin = req.headers.get("origin");
    return origin === null || this.allowedOrigins.length === 0 ||
      this.allowedOrigins.includes(origin);
  }
}

/** A plain-text response. */
export function text(status: number, body: string, headers: HeadersInit = {}): Response {
  return new Response(body + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}
