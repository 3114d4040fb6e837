// HTTP File Upload (XEP-0363) from a test: slot requests over a raw XMPP client, uploads and
// downloads over fetch, deterministic file contents made (and hashed) a piece at a time.
import { createHash } from "node:crypto";
import net from "node:net";
import type { RawClient } from "./raw_client.ts";
import type { Element } from "../../src/xml/element.ts";
import { escapeAttr } from "../../src/xml/escape.ts";

export const NS_UPLOAD = "urn:xmpp:http:upload:0";

export interface SlotUrls {
  put: string;
  get: string;
  /** The PUT's headers the slot names (Authorization). */
  headers: Record<string, string>;
}

/** Asks `service` for a slot: the iq answer. */
export function requestSlot(
  c: RawClient,
  service: string,
  filename: string,
  size: number | string,
  type?: string,
): Promise<Element> {
  const attrs = [
    `filename='${escapeAttr(filename)}'`,
    `size='${escapeAttr(String(size))}'`,
    type === undefined ? "" : `content-type='${escapeAttr(type)}'`,
  ].join(" ");
  return c.iq("get", `<request xmlns='${NS_UPLOAD}' ${attrs}/>`, service);
}

/** The URLs and headers of a slot answer (fails the test on an error). */
export function slotOf(iq: Element): SlotUrls {
  const slot = iq.child("slot", NS_UPLOAD);
  if (iq.attrs.type !== "result" || !slot) throw new Error(`no slot: ${iq}`);
  const put = slot.child("put")!;
  const headers: Record<string, string> = {};
  for (const h of put.elements("header")) headers[h.attrs.name!] = h.text();
  return { put: put.attrs.url!, get: slot.child("get")!.attrs.url!, headers };
}

/** Asks for a slot and fails unless one comes. */
export async function slot(
  c: RawClient,
  service: string,
  filename: string,
  size: number,
  type?: string,
): Promise<SlotUrls> {
  return slotOf(await requestSlot(c, service, filename, size, type));
}

/** PUTs `body` to a slot with its headers, Content-Type `type` (when given) and `extra`. */
export function put(
  s: SlotUrls,
  body: BodyInit,
  type?: string,
  extra: Record<string, string> = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...s.headers, ...extra };
  if (type !== undefined) headers["content-type"] = type;
  return fetch(s.put, { method: "PUT", body, headers });
}

/** `n` bytes, the same for the same seed (a xorshift stream). */
export function bytes(n: number, seed = 1): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}

/**
 * `total` bytes as a stream of 1 MiB pieces, none kept: piece i is `bytes(1 MiB, seed + i % 8)`
 * with i written every 64 KiB (no two 64 KiB of a file alike), cut to what is left.
 * `generatedSha256` gives the hash of the same bytes without a stream.
 */
export function generated(total: number, seed = 1): ReadableStream<Uint8Array> {
  let sent = 0;
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (sent >= total) return c.close();
      const p = piece(seed, i++).subarray(0, Math.min(1 << 20, total - sent));
      sent += p.length;
      c.enqueue(p);
    },
  }, { highWaterMark: 0 });
}

export function generatedSha256(total: number, seed = 1): string {
  const h = createHash("sha256");
  for (let sent = 0, i = 0; sent < total; i++) {
    const p = piece(seed, i).subarray(0, Math.min(1 << 20, total - sent));
    h.update(p);
    sent += p.length;
  }
  return h.digest("hex");
}

const bases = new Map<number, Uint8Array>();
/** Piece i of a generated file (a new buffer: a stream's consumer may keep it). */
function piece(seed: number, i: number): Uint8Array {
  const key = seed + (i % 8);
  let base = bases.get(key);
  if (!base) bases.set(key, base = bytes(1 << 20, key));
  const p = base.slice();
  const view = new DataView(p.buffer);
  for (let at = 0; at < p.length; at += 1 << 16) view.setUint32(at, i);
  return p;
}

/** SHA-256 of a response's body, read as it comes; and how many bytes it had. */
export async function sha256Of(res: Response): Promise<{ sha256: string; bytes: number }> {
  const h = createHash("sha256");
  let n = 0;
  for await (const chunk of res.body!) {
    h.update(chunk);
    n += chunk.length;
  }
  return { sha256: h.digest("hex"), bytes: n };
}

export function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** An upload error as the XEP words it: condition, type, text and its upload:0 child. */
export function uploadError(iq: Element) {
  const e = iq.child("error");
  return {
    type: iq.attrs.type,
    condition: e?.elements().find((c) => c.attrs.xmlns === "urn:ietf:params:xml:ns:xmpp-stanzas")
      ?.name,
    errorType: e?.attrs.type,
    text: e?.childText("text"),
    app: e?.childNs(NS_UPLOAD),
  };
}

/**
 * A PUT of `size` bytes from `body` over a socket of its own, written as fast as the server reads
 * them (fetch would send a stream without Content-Length): the status and the answer's text.
 */
export async function putStream(
  url: string,
  headers: Record<string, string>,
  size: number,
  body: ReadableStream<Uint8Array>,
): Promise<{ status: number; text: string }> {
  const u = new URL(url);
  const sock = net.connect(Number(u.port), u.hostname);
  const answer = new Promise<string>((resolve, reject) => {
    let text = "";
    sock.on("data", (d: Uint8Array) => text += new TextDecoder().decode(d));
    sock.on("close", () => resolve(text));
    sock.on("error", reject);
  });
  await new Promise((r) => sock.once("connect", r));
  const head = Object.entries({ ...headers, "content-length": String(size), connection: "close" })
    .map(([k, v]) => `${k}: ${v}\r\n`).join("");
  sock.write(`PUT ${u.pathname} HTTP/1.1\r\nhost: ${u.host}\r\n${head}\r\n`);
  for await (const chunk of body) {
    if (!sock.write(chunk)) {
      await new Promise<void>((r) => {
        const done = () => {
          sock.off("close", done);
          sock.off("drain", done);
          r();
        };
        sock.once("drain", done).once("close", done);
      });
    }
    if (sock.destroyed) break;
  }
  const text = await answer;
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text };
}
