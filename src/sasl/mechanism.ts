// What a SASL mechanism sees of the server, and what it answers (RFC 6120 §6).
import type { Credentials } from "../storage/store.ts";

export type SaslFailure =
  | "aborted"
  | "account-disabled"
  | "credentials-expired"
  | "encryption-required"
  | "incorrect-encoding"
  | "invalid-authzid"
  | "invalid-mechanism"
  | "malformed-request"
  | "mechanism-too-weak"
  | "not-authorized"
  | "temporary-auth-failure";

export type SaslStep =
  | { kind: "challenge"; data: Uint8Array }
  | { kind: "success"; user: string; data?: Uint8Array }
  | { kind: "failure"; condition: SaslFailure; text?: string };

export interface SaslContext {
  domain: string;
  /** Stored credentials of a prepared localpart, or null for no such account. */
  credentials(user: string): Promise<Credentials | null>;
  /** A per-server secret, for answers about unknown users that look like real ones. */
  secret: Uint8Array;
  /** Iterations of the keys new accounts get: what unknown users are shown. */
  iterations: number;
  /**
   * Called with the prepared localpart before any work on the account, in every step that tests
   * credentials: why attempts on it are refused for now (too many failures), or undefined.
   */
  throttled(user: string): Promise<string | undefined>;
}

export interface SaslMechanism {
  step(data: Uint8Array): Promise<SaslStep>;
}

/** Longest account name a client may send, in UTF-8 bytes: a JID localpart's (RFC 7622 §3.3.1). */
export const MAX_NAME_BYTES = 1023;
/** Longest password or authorization identity a client may send, in UTF-8 bytes. */
export const MAX_FIELD_BYTES = 3071;

/** Whether `s` is longer than `max` bytes in UTF-8, without encoding it. */
export const tooLong = (s: string, max: number): boolean =>
  s.length > max || Buffer.byteLength(s, "utf8") > max;

export const fail = (condition: SaslFailure, text?: string): SaslStep => ({
  kind: "failure",
  condition,
  text,
});
