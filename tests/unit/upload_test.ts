// HTTP File Upload's pieces alone: slot tokens (signed, bound to every field, refused when
// tampered with or made with another secret), byte ranges, names and media types, reading a body
// in chunks (exact sizes, too long, too short, a failing writer), and the configuration's checks.
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { newId, SlotSigner } from "../../src/upload/slot.ts";
import { parseRange } from "../../src/upload/ranges.ts";
import {
  contentDisposition,
  contentTypeProblem,
  filenameProblem,
  sameType,
  typeAllowed,
} from "../../src/upload/names.ts";
import { CHUNK_BYTES, PutRefused, readChunks } from "../../src/upload/file_store.ts";
import { DiskFileStore } from "../../src/upload/disk_store.ts";
import { ConfigError, parseConfig } from "../../src/config/load.ts";

const secret = new Uint8Array(32).fill(7);
const slot = {
  id: newId(),
  owner: "alice@example.org",
  filename: "très cool.jpg",
  size: 12345,
  type: "image/jpeg",
  expires: 1_800_000_000_000,
};

Deno.test("slot tokens: verified as signed, refused when any byte or the secret differs", () => {
  const signer = new SlotSigner(secret);
  assert.match(slot.id, /^[A-Za-z0-9_-]{22}$/);
  const token = signer.sign(slot);
  assert.deepEqual(signer.verify(token), slot);
  assert.equal(new SlotSigner(new Uint8Array(32).fill(8)).verify(token), null, "another cluster");
  // Each field is bound: a token made for other values does not verify with this one's MAC.
  const [payload, mac] = token.split(".");
  for (const field of ["id", "owner", "filename", "size", "type", "expires"] as const) {
    const other = signer.sign({
      ...slot,
      [field]: field === "size" || field === "expires" ? 1 : "x",
    });
    assert.equal(signer.verify(`${other.split(".")[0]}.${mac}`), null, field);
  }
  for (let i = 0; i < token.length; i += 7) {
    const c = token[i] === "A" ? "B" : "A";
    if (token[i] === ".") continue;
    assert.equal(signer.verify(token.slice(0, i) + c + token.slice(i + 1)), null, `byte ${i}`);
  }
  for (const bad of ["", ".", payload, `${payload}.`, `.${mac}`, "x".repeat(5000), "a.b.c"]) {
    assert.equal(signer.verify(bad), null, bad);
  }
});

Deno.test("byte ranges: one range, suffixes, open ends, unsatisfiable and ignored ones", () => {
  const size = 1000;
  assert.equal(parseRange(null, size), "whole");
  assert.deepEqual(parseRange("bytes=0-0", size), { start: 0, end: 0 });
  assert.deepEqual(parseRange("bytes=10-", size), { start: 10, end: 999 });
  assert.deepEqual(parseRange("bytes=-100", size), { start: 900, end: 999 });
  assert.deepEqual(parseRange("bytes=-5000", size), { start: 0, end: 999 });
  assert.deepEqual(parseRange("bytes=990-5000", size), { start: 990, end: 999 });
  assert.deepEqual(parseRange("bytes=5-99999999999999999999", size), { start: 5, end: 999 });
  assert.deepEqual(parseRange(" Bytes = 1 - 2 ", size), { start: 1, end: 2 });
  for (const h of ["bytes=1000-", "bytes=1000-2000", "bytes=-0", "bytes=99999999999999999999-"]) {
    assert.equal(parseRange(h, size), "unsatisfiable", h);
  }
  assert.equal(parseRange("bytes=0-", 0), "unsatisfiable", "an empty file has no bytes");
  for (const h of ["bytes=0-1,5-6", "items=0-1", "bytes=5-1", "bytes=-", "bytes=a-b", "0-1"]) {
    assert.equal(parseRange(h, size), "whole", h);
  }
});

Deno.test("names and types: one path segment, media types, allowed types, disposition", () => {
  for (const ok of ["a.jpg", "très cool.jpg", ".hidden", "a..b", "x".repeat(255), "日本.txt"]) {
    assert.equal(filenameProblem(ok), undefined, ok);
  }
  for (const bad of [undefined, "", "a/b", ".", "..", "a\nb", "a\u007fb", "x".repeat(256)]) {
    assert.ok(filenameProblem(bad), String(bad));
  }
  assert.ok(filenameProblem("é".repeat(128)), "over 255 bytes of UTF-8");
  for (
    const ok of ["image/png", "text/plain; charset=utf-8", 'a/b;x="y z"', "application/vnd.a+json"]
  ) {
    assert.equal(contentTypeProblem(ok), undefined, ok);
  }
  for (const bad of ["image", "image/", "/png", "image/png;", "a b/c", "a/b; c", "a/b\r\nx: y"]) {
    assert.ok(contentTypeProblem(bad), bad);
  }
  assert.ok(typeAllowed("application/pdf", []));
  assert.ok(typeAllowed("IMAGE/PNG", ["image/*"]));
  assert.ok(typeAllowed("text/plain; charset=utf-8", ["text/plain"]));
  assert.ok(!typeAllowed("text/html", ["text/plain", "image/*"]));
  assert.ok(!typeAllowed("imagex/png", ["image/*"]));
  assert.ok(sameType("Text/Plain ; charset=utf-8", "text/plain;charset=UTF-8"));
  assert.ok(!sameType("text/plain", "text/html"));
  assert.equal(
    contentDisposition("image/jpeg", 'a "b" (1).jpg'),
    `inline; filename="a _b_ (1).jpg"; filename*=UTF-8''a%20%22b%22%20%281%29.jpg`,
  );
  assert.match(contentDisposition("image/svg+xml", "x.svg"), /^attachment;/);
  assert.match(contentDisposition("text/html", "x.html"), /^attachment;/);
  assert.match(contentDisposition("text/plain; charset=utf-8", "x.txt"), /^inline;/);
});

/** A body of these pieces. */
function body(pieces: Uint8Array[], fail = false): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i < pieces.length) return c.enqueue(pieces[i++]);
      if (fail) c.error(new Error("connection reset"));
      else c.close();
    },
  });
}

Deno.test("reading a body in chunks: exact sizes, at the writers' pace, too long and too short", async () => {
  const size = 2 * CHUNK_BYTES + 5;
  const data = Uint8Array.from({ length: size }, (_, i) => i * 7);
  const pieces = [data.subarray(0, 1000), data.subarray(1000, 200_000), data.subarray(200_000)];
  for (const writers of [1, 2]) {
    const seen: number[] = [];
    const copies: Uint8Array[] = [];
    let busy = 0;
    let most = 0;
    await readChunks(body(pieces), size, async (chunk) => {
      busy++;
      most = Math.max(most, busy);
      seen.push(chunk.length);
      copies.push(chunk.slice());
      await new Promise((r) => setTimeout(r, 5));
      busy--;
    }, writers);
    assert.deepEqual(seen, [CHUNK_BYTES, CHUNK_BYTES, 5]);
    const copy = new Uint8Array(size);
    let at = 0;
    for (const c of copies) copy.set(c, (at += c.length) - c.length);
    assert.deepEqual(copy, data);
    assert.equal(most, writers, "never more writes under way than allowed");
  }
  const refused = async (stream: ReadableStream<Uint8Array>, n: number) => {
    try {
      await readChunks(stream, n, () => Promise.resolve());
      return "none";
    } catch (e) {
      return e instanceof PutRefused ? e.reason : String(e);
    }
  };
  assert.equal(await refused(body(pieces), size - 1), "long");
  assert.equal(await refused(body(pieces), size + 1), "short");
  assert.equal(await refused(body(pieces, true), size), "short", "broken off");
  assert.equal(await refused(body([]), 0), "none");
  await assert.rejects(
    readChunks(body(pieces), size, () => Promise.reject(new Error("disk full")), 2),
    /disk full/,
  );
});

Deno.test("configuration: the upload domain is claimed once, needs an http listener, types checked", () => {
  const problems = (config: unknown) => {
    try {
      parseConfig(stringify(config), "p.yaml");
      return [];
    } catch (e) {
      if (e instanceof ConfigError) {
        return e.problems.map((p) => p.replace(/^p\.yaml:\d+:\d+: /, ""));
      }
      throw e;
    }
  };
  const http = [{ type: "http", port: 0 }];
  assert.deepEqual(
    problems({ hosts: [{ domain: "a.org", upload: { domain: "up.a.org" } }], listeners: http }),
    [],
  );
  assert.deepEqual(
    problems({
      hosts: [{ domain: "a.org", upload: { domain: "up.a.org" } }],
      listeners: [{ type: "c2s", port: 0 }],
    }),
    ["hosts[0].upload: needs a listener of type http (files are uploaded over HTTP)"],
  );
  assert.deepEqual(
    problems({
      hosts: [{ domain: "a.org", muc: { domain: "x.a.org" }, upload: { domain: "X.a.org" } }],
      listeners: http,
    }),
    ['hosts[0].upload.domain: "x.a.org" is already served'],
  );
  assert.deepEqual(
    problems({
      hosts: [{
        domain: "a.org",
        upload: { domain: "up.a.org", allowed_types: ["image/*", "png", "*/*"] },
      }],
      listeners: http,
    }),
    [
      "hosts[0].upload.allowed_types[1]: expected type/subtype or type/*",
      "hosts[0].upload.allowed_types[2]: expected type/subtype or type/*",
    ],
  );
});

Deno.test("retention removes the files of its own host's accounts only (disk store)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const files = new DiskFileStore(dir);
    const put = (id: string, owner: string, at: number) =>
      files.put(
        { id, owner, filename: "f.txt", type: "text/plain", size: 3, at },
        new Blob([new Uint8Array([1, 2, 3])]).stream(),
        1000,
      );
    const a = newId(), b = newId(), c = newId();
    await put(a, "alice@one.example", 1000);
    await put(b, "bob@two.example", 1000);
    await put(c, "carol@one.example", 5000);
    // Everything is past this retention; only one.example's files are its business.
    assert.equal(await files.expire("one.example", Date.now() + 60_000, 10), 2);
    assert.equal(await files.info(a), null);
    assert.equal(await files.info(c), null);
    assert.ok(await files.info(b), "another host's file stays");
    await files.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
