// SASL PLAIN (RFC 4616). Offered only on encrypted streams unless a listener allows it for tests.
import { prepLocal } from "../jid/precis.ts";
import { prepPassword, unknownUserCredential, verifyPassword } from "./scram_keys.ts";
import {
  fail,
  MAX_FIELD_BYTES,
  MAX_NAME_BYTES,
  type SaslContext,
  type SaslMechanism,
  type SaslStep,
  tooLong,
} from "./mechanism.ts";

export class PlainMechanism implements SaslMechanism {
  #ctx: SaslContext;

  constructor(ctx: SaslContext) {
    this.#ctx = ctx;
  }

  async step(data: Uint8Array): Promise<SaslStep> {
    const parts = new TextDecoder().decode(data).split("\0");
    if (parts.length !== 3) return fail("malformed-request");
    const [authzid, authcid, password] = parts;
    // Bounded before SASLprep and PRECIS, whose cost grows with the length.
    if (
      tooLong(authcid, MAX_NAME_BYTES) || tooLong(authzid, MAX_FIELD_BYTES) ||
      tooLong(password, MAX_FIELD_BYTES)
    ) return fail("malformed-request", "identity or password too long");
    const prepped = prepPassword(authcid);
    const user = prepped === null ? null : prepLocal(prepped);
    if (user === null) return fail("not-authorized");
    if (authzid !== "" && authzid !== `${user}@${this.#ctx.domain}`) return fail("invalid-authzid");
    const refused = await this.#ctx.throttled(user);
    if (refused) return fail("temporary-auth-failure", refused);
    const creds = await this.#ctx.credentials(user);
    // An unknown user costs the same derivation as a wrong password, so timing tells nothing.
    const cred = creds?.["SHA-256"] ??
      unknownUserCredential("SHA-256", this.#ctx.secret, user, this.#ctx.iterations);
    if (!await verifyPassword(cred, password) || !creds) return fail("not-authorized");
    return { kind: "success", user };
  }
}
