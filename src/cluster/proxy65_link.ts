// The link that carries one relayed SOCKS5 stream between two nodes, when its two connections
// reached different nodes: a TLS connection of its own per stream, with the cluster's mutual TLS
// (src/cluster/tls.ts), so bulk bytes never queue behind or ahead of the stanzas of the mesh link,
// and a stream's backpressure is the TCP window of its own connection.
//
// The dialling node sends one line, JSON { hash, owner }; the other answers one byte (0: relaying,
// 1: no such connection here) and both relay. Each end reads at most READ_AHEAD bytes ahead of
// the relay before it stops reading, and a write resolves only once the TLS socket took the
// chunk, so the relay's copy buffers are reused only after their bytes are gone.
import tls from "node:tls";
import { certNodeName, clientOptions, type ClusterTls, serverOptions } from "./tls.ts";
import type { RemoteEnd } from "../proxy65/relay.ts";

/** Bytes read from the link ahead of the relay (a TLS record is at most 16 KiB). */
const READ_AHEAD = 64 * 1024;
/** For the TLS handshake and the first line and byte. */
const SETUP_MS = 5000;
const MAX_HEADER = 1024;
const OK = 0;
const REFUSED = 1;

export interface StreamHeader {
  hash: string;
  owner: string;
}

/** One end of a stream's link, as the relay reads and writes it. */
export class LinkEnd implements RemoteEnd {
  #queue: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #wake: (() => void) | undefined;
  readonly closed: Promise<void>;

  constructor(readonly socket: tls.TLSSocket) {
    socket.setNoDelay(true);
    socket.on("data", (d: Uint8Array) => {
      this.#queue.push(d);
      this.#queued += d.length;
      if (this.#queued >= READ_AHEAD) socket.pause();
      this.#wake?.();
    });
    this.closed = new Promise((resolve) => {
      const end = () => {
        this.#ended = true;
        this.#wake?.();
        resolve();
      };
      socket.on("end", end);
      socket.on("close", end);
      socket.on("error", end);
    });
  }

  async read(buf: Uint8Array): Promise<number | null> {
    while (this.#queue.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
    let n = 0;
    while (n < buf.length && this.#queue.length) {
      const head = this.#queue[0];
      const take = Math.min(head.length, buf.length - n);
      buf.set(head.subarray(0, take), n);
      n += take;
      if (take === head.length) this.#queue.shift();
      else this.#queue[0] = head.subarray(take);
    }
    this.#queued -= n;
    if (this.#queued < READ_AHEAD && this.socket.isPaused()) this.socket.resume();
    return n;
  }

  write(chunk: Uint8Array): Promise<void> {
    const written = new Promise<void>((resolve, reject) =>
      this.socket.write(chunk, (e) => e ? reject(e) : resolve())
    );
    // A link that dies fails the write, whether or not the socket calls back.
    const lost = this.closed.then(() => Promise.reject(new Error("the link closed")));
    lost.catch(() => {});
    return Promise.race([written, lost]);
  }

  close(): void {
    this.socket.destroy();
  }

  /** Tells the dialling node that the stream is relayed here: before any byte of the stream. */
  accept(): void {
    void this.write(Uint8Array.of(OK)).catch(() => this.close());
  }

  /** Reads up to and including the first newline (no more: the caller reads the rest). */
  async line(): Promise<string | null> {
    const one = new Uint8Array(1);
    const bytes: number[] = [];
    while (bytes.length < MAX_HEADER) {
      if (await this.read(one) === null) return null;
      if (one[0] === 0x0a) return new TextDecoder().decode(Uint8Array.from(bytes));
      bytes.push(one[0]);
    }
    return null;
  }
}

/** Fails after `ms`, destroying the socket, unless `work` settles first. */
function deadline<T>(socket: tls.TLSSocket, work: Promise<T>, ms = SETUP_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("timed out"));
    }, ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

/**
 * Opens the link of stream `header` to `node`: resolves with its end once the node relays the
 * stream, or rejects (no such connection there, unreachable, or too slow).
 */
export function dialStream(
  creds: ClusterTls,
  node: string,
  address: { host: string; port: number },
  header: StreamHeader,
): Promise<LinkEnd> {
  const socket = tls.connect({
    host: address.host,
    port: address.port,
    ...clientOptions(creds, node, `${address.host}:${address.port}`),
  });
  const end = new LinkEnd(socket);
  return deadline(
    socket,
    (async () => {
      await new Promise<void>((resolve, reject) => {
        socket.once("secureConnect", resolve);
        socket.once("error", reject);
      });
      await end.write(new TextEncoder().encode(JSON.stringify(header) + "\n"));
      const answer = new Uint8Array(1);
      if (await end.read(answer) !== 1 || answer[0] !== OK) throw new Error("refused");
      return end;
    })(),
  ).catch((e) => {
    end.close();
    throw e;
  });
}

/**
 * Listens for the links of other nodes. `accept` gets the dialling node (named by its
 * certificate), the stream it asks for and the end; it calls `end.accept()` and starts relaying
 * (true), or refuses (false).
 */
export async function listenForStreams(
  creds: ClusterTls,
  host: string,
  port: number,
  accept: (peer: string, header: StreamHeader, end: LinkEnd) => boolean,
): Promise<{ server: tls.Server; port: number }> {
  const server = tls.createServer(
    { ...serverOptions(creds), handshakeTimeout: SETUP_MS },
    (socket) => {
      const peer = certNodeName(socket.getPeerCertificate());
      const end = new LinkEnd(socket);
      if (!peer) return end.close();
      deadline(socket, end.line()).then((line) => {
        const header = line === null ? null : JSON.parse(line) as StreamHeader;
        if (!header?.hash || !header.owner) return end.close();
        if (!accept(peer, header, end)) {
          void end.write(Uint8Array.of(REFUSED)).catch(() => {}).finally(() => end.close());
        }
      }).catch(() => end.close());
    },
  );
  server.on("tlsClientError", () => {});
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  // Streams end with their connections; the listener alone keeps no process alive.
  server.unref();
  return { server, port: (server.address() as { port: number }).port };
}
