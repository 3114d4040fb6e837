// SCRAM key derivation (RFC 5802 §3). Only these derived keys are ever stored.
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { saslprep } from "@mongodb-js/saslprep";
import type { Credentials, ScramCredential } from "../storage/store.ts";
import { pbkdf2, type ScramHash } from "./pbkdf2.ts";

export type { ScramHash };
const NODE_HASH: Record<ScramHash, string> = { "SHA-1": "sha1", "SHA-256": "sha256" };
const SALT_BYTES = 16;

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

export async function deriveScram(
  hash: ScramHash,
  preppedPassword: string,
  iterations: number,
  salt: Uint8Array = randomBytes(SALT_BYTES),
): Promise<ScramCredential> {
  const salted = await pbkdf2.derive(hash, preppedPassword, salt, iterations);
  return {
    salt: Buffer.from(salt).toString("base64"),
    iterations,
    storedKey: h(hash, hmac(hash, salted, "Client Key")).toString("base64"),
    serverKey: hmac(hash, salted, "Server Key").toString("base64"),
  };
}

/** Credentials for a new password; null when SASLprep rejects it. */
export async function deriveCredentials(
  password: string,
  iterations: number,
): Promise<Credentials | null> {
  const p = prepPassword(password);
  if (p === null || p.length === 0) return null;
  const [sha1, sha256] = await Promise.all([
    deriveScram("SHA-1", p, iterations),
    deriveScram("SHA-256", p, iterations),
  ]);
  return { "SHA-1": sha1, "SHA-256": sha256 };
}

/**
 * Keys for an account that does not exist, shaped like a real one's and the same on every ask
 * and across restarts (they come from the server's persistent secret), with the iteration count
 * new accounts get: a login attempt cannot tell a missing account from a wrong password.
 */
export function unknownUserCredential(
  hash: ScramHash,
  secret: Uint8Array,
  user: string,
  iterations: number,
): ScramCredential {
  const derived = (purpose: string) => hmac(hash, secret, `${purpose}:${user}`);
  return {
    salt: derived("salt").subarray(0, SALT_BYTES).toString("base64"),
    iterations,
    storedKey: h(hash, derived("client-key")).toString("base64"),
    serverKey: derived("server-key").toString("base64"),
  };
}

/** Checks a plaintext password (SASL PLAIN, XEP-0077 changes) against stored keys. */
export async function verifyPassword(cred: ScramCredential, password: string): Promise<boolean> {
  const p = prepPassword(password);
  if (p === null) return false;
  const salted = await pbkdf2.derive(
    "SHA-256",
    p,
    Buffer.from(cred.salt, "base64"),
    cred.iterations,
  );
  const stored = h("SHA-256", hmac("SHA-256", salted, "Client Key"));
  const expected = Buffer.from(cred.storedKey, "base64");
  return stored.length === expected.length && timingSafeEqual(stored, expected);
}
