// Upload slots (XEP-0363 §4): what a slot allows, one PUT of exactly this file by this account
// before it expires, signed (HMAC-SHA-256) with a key derived from the cluster secret. Any node
// verifies a slot any node issued, and nothing is stored for a slot until its PUT: the token is
// the slot. It travels in the PUT's Authorization header (`Bearer <token>`), never in a URL, so
// the download URL a user shares carries no permission to upload.
//
// Token: base64url(JSON [version, id, owner, filename, size, type, expires]) "." base64url(MAC).
import { Buffer } from "node:buffer";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

const VERSION = 1;
/** Longest token accepted for verification (a slot's filename is at most 255 bytes). */
const MAX_TOKEN = 4096;

export interface Slot {
  /** The file's id: 128 random bits, base64url (22 characters). */
  id: string;
  /** The uploader's bare JID. */
  owner: string;
  filename: string;
  size: number;
  /** The content type the request gave, "" when it gave none. */
  type: string;
  /** Milliseconds since the epoch after which the slot may not be used. */
  expires: number;
}

/** What a file id looks like (newId): 128 bits in base64url. */
export const ID_PATTERN = "[A-Za-z0-9_-]{22}";

/** A byte count as the slot request and Content-Length give it: a whole number, bounded. */
export const BYTE_COUNT = /^\d{1,15}$/;

/** A new file id. */
export function newId(): string {
  return randomBytes(16).toString("base64url");
}

export class SlotSigner {
  readonly #key: Buffer;

  /** `secret`: the cluster secret, the same on every node sharing the store. */
  constructor(secret: Uint8Array) {
    // A key of its own: a MAC made here is never one the secret makes elsewhere.
    this.#key = createHmac("sha256", secret).update("parley upload slot").digest();
  }

  sign(slot: Slot): string {
    const { id, owner, filename, size, type, expires } = slot;
    const payload = Buffer.from(JSON.stringify([VERSION, id, owner, filename, size, type, expires]))
      .toString("base64url");
    return `${payload}.${this.#mac(payload).toString("base64url")}`;
  }

  /** The slot a token names, or null when this cluster did not sign it (or it is malformed). */
  verify(token: string): Slot | null {
    if (token.length > MAX_TOKEN) return null;
    const dot = token.indexOf(".");
    if (dot < 0) return null;
    const payload = token.slice(0, dot);
    const given = Buffer.from(token.slice(dot + 1), "base64url");
    const want = this.#mac(payload);
    if (given.length !== want.length || !timingSafeEqual(given, want)) return null;
    let fields: unknown;
    try {
      fields = JSON.parse(Buffer.from(payload, "base64url").toString());
    } catch {
      return null;
    }
    if (!Array.isArray(fields) || fields[0] !== VERSION) return null;
    const [, id, owner, filename, size, type, expires] = fields;
    const strings = [id, owner, filename, type].every((s) => typeof s === "string");
    if (!strings || !Number.isSafeInteger(size) || !Number.isSafeInteger(expires)) return null;
    return { id, owner, filename, size, type, expires };
  }

  #mac(payload: string): Buffer {
    return createHmac("sha256", this.#key).update(payload).digest();
  }
}
