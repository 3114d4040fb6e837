// SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) server side, without channel binding.
// The server only ever holds StoredKey/ServerKey. Unknown users get keys derived from the server's
// persistent secret and go through the same steps, so the exchange does not reveal which accounts
// exist.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { prepLocal } from "../jid/precis.ts";
import {
  fail,
  MAX_FIELD_BYTES,
  MAX_NAME_BYTES,
  type SaslContext,
  type SaslMechanism,
  type SaslStep,
  tooLong,
} from "./mechanism.ts";
import { h, hmac, prepPassword, type ScramHash, unknownUserCredential } from "./scram_keys.ts";
import type { ScramCredential } from "../storage/store.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Parses "k=v,k=v" attribute lists; null on a malformed list. */
function attrs(s: string): Map<string, string> | null {
  const m = new Map<string, string>();
  for (const part of s.split(",")) {
    if (part.length < 2 || part[1] !== "=") return null;
    m.set(part[0], part.slice(2));
  }
  return m;
}

/** A client nonce: printable ASCII but "," (RFC 5802 §7), of a sane length (clients send ~24–32). */
const NONCE = /^[\x21-\x2b\x2d-\x7e]{1,256}$/;

function unescapeName(s: string): string | null {
  if (/=(?!2C|3D)/.test(s)) return null;
  return s.replace(/=2C/g, ",").replace(/=3D/g, "=");
}

export class ScramMechanism implements SaslMechanism {
  #hash: ScramHash;
  #ctx: SaslContext;
  #state: "first" | "final" | "done" = "first";
  #gs2Header = "";
  #clientFirstBare = "";
  #serverFirst = "";
  #nonce = "";
  #user = "";
  #cred: ScramCredential | undefined;
  #known = false;

  constructor(
    hash: ScramHash,
    ctx: SaslContext,
    /** Server part of the nonce; fixed only to replay published test vectors. */
    readonly serverNonce: () => string = () => randomBytes(18).toString("base64"),
  ) {
    this.#hash = hash;
    this.#ctx = ctx;
  }

  step(data: Uint8Array): Promise<SaslStep> {
    const msg = dec.decode(data);
    if (this.#state === "first") return this.#first(msg);
    if (this.#state === "final") return this.#final(msg);
    return Promise.resolve(fail("malformed-request"));
  }

  async #first(msg: string): Promise<SaslStep> {
    // gs2-header: "n,," / "y,," (no channel binding); "p=" would need the -PLUS variant.
    const m = /^([ny]|p=[^,]*),(a=[^,]*)?,(.*)$/s.exec(msg);
    if (!m) return fail("malformed-request");
    if (m[1].startsWith("p=")) return fail("malformed-request", "channel binding is not offered");
    this.#gs2Header = msg.slice(0, msg.length - m[3].length);
    this.#clientFirstBare = m[3];
    const a = attrs(m[3]);
    const n = a?.get("n"), r = a?.get("r");
    if (!a || n === undefined || !r || a.has("m")) return fail("malformed-request");
    if (!NONCE.test(r)) return fail("malformed-request", "invalid nonce");
    // Bounded before SASLprep and PRECIS, whose cost grows with the length; escaping "," and "="
    // triples a name at most.
    if (tooLong(n, 3 * MAX_NAME_BYTES) || tooLong(m[2] ?? "", 3 * MAX_FIELD_BYTES)) {
      return fail("malformed-request", "identity too long");
    }
    const name = unescapeName(n);
    if (name !== null && tooLong(name, MAX_NAME_BYTES)) {
      return fail("malformed-request", "identity too long");
    }
    const prepped = name === null ? null : prepPassword(name);
    const user = prepped === null ? null : prepLocal(prepped);
    if (user === null) return fail("not-authorized");
    if (m[2]) {
      const authzid = unescapeName(m[2].slice(2));
      if (authzid !== `${user}@${this.#ctx.domain}`) return fail("invalid-authzid");
    }
    this.#user = user;
    const refused = await this.#ctx.throttled(user);
    if (refused) return fail("temporary-auth-failure", refused);
    const real = (await this.#ctx.credentials(user))?.[this.#hash];
    this.#known = real !== undefined;
    const cred = real ??
      unknownUserCredential(this.#hash, this.#ctx.secret, user, this.#ctx.iterations);
    this.#cred = cred;
    this.#nonce = r + this.serverNonce();
    this.#serverFirst = `r=${this.#nonce},s=${cred.salt},i=${cred.iterations}`;
    this.#state = "final";
    return { kind: "challenge", data: enc.encode(this.#serverFirst) };
  }

  async #final(msg: string): Promise<SaslStep> {
    this.#state = "done";
    // Checked again where the password is tested: the limits may have been reached meanwhile.
    const refused = await this.#ctx.throttled(this.#user);
    if (refused) return fail("temporary-auth-failure", refused);
    const pIdx = msg.lastIndexOf(",p=");
    if (pIdx < 0) return fail("malformed-request");
    const withoutProof = msg.slice(0, pIdx);
    const a = attrs(msg);
    const c = a?.get("c"), r = a?.get("r"), p = a?.get("p");
    if (!a || c === undefined || r === undefined || p === undefined) {
      return fail("malformed-request");
    }
    if (c !== btoa(this.#gs2Header)) return fail("malformed-request", "channel binding mismatch");
    if (r !== this.#nonce) return fail("malformed-request", "nonce mismatch");
    const cred = this.#cred!;
    const authMessage = `${this.#clientFirstBare},${this.#serverFirst},${withoutProof}`;
    const storedKey = Buffer.from(cred.storedKey, "base64");
    const signature = hmac(this.#hash, storedKey, authMessage);
    const proof = Buffer.from(p, "base64");
    if (proof.length !== signature.length) return fail("not-authorized");
    for (let i = 0; i < proof.length; i++) proof[i] ^= signature[i];
    const candidate = h(this.#hash, proof);
    if (!timingSafeEqual(candidate, storedKey) || !this.#known) return fail("not-authorized");
    const serverSig = hmac(this.#hash, Buffer.from(cred.serverKey, "base64"), authMessage);
    return {
      kind: "success",
      user: this.#user,
      data: enc.encode("v=" + serverSig.toString("base64")),
    };
  }
}
