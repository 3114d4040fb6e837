// SCRAM server against the exchanges published in RFC 5802 §5 (SHA-1) and RFC 7677 §3 (SHA-256).
import assert from "node:assert/strict";
import { ScramMechanism } from "../../src/sasl/scram.ts";
import { deriveScram, verifyPassword } from "../../src/sasl/scram_keys.ts";
import type { Credentials } from "../../src/storage/store.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

const VECTORS = [
  {
    hash: "SHA-1" as const,
    salt: "QSXCR+Q6sek8bf92",
    clientFirst: "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    serverNonce: "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
    clientFinal:
      "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    serverFinal: "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
  },
  {
    hash: "SHA-256" as const,
    salt: "W22ZaJ0SNY7soEsUEjb6gQ==",
    clientFirst: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    serverNonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    clientFinal:
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    serverFinal: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
  },
];

for (const v of VECTORS) {
  Deno.test(`SCRAM-${v.hash} reproduces the RFC test vector`, async () => {
    const cred = deriveScram(v.hash, "pencil", 4096, Buffer.from(v.salt, "base64"));
    const creds = { [v.hash]: cred } as unknown as Credentials;
    const clientNonce = v.clientFirst.split("r=")[1];
    const mech = new ScramMechanism(v.hash, {
      domain: "example.org",
      credentials: (u) => Promise.resolve(u === "user" ? creds : null),
      secret: new Uint8Array(32),
    }, () => v.serverNonce.slice(clientNonce.length));
    const first = await mech.step(enc.encode(v.clientFirst));
    assert.equal(first.kind, "challenge");
    const serverFirst = dec.decode((first as { data: Uint8Array }).data);
    assert.equal(serverFirst, `r=${v.serverNonce},s=${v.salt},i=4096`);
    const done = await mech.step(enc.encode(v.clientFinal));
    assert.equal(done.kind, "success");
    assert.equal(dec.decode((done as { data: Uint8Array }).data), v.serverFinal);
  });
}

Deno.test("SCRAM rejects a wrong proof and a tampered nonce", async () => {
  const creds = { "SHA-256": deriveScram("SHA-256", "pencil", 64) } as unknown as Credentials;
  const ctx = {
    domain: "d",
    credentials: () => Promise.resolve(creds),
    secret: new Uint8Array(32),
  };
  const mech = new ScramMechanism("SHA-256", ctx);
  const first = await mech.step(enc.encode("n,,n=user,r=abc"));
  const nonce = /r=([^,]+)/.exec(dec.decode((first as { data: Uint8Array }).data))![1];
  const bad = await mech.step(enc.encode(`c=biws,r=${nonce},p=${btoa("x".repeat(32))}`));
  assert.deepEqual(bad, { kind: "failure", condition: "not-authorized", text: undefined });
  const mech2 = new ScramMechanism("SHA-256", ctx);
  await mech2.step(enc.encode("n,,n=user,r=abc"));
  const r = await mech2.step(enc.encode(`c=biws,r=other,p=${btoa("x".repeat(32))}`));
  assert.equal(r.kind, "failure");
});

Deno.test("stored keys verify the password (PLAIN) and never contain it", () => {
  const cred = deriveScram("SHA-256", "s3cret", 64);
  assert.ok(verifyPassword(cred, "s3cret"));
  assert.ok(!verifyPassword(cred, "S3cret"));
  assert.ok(!JSON.stringify(cred).includes("s3cret"));
  // SASLprep: a soft hyphen maps to nothing.
  assert.ok(verifyPassword(cred, "s3\u00ADcret"));
});
