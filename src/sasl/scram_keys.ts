// SCRAM key derivation (RFC 5802 §3). Only these derived keys are ever stored.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";
import { saslprep } from "@mongodb-js/saslprep";
import type { Credentials, ScramCredential } from "../storage/store.ts";

export type ScramHash = "SHA-1" | "SHA-256";
const NODE_HASH: Record<ScramHash, string> = { "SHA-1": "sha1", "SHA-256": "sha256" };
const KEY_LEN: Record<ScramHash, number> = { "SHA-1": 20, "SHA-256": 32 };

export function hmac(hash: ScramHash, key: Uint8Array, data: string | Uint8Array): Buffer {
  return createHmac(NODE_HASH[hash], key).update(data).digest();
}

export function h(hash: ScramHash, data: Uint8Array): Buffer {
  return createHash(NODE_HASH[hash]).update(data).digest();
}

/** SASLprep (RFC 4013) of a password; null when it contains prohibited characters. */
export function prepPassword(password: string): string | null {
  try {
    return saslprep(password);
  } catch {
    return null;
  }
}

export function saltedPassword(
  hash: ScramHash,
  preppedPassword: string,
  salt: Uint8Array,
  iterations: number,
): Buffer {
  return pbkdf2Sync(preppedPassword, salt, iterations, KEY_LEN[hash], NODE_HASH[hash]);
}

export function deriveScram(
  hash: ScramHash,
  preppedPassword: string,
  iterations: number,
  salt: Uint8Array = randomBytes(16),
): ScramCredential {
  const salted = saltedPassword(hash, preppedPassword, salt, iterations);
  return {
    salt: Buffer.from(salt).toString("base64"),
    iterations,
    storedKey: h(hash, hmac(hash, salted, "Client Key")).toString("base64"),
    serverKey: hmac(hash, salted, "Server Key").toString("base64"),
  };
}

/** Credentials for a new password; null when SASLprep rejects it. */
export function deriveCredentials(password: string, iterations: number): Credentials | null {
  const p = prepPassword(password);
  if (p === null || p.length === 0) return null;
  return {
    "SHA-1": deriveScram("SHA-1", p, iterations),
    "SHA-256": deriveScram("SHA-256", p, iterations),
  };
}

/** Checks a plaintext password (SASL PLAIN, XEP-0077 changes) against stored keys. */
export function verifyPassword(cred: ScramCredential, password: string): boolean {
  const p = prepPassword(password);
  if (p === null) return false;
  const salted = saltedPassword("SHA-256", p, Buffer.from(cred.salt, "base64"), cred.iterations);
  const stored = h("SHA-256", hmac("SHA-256", salted, "Client Key"));
  const expected = Buffer.from(cred.storedKey, "base64");
  return stored.length === expected.length && timingSafeEqual(stored, expected);
}
