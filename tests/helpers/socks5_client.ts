// A raw SOCKS5 client for the XEP-0065 proxy: a socket that keeps what it receives, and the
// greeting plus CONNECT to a stream's hash.
import assert from "node:assert/strict";
import net from "node:net";
import { createHash } from "node:crypto";
import type { RawClient } from "./raw_client.ts";

export const NS_BYTESTREAMS = "http://jabber.org/protocol/bytestreams";

/** Where a proxy listens: a port on 127.0.0.1, or a host and port (a node of a cluster). */
export type ProxyAddress = number | { host: string; port: number };

/** A raw socket with everything it has received so far. */
export class Peer {
  got: Uint8Array[] = [];
  size = 0;
  closed = false;
  #changed = new Set<() => void>();

  constructor(readonly socket: net.Socket) {
    const changed = () => {
      for (const f of this.#changed) f();
    };
    socket.on("data", (d: Uint8Array) => {
      this.got.push(d);
      this.size += d.length;
      changed();
    });
    socket.on("close", () => {
      this.closed = true;
      changed();
    });
    socket.on("error", () => {});
  }

  /** Connects to the proxy on loopback, from `localAddress` (another 127.x address) if given. */
  static open(at: ProxyAddress, localAddress?: string): Promise<Peer> {
    const { host, port } = typeof at === "number" ? { host: "127.0.0.1", port: at } : at;
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host, localAddress }, () => resolve(new Peer(s)));
      s.once("error", reject);
    });
  }

  bytes(): Uint8Array {
    return Buffer.concat(this.got);
  }

  take(n: number): Uint8Array {
    const all = this.bytes();
    const rest = all.subarray(n);
    this.got = rest.length ? [rest] : [];
    this.size = rest.length;
    return all.subarray(0, n);
  }

  /** Resolves once `pred` holds, checked whenever bytes arrive or the socket closes. */
  until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.#changed.delete(check);
      };
      const check = () => {
        if (!pred()) return;
        done();
        resolve();
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${what}`));
      }, ms);
      this.#changed.add(check);
    });
  }
}

/**
 * SOCKS5 no-auth greeting and CONNECT to `hash`; resolves with the reply code, or null when the
 * proxy closed the connection without answering (refused on accept).
 */
export async function socks(
  at: ProxyAddress,
  hash: string,
  localAddress?: string,
): Promise<{ peer: Peer; code: number | null }> {
  const p = await Peer.open(at, localAddress);
  p.socket.write(Uint8Array.of(5, 1, 0));
  await p.until(() => p.size >= 2 || p.closed, "method selection");
  if (p.size < 2) return { peer: p, code: null };
  assert.deepEqual([...p.take(2)], [5, 0]);
  p.socket.write(Uint8Array.of(5, 1, 0, 3, hash.length, ...new TextEncoder().encode(hash), 0, 0));
  await p.until(() => p.size >= 2 || p.closed, "connect reply");
  const reply = p.take(Math.min(p.size, 7 + hash.length));
  return { peer: p, code: reply[1] };
}

export const sha1 = (s: string) => createHash("sha1").update(s).digest("hex");
export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** `size` random bytes. */
export function randomBytes(size: number): Uint8Array {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  return data;
}

/** The activation of stream `sid` to `target` by `requester`; resolves with the answer. */
export function activate(requester: RawClient, sid: string, target: string) {
  return requester.iq(
    "set",
    `<query xmlns='${NS_BYTESTREAMS}' sid='${sid}'><activate>${target}</activate></query>`,
    "proxy.localhost",
  );
}

/**
 * Opens a stream through the proxy at `at` as XEP-0065 does: the target connects, then the
 * requester, who activates it; each step must succeed. With two addresses, the target connects
 * to the first and the requester to the second (two nodes of a cluster).
 */
export async function openStream(
  requester: RawClient,
  at: ProxyAddress | [ProxyAddress, ProxyAddress],
  sid: string,
  target: string,
  localAddress?: string,
): Promise<{ target: Peer; requester: Peer; hash: string }> {
  const [targetAt, requesterAt] = Array.isArray(at) ? at : [at, at];
  const hash = sha1(sid + requester.jid + target);
  const t = await socks(targetAt, hash, localAddress);
  assert.equal(t.code, 0, "target connected");
  const r = await socks(requesterAt, hash, localAddress);
  assert.equal(r.code, 0, "requester connected");
  const act = await activate(requester, sid, target);
  assert.equal(act.attrs.type, "result", String(act));
  return { target: t.peer, requester: r.peer, hash };
}
