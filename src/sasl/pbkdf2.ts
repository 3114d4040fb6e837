// PBKDF2 (RFC 8018) off the event loop, at most one derivation per core at a time.
//
// Measured on the 2-core box, 4,096 iterations of HMAC-SHA-256, 64 callers at once (latency of
// one derivation alone / throughput / longest event-loop stall meanwhile):
//   node:crypto pbkdf2Sync (before)         2.7 ms /   ~420/s / each whole derivation
//   node:crypto pbkdf2 (async, thread pool) 2.3 ms /   ~700/s / 46–57 ms
//   Web Workers (2) running pbkdf2Sync      2.6 ms /   ~650/s /  5–6 ms
//   WebCrypto deriveBits, unbounded         0.9 ms / ~1,500/s / 44–92 ms
//   WebCrypto deriveBits, one per core      0.9 ms / ~1,500/s /  3 ms
// WebCrypto's PBKDF2 is 2.5× faster per derivation than node:crypto's and already runs on Deno's
// blocking thread pool, so a worker pool would only add message passing. Unbounded, though, every
// derivation gets a thread of its own and together they take the cores from the event loop;
// queued to one per core they keep the throughput and the loop keeps its turn.
import { availableParallelism } from "node:os";
import pLimit from "p-limit";

export type ScramHash = "SHA-1" | "SHA-256";
const KEY_BITS: Record<ScramHash, number> = { "SHA-1": 160, "SHA-256": 256 };

const enc = new TextEncoder();
const limit = pLimit(Math.max(1, availableParallelism()));

async function run(
  hash: ScramHash,
  password: string,
  salt: Uint8Array,
  iterations: number,
): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", enc.encode(password), "PBKDF2", false, [
    "deriveBits",
  ]);
  const params = { name: "PBKDF2", hash, salt: new Uint8Array(salt), iterations };
  return new Uint8Array(await crypto.subtle.deriveBits(params, key, KEY_BITS[hash]));
}

/** The derivation; an object so that tests can count the derivations the server performs. */
export const pbkdf2 = {
  derive(hash: ScramHash, password: string, salt: Uint8Array, iterations: number) {
    return limit(run, hash, password, salt, iterations);
  },
};
