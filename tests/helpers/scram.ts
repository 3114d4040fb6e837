// The client side of SASL SCRAM-SHA-1/256 (RFC 5802) for tests, whatever carries it (a TCP
// stream, BOSH): the payloads to send, base64 as in <auth/> and <response/>, and the check of
// the server's signature.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";

export type ScramHash = "SHA-1" | "SHA-256";

export class ScramClient {
  readonly mechanism: string;
  readonly #alg: "sha1" | "sha256";
  readonly #first: string;
  #authMessage = "";
  #salted: Buffer | undefined;

  constructor(user: string, readonly password: string, readonly hash: ScramHash = "SHA-256") {
    this.mechanism = `SCRAM-${hash}`;
    this.#alg = hash === "SHA-1" ? "sha1" : "sha256";
    this.#first = `n=${user},r=${randomBytes(12).toString("base64")}`;
  }

  /** The initial response, for <auth mechanism='SCRAM-…'>. */
  get initial(): string {
    return btoa("n,," + this.#first);
  }

  /** The final message with the client's proof, answering the server's challenge. */
  respond(challenge: string): string {
    const serverFirst = atob(challenge);
    const a = Object.fromEntries(serverFirst.split(",").map((p) => [p[0], p.slice(2)]));
    const salted = this.#salted = pbkdf2Sync(
      this.password,
      Buffer.from(a.s, "base64"),
      Number(a.i),
      this.hash === "SHA-1" ? 20 : 32,
      this.#alg,
    );
    const clientKey = createHmac(this.#alg, salted).update("Client Key").digest();
    const storedKey = createHash(this.#alg).update(clientKey).digest();
    const finalBare = `c=biws,r=${a.r}`;
    this.#authMessage = `${this.#first},${serverFirst},${finalBare}`;
    const sig = createHmac(this.#alg, storedKey).update(this.#authMessage).digest();
    const proof = Buffer.from(clientKey.map((b, i) => b ^ sig[i]));
    return btoa(`${finalBare},p=${proof.toString("base64")}`);
  }

  /** Throws unless the <success/> payload carries the server's signature. */
  verify(success: string): void {
    const serverKey = createHmac(this.#alg, this.#salted!).update("Server Key").digest();
    const expected = createHmac(this.#alg, serverKey).update(this.#authMessage).digest("base64");
    if (atob(success) !== `v=${expected}`) throw new Error("server signature mismatch");
  }
}
