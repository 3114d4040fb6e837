import assert from "node:assert/strict";
import { parseJid } from "../../src/jid/jid.ts";

Deno.test("JIDs are split, prepared and compared per RFC 7622", () => {
  const j = parseJid("Juliet@Example.COM/Balcony")!;
  assert.equal(j.local, "juliet");
  assert.equal(j.domain, "example.com");
  assert.equal(j.resource, "Balcony", "resources keep their case");
  assert.equal(j.bare, "juliet@example.com");
  assert.equal(j.full, "juliet@example.com/Balcony");
  assert.equal(parseJid("example.com.")!.full, "example.com");
  assert.equal(parseJid("ＪＵＬＩＥＴ@example.com")!.local, "juliet", "fullwidth mapped");
  assert.equal(parseJid("Σ@example.com")!.local, "σ");
  assert.equal(parseJid("caf\u0065\u0301@example.com")!.local, "caf\u00e9", "NFC");
  assert.equal(parseJid("a@b/with/slash")!.resource, "with/slash");
  assert.equal(parseJid("a@b/x\u00a0y")!.resource, "x y", "non-ASCII space mapped");
  assert.equal(parseJid("[::1]")!.domain, "[::1]");
  assert.equal(parseJid("münchen.de")!.domain, "münchen.de");
});

Deno.test("invalid JIDs are rejected", () => {
  for (
    const bad of [
      "",
      "@example.com",
      "a@",
      "a@b/",
      "a b@example.com",
      'a"@example.com',
      "a:b@example.com",
      "a@b@c",
      "a@exa mple.com",
      "a@b/\u0007",
      "x".repeat(1024) + "@example.com",
      "a@" + "d".repeat(64) + ".com",
    ]
  ) assert.equal(parseJid(bad), null, JSON.stringify(bad));
});
