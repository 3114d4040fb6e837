// The link that carries one relayed SOCKS5 stream between two nodes, when its two connections
// reached different nodes: a TLS connection of its own per stream, so bulk bytes never queue
// behind or ahead of the stanzas of the mesh link, and a stream's backpressure is the TCP window
// of its own connection.
//
// It runs on Deno's native sockets and TLS (rustls), which read into and write from the relay's
// own buffers: node:tls in Deno moved about a third as many bytes per second (docs/PERFORMANCE.md).
// Deno's TLS listener cannot ask for a client certificate, so the two ends prove themselves apart:
// - the accepting node presents its cluster certificate; the dialling node verifies it against the
//   cluster CA alone and requires it to name the node it meant (`startTls` over a TCP connection
//   to the node's address, with the node's name as the TLS server name);
// - the dialling node sends, as its first bytes, a one-time ticket that the accepting node issued
//   for this stream over the mesh link (mutual TLS, so only that peer got it): a 16-byte id and a
//   32-byte secret, compared in constant time, tried once and forgotten after TICKET_MS. Anything
//   else (another or a replayed ticket, no TLS, silence) is closed without an answer.
// The accepting node then answers one byte (0: relaying, 1: no such connection here any more).
import { timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";
import type { ClusterTls } from "./tls.ts";
import type { RemoteEnd } from "../proxy65/relay.ts";
import { writeAll } from "../stream/write_all.ts";
import { acceptLoop } from "../stream/accept_loop.ts";
import { logger } from "../log/logger.ts";

const log = logger("proxy65");

/** For the TLS handshake, the ticket and the answer. */
const SETUP_MS = 5000;
/** How long an issued ticket waits for its link. */
const TICKET_MS = 10_000;
/** Connections on the relay port still proving themselves; more are closed on accept. */
const MAX_UNPROVEN = 256;
const ID_BYTES = 16;
const TICKET_BYTES = ID_BYTES + 32;
const OK = 0;
const REFUSED = 1;

/** What a ticket lets its bearer link to. */
export interface Expected {
  /** The node it was issued to. */
  peer: string;
  hash: string;
  owner: string;
}

/** The tickets a node issued for links it expects, each good once and for TICKET_MS. */
export class StreamTickets {
  #issued = new Map<
    string,
    Expected & { secret: Uint8Array; timer: ReturnType<typeof setTimeout> }
  >();

  /** A new ticket for `expected`, base64 (for the mesh link). */
  issue(expected: Expected): string {
    const ticket = crypto.getRandomValues(new Uint8Array(TICKET_BYTES));
    const id = hex(ticket.subarray(0, ID_BYTES));
    const timer = setTimeout(() => this.#issued.delete(id), TICKET_MS);
    this.#issued.set(id, { ...expected, secret: ticket.slice(ID_BYTES), timer });
    return Buffer.from(ticket).toString("base64");
  }

  /** What `ticket` was issued for, once; undefined for anything else. An id is tried once. */
  redeem(ticket: Uint8Array): Expected | undefined {
    const id = hex(ticket.subarray(0, ID_BYTES));
    const entry = this.#issued.get(id);
    if (!entry) return undefined;
    this.#issued.delete(id);
    clearTimeout(entry.timer);
    if (!timingSafeEqual(entry.secret, ticket.subarray(ID_BYTES))) return undefined;
    return { peer: entry.peer, hash: entry.hash, owner: entry.owner };
  }

  clear(): void {
    for (const { timer } of this.#issued.values()) clearTimeout(timer);
    this.#issued.clear();
  }
}

/** One end of a stream's link, as the relay reads and writes it: the native conn itself. */
export class LinkEnd implements RemoteEnd {
  constructor(readonly conn: Deno.TlsConn) {}

  read(buf: Uint8Array): Promise<number | null> {
    return this.conn.read(buf);
  }

  write(chunk: Uint8Array): Promise<void> {
    return writeAll(this.conn, chunk);
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }

  /** Reads exactly `buf.length` bytes; false when the link ends first. */
  async readFull(buf: Uint8Array): Promise<boolean> {
    for (let off = 0; off < buf.length;) {
      const n = await this.conn.read(buf.subarray(off));
      if (n === null) return false;
      off += n;
    }
    return true;
  }
}

/** Runs `work` on `end`, closing the end (which fails the work) unless it settles in time. */
async function inTime<T>(end: LinkEnd, work: (end: LinkEnd) => Promise<T>): Promise<T> {
  const timer = setTimeout(() => end.close(), SETUP_MS);
  try {
    return await work(end);
  } catch (e) {
    end.close();
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Opens the link of a stream to `node` with the `ticket` it issued: resolves with its end once
 * the node relays the stream, or rejects (refused, unreachable, not the node, or too slow).
 */
export async function dialStream(
  creds: ClusterTls,
  node: string,
  address: { host: string; port: number },
  ticket: string,
): Promise<LinkEnd> {
  const tcp = await Deno.connect({
    hostname: address.host,
    port: address.port,
    signal: AbortSignal.timeout(SETUP_MS),
  });
  tcp.setNoDelay(true);
  // The node's name, not its address, is what its certificate must name.
  let end: LinkEnd;
  try {
    end = new LinkEnd(await Deno.startTls(tcp, { hostname: node, caCerts: [creds.ca] }));
  } catch (e) {
    tcp.close();
    throw e;
  }
  return inTime(end, async () => {
    await end.conn.handshake();
    await end.write(Buffer.from(ticket, "base64"));
    const answer = new Uint8Array(1);
    if (!(await end.readFull(answer)) || answer[0] !== OK) throw new Error("refused");
    return end;
  });
}

/** The relay port of one proxy: its listener and the tickets it honours. */
export interface StreamListener {
  port: number;
  tickets: StreamTickets;
  close(): void;
}

/**
 * Listens for the links of other nodes, with this node's cluster certificate. `accept` gets what
 * a valid ticket was issued for and the end; it starts relaying and resolves true once the stream
 * runs, or resolves false (the dialling node is then told no).
 */
export function listenForStreams(
  creds: ClusterTls,
  hostname: string,
  port: number,
  accept: (expected: Expected, end: LinkEnd) => Promise<boolean>,
): StreamListener {
  const listener = Deno.listenTls({ hostname, port, cert: creds.cert, key: creds.key });
  const tickets = new StreamTickets();
  let unproven = 0;
  void acceptLoop(listener, log, (conn) => {
    const end = new LinkEnd(conn);
    if (unproven >= MAX_UNPROVEN) return end.close();
    unproven++;
    inTime(end, async () => {
      await conn.handshake();
      const ticket = new Uint8Array(TICKET_BYTES);
      return (await end.readFull(ticket)) ? tickets.redeem(ticket) : undefined;
    }).then(async (expected) => {
      unproven--;
      if (!expected) {
        log.warn("proxy65: refused a link from {address}: no valid ticket", {
          address: conn.remoteAddr.hostname,
        });
        return end.close();
      }
      if (!(await accept(expected, end))) {
        await end.write(Uint8Array.of(REFUSED)).catch(() => {});
        end.close();
      }
    }, () => unproven--);
  });
  return {
    port: listener.addr.port,
    tickets,
    close: () => {
      tickets.clear();
      listener.close();
    },
  };
}

/** Tells the dialling node the stream is relayed here: before any byte of the stream. */
export function relaying(end: LinkEnd): Promise<void> {
  return end.write(Uint8Array.of(OK));
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex");
}
