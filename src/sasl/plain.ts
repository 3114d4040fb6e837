// SASL PLAIN (RFC 4616). Offered only on encrypted streams unless a listener allows it for tests.
import { prepLocal } from "../jid/precis.ts";
import { prepPassword, verifyPassword } from "./scram_keys.ts";
import { fail, type SaslContext, type SaslMechanism, type SaslStep } from "./mechanism.ts";

export class PlainMechanism implements SaslMechanism {
  #ctx: SaslContext;
  constructor(ctx: SaslContext) {
    this.#ctx = ctx;
  }

  async step(data: Uint8Array): Promise<SaslStep> {
    const parts = new TextDecoder().decode(data).split("\0");
    if (parts.length !== 3) return fail("malformed-request");
    const [authzid, authcid, password] = parts;
    const prepped = prepPassword(authcid);
    const user = prepped === null ? null : prepLocal(prepped);
    if (user === null) return fail("not-authorized");
    if (authzid !== "" && authzid !== `${user}@${this.#ctx.domain}`) return fail("invalid-authzid");
    const creds = await this.#ctx.credentials(user);
    if (!creds || !verifyPassword(creds["SHA-256"], password)) return fail("not-authorized");
    return { kind: "success", user };
  }
}
