// Every connection to an http listener is accepted here, as on the XMPP ports, never by
// Deno.serve itself: Deno.serve accepts without any limit, and when accept fails (EMFILE) its
// server rejects and stops for good. Here each connection is admitted against the descriptor
// budget (three descriptors: the client's socket, the relay's, and Deno.serve's end of it) and
// the cap per address (except trusted proxies, which carry many clients: those are counted per
// forwarded address, per stream, by the listener), closed when idle, given TLS with the
// certificate it asks for (SNI) when the listener has `tls`, then relayed over loopback to the
// listener's Deno.serve, which learns the client's address from the relay's local port.
import net from "node:net";
import type tls from "node:tls";
import { acceptTls } from "../stream/tls_accept.ts";
import type { DescriptorBudget } from "../stream/descriptor_budget.ts";
import type { AddressCaps } from "../stream/address_caps.ts";
import { listenOn, rearm } from "../stream/tcp_server.ts";
import type { AddressList } from "../core/address_list.ts";
import { logger } from "../log/logger.ts";

const log = logger("http");
/** Descriptors one relayed connection holds. */
const DESCRIPTORS = 3;
const LOOPBACK = "127.0.0.1";
/** How long a refused connection is given to read why before it is closed. */
const REFUSED_MS = 2000;
const SWITCHING = new TextEncoder().encode("HTTP/1.1 101");
const TOO_MANY_TEXT = "too many connections from your address\n";
const TOO_MANY = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n" +
  `Content-Length: ${TOO_MANY_TEXT.length}\r\nRetry-After: 10\r\nConnection: close\r\n\r\n` +
  TOO_MANY_TEXT;

export interface HttpFrontOptions {
  bind: string;
  port: number;
  /** The context for the server name a client asks for; none: plain http. */
  tls?: (serverName: string | undefined) => tls.SecureContext;
  handshakeMs: number;
  /** A connection with nothing read or written for this long is closed. */
  idleMs: number;
  /** The longest a request may take from its first byte to the start of its answer. */
  requestMs: number;
  descriptors: DescriptorBudget;
  /** Connections per client address (not for trusted proxies). */
  caps: AddressCaps;
  trusted: AddressList;
}

export type Peer = { hostname: string; port: number };

/** A live relay: its client, and how to lift the deadline of the request under way. */
interface Relay {
  client: Peer;
  streaming(): void;
}

export class HttpFront {
  #server: net.Server;
  /** Live relays, by the relay connection's local port. */
  #relays = new Map<number, Relay>();
  #sockets = new Set<net.Socket>();
  #backend = 0;

  constructor(readonly options: HttpFrontOptions) {
    // Half-open: a client may send its request and close its side before the answer comes.
    this.#server = net.createServer({ allowHalfOpen: true }, (socket) => this.#accept(socket));
    this.#server.on(
      "error",
      (e) => log.error("http listener error: {error}", { error: e.message }),
    );
  }

  /** Listens; `backend` is the port of the Deno.serve on loopback behind it. */
  listen(backend: number): Promise<{ address: string; port: number }> {
    this.#backend = backend;
    return listenOn(this.#server, this.options.bind, this.options.port);
  }

  /** Relays new connections to another backend port (Deno.serve started again). */
  set backend(port: number) {
    this.#backend = port;
  }

  /** The client behind a relay connection, known by its loopback address and port. */
  clientOf(relay: Peer): Peer | undefined {
    return this.#relayOf(relay)?.client;
  }

  /**
   * The request under way on this relay may take as long as its body takes (a verified upload):
   * no deadline until its answer begins; the idle timeout still applies.
   */
  streaming(relay: Peer): void {
    this.#relayOf(relay)?.streaming();
  }

  #relayOf(relay: Peer): Relay | undefined {
    return relay.hostname === LOOPBACK ? this.#relays.get(relay.port) : undefined;
  }

  /** Called every second: accept re-armed after a failed one (tcp_server.ts). */
  sweep(): void {
    rearm(this.#server);
  }

  #accept(socket: net.Socket): void {
    const { descriptors, caps, trusted, idleMs } = this.options;
    if (!descriptors.admit(DESCRIPTORS)) return void socket.destroy();
    const client = { hostname: socket.remoteAddress ?? "?", port: socket.remotePort ?? 0 };
    const counted = trusted.has(client.hostname) ? undefined : caps.take(client.hostname);
    this.#sockets.add(socket);
    socket.once("close", () => {
      this.#sockets.delete(socket);
      counted?.release();
      descriptors.release(DESCRIPTORS);
    });
    socket.on("error", () => socket.destroy());
    if (counted?.over) {
      // Plain http can be told why at no cost; TLS only after a handshake, the work to spare.
      // Either way the connection goes soon, whether or not the client closes its side.
      if (this.options.tls) return void socket.destroy();
      socket.resume();
      socket.setTimeout(REFUSED_MS, () => socket.destroy());
      socket.end(TOO_MANY);
      return;
    }
    socket.setNoDelay(true);
    socket.setTimeout(idleMs, () => socket.destroy());
    const { tls, handshakeMs } = this.options;
    if (!tls) return this.#relay(socket, client);
    acceptTls(socket, tls, handshakeMs, (secure) => {
      secure.on("error", () => secure.destroy());
      secure.once("secure", () => this.#relay(secure, client));
      secure.once("close", () => socket.destroy());
    });
  }

  #relay(from: net.Socket, client: Peer): void {
    const inner = net.connect({
      host: LOOPBACK,
      port: this.#backend,
      localAddress: LOOPBACK,
      allowHalfOpen: true,
    });
    inner.setNoDelay(true);
    // A request must be answered within requestMs of its first byte, however slowly it trickles
    // (the idle timer restarts with each byte): each answer clears the deadline; after a
    // WebSocket upgrade (101) there are no requests any more. A request its route lets stream
    // (an upload) has none until its answer begins.
    let upgraded = false;
    let streaming = false;
    let deadline: ReturnType<typeof setTimeout> | undefined;
    let local: number | undefined;
    inner.once("connect", () => {
      local = inner.localPort!;
      this.#relays.set(local, {
        client,
        streaming: () => {
          streaming = true;
          clearTimeout(deadline);
          deadline = undefined;
        },
      });
      from.pipe(inner);
      inner.pipe(from);
      // Only now: a listener before the pipes would take what the client sent meanwhile.
      from.on("data", () => {
        if (!upgraded && !streaming) {
          deadline ??= setTimeout(() => from.destroy(), this.options.requestMs);
        }
      });
      inner.on("data", (d: Uint8Array) => {
        // "100 Continue" (a client that sent Expect) is not the answer: the body still comes.
        if (isContinue(d)) return;
        clearTimeout(deadline);
        deadline = undefined;
        streaming = false;
        upgraded ||= isUpgrade(d);
      });
    });
    const end = () => {
      clearTimeout(deadline);
      if (local !== undefined) this.#relays.delete(local);
      inner.destroy();
      from.destroy();
    };
    inner.on("error", end);
    inner.once("close", end);
    from.once("close", end);
  }

  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    return closed;
  }
}

/** Whether an answer starts with 101 Switching Protocols (a WebSocket from now on). */
const CONTINUE = new TextEncoder().encode("HTTP/1.1 100 ");

/** An interim "100 Continue" answer, which Deno.serve sends when a handler reads the body. */
function isContinue(d: Uint8Array): boolean {
  return d.length >= CONTINUE.length && CONTINUE.every((b, i) => d[i] === b);
}

function isUpgrade(d: Uint8Array): boolean {
  return d.length >= SWITCHING.length && SWITCHING.every((b, i) => d[i] === b);
}
