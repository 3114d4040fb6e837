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
  /** Why attempts on this account are refused for now (too many failures), or undefined. */
  throttled(user: string): string | undefined;
}

export interface SaslMechanism {
  /** The prepared account the client named, once it has named one. */
  readonly user: string | undefined;
  step(data: Uint8Array): Promise<SaslStep>;
}

export const fail = (condition: SaslFailure, text?: string): SaslStep => ({
  kind: "failure",
  condition,
  text,
});
