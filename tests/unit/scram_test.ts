// SCRAM server against the exchanges published in RFC 5802 §5 (SHA-1) and RFC 7677 §3 (SHA-256).
import assert from "node:assert/strict";
import { ScramMechanism } from "../../src/sasl/scram.ts";
import { PlainMechanism } from "../../src/sasl/plain.ts";
import { deriveCredentials, deriveScram, verifyPassword } from "../../src/sasl/scram_keys.ts";
import { pbkdf2 } from "../../src/sasl/pbkdf2.ts";
import type { SaslContext } from "../../src/sasl/mechanism.ts";
import type { Credentials } from "../../src/storage/store.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A SASL context over `creds` (for every user named "user"), with nothing throttled. */
function context(creds: Credentials | null, secret = new Uint8Array(32)): SaslContext {
  return {
    domain: "example.org",
    credentials: (u) => Promise.resolve(u === "user" ? creds : null),
    secret,
    iterations: 4096,
    throttled: () => Promise.resolve(undefined),
  };
}

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
    const cred = await deriveScram(v.hash, "pencil", 4096, Buffer.from(v.salt, "base64"));
    const creds = { [v.hash]: cred } as unknown as Credentials;
    const clientNonce = v.clientFirst.split("r=")[1];
    const mech = new ScramMechanism(
      v.hash,
      context(creds),
      () => v.serverNonce.slice(clientNonce.length),
    );
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
  const creds = {
    "SHA-256": await deriveScram("SHA-256", "pencil", 64),
  } as unknown as Credentials;
  const ctx = context(creds);
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

Deno.test("stored keys verify the password (PLAIN) and never contain it", async () => {
  const cred = await deriveScram("SHA-256", "s3cret", 64);
  assert.ok(await verifyPassword(cred, "s3cret"));
  assert.ok(!await verifyPassword(cred, "S3cret"));
  assert.ok(!JSON.stringify(cred).includes("s3cret"));
  // SASLprep: a soft hyphen maps to nothing.
  assert.ok(await verifyPassword(cred, "s3\u00ADcret"));
});

/** The server-first message SCRAM-SHA-256 answers `name` with, as attributes. */
async function serverFirst(ctx: SaslContext, name: string): Promise<Record<string, string>> {
  const step = await new ScramMechanism("SHA-256", ctx).step(enc.encode(`n,,n=${name},r=abc`));
  assert.equal(step.kind, "challenge");
  const text = dec.decode((step as { data: Uint8Array }).data);
  return Object.fromEntries(text.split(",").map((p) => [p[0], p.slice(2)]));
}

Deno.test("SCRAM: an unknown user gets a salt and iteration count like a real one's, stable per secret", async () => {
  const creds = {
    "SHA-256": await deriveScram("SHA-256", "pencil", 4096),
  } as unknown as Credentials;
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const real = await serverFirst(context(creds, secret), "user");
  const unknown = await serverFirst(context(creds, secret), "nobody");
  assert.equal(unknown.i, real.i);
  assert.equal(Buffer.from(unknown.s, "base64").length, Buffer.from(real.s, "base64").length);
  assert.notEqual(unknown.s, real.s);
  // The same secret (a restart) gives the same answer; another user or secret another one.
  assert.equal((await serverFirst(context(creds, secret), "nobody")).s, unknown.s);
  assert.notEqual((await serverFirst(context(creds, secret), "other")).s, unknown.s);
  assert.notEqual((await serverFirst(context(creds), "nobody")).s, unknown.s);
  // The new-account iteration count is what unknown users are shown.
  assert.equal(
    (await serverFirst({ ...context(creds, secret), iterations: 10_000 }, "x")).i,
    "10000",
  );
});

Deno.test("PLAIN derives a key for an unknown user as for a wrong password", async () => {
  const creds = { "SHA-256": await deriveScram("SHA-256", "pencil", 64) } as unknown as Credentials;
  const derive = pbkdf2.derive;
  let derivations = 0;
  pbkdf2.derive = (...args) => {
    derivations++;
    return derive(...args);
  };
  try {
    const attempt = (user: string) =>
      new PlainMechanism(context(creds)).step(enc.encode(`\0${user}\0wrong`));
    assert.equal((await attempt("user")).kind, "failure");
    assert.equal(derivations, 1);
    assert.equal((await attempt("nobody")).kind, "failure");
    assert.equal(derivations, 2, "no key was derived for the unknown user");
  } finally {
    pbkdf2.derive = derive;
  }
});

/** A context with no accounts that records whether the store was asked. */
function watchedContext(over: Partial<SaslContext> = {}) {
  const seen = { looked: false };
  const ctx: SaslContext = {
    ...context(null),
    credentials: () => {
      seen.looked = true;
      return Promise.resolve(null);
    },
    ...over,
  };
  return { ctx, seen };
}

Deno.test("a throttled account is refused before any work", async () => {
  const { ctx, seen } = watchedContext({
    throttled: (u) => Promise.resolve(u === "user" ? "too many" : undefined),
  });
  const plain = await new PlainMechanism(ctx).step(enc.encode("\0user\0pw"));
  assert.deepEqual(plain, {
    kind: "failure",
    condition: "temporary-auth-failure",
    text: "too many",
  });
  const scram = await new ScramMechanism("SHA-256", ctx).step(enc.encode("n,,n=user,r=abc"));
  assert.equal(scram.kind === "failure" && scram.condition, "temporary-auth-failure");
  assert.equal(seen.looked, false);
});

Deno.test("over-long names, passwords and nonces, and control characters, are malformed", async () => {
  const { ctx, seen } = watchedContext();
  const scram = (msg: string) => new ScramMechanism("SHA-256", ctx).step(enc.encode(msg));
  const plain = (msg: string) => new PlainMechanism(ctx).step(enc.encode(msg));
  const long = "u".repeat(100_000);
  for (
    const step of [
      scram(`n,,n=${long},r=abc`),
      scram(`n,,n=${"é".repeat(600)},r=abc`), // 600 characters, 1,200 bytes
      scram(`n,,n=user,r=${"A".repeat(150_000)}`),
      scram("n,,n=user,r=x\u0000"), // RFC 5802 §7: printable characters only
      scram("n,,n=user,r=a b"),
      plain(`\0${long}\0pw`),
      plain(`\0user\0${long}`),
      plain(`${long}\0user\0pw`),
    ]
  ) {
    const r = await step;
    assert.equal(r.kind === "failure" && r.condition, "malformed-request", JSON.stringify(r));
  }
  assert.equal(seen.looked, false, "refused before the store is asked");
  // The longest localpart is still accepted as a name (and is then an unknown user).
  const r = await scram(`n,,n=${"u".repeat(1023)},r=abc`);
  assert.equal(r.kind, "challenge");
});

Deno.test("key derivation leaves the event loop free", async () => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  try {
    // Some 50 ms of PBKDF2: a derivation on the event loop would let no timer run meanwhile.
    await deriveCredentials("pencil", 200_000);
  } finally {
    clearInterval(timer);
  }
  assert.ok(ticks > 0, "timers waited for the whole derivation");
});
