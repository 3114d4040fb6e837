// HTTP File Upload (XEP-0363) on one node (files under data_dir/uploads), over raw XMPP and
// fetch: discovery, a slot, the PUT and the file read back byte for byte (GET, HEAD, ranges, the
// headers that keep an uploaded page inert), CORS, nothing listed; each limit's error (size,
// type, slots per minute, quota, requests per address), every refused PUT (no, forged, expired,
// foreign or used slot; Content-Length and Content-Type that differ; a body that breaks off),
// account removal, `parley upload list|purge`, retention, /metrics, and a slow upload outliving
// the listener's deadline for a request.
import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import { stringify } from "yaml";
import { RawClient } from "../helpers/raw_client.ts";
import { serverTest, startServer, type TestServer, type Tree } from "../helpers/server.ts";
import { parley } from "../helpers/process.ts";
import { eventually, until } from "../helpers/until.ts";
import {
  bytes,
  NS_UPLOAD,
  put,
  requestSlot,
  sha256,
  sha256Of,
  slot,
  slotOf,
  type SlotUrls,
  uploadError,
} from "../helpers/upload.ts";
import { uploadPlugin } from "../../src/server/services.ts";
import type { UploadService } from "../../src/upload/service.ts";
import { NS } from "../../src/xml/ns.ts";
import { deriveCredentials } from "../../src/sasl/scram_keys.ts";

const UPLOAD = "upload.localhost";

/** A server with an upload service (`upload` merged into its `upload:`), alice and bob. */
async function uploadServer(upload: Tree = {}, more: Tree = {}): Promise<TestServer> {
  const t = await startServer({
    hosts: [{ domain: "localhost", registration: true, upload: { domain: UPLOAD, ...upload } }],
    ...more,
  });
  await t.addUser("alice");
  await t.addUser("bob");
  return t;
}

function service(t: TestServer): UploadService {
  return t.server.services.of(uploadPlugin).get(UPLOAD)!;
}

/** Runs `fn` with a server and alice logged in, both gone after. */
function uploadTest(
  name: string,
  upload: Tree,
  fn: (t: TestServer, alice: RawClient) => Promise<void>,
  more: Tree = {},
): void {
  serverTest(name, async () => {
    const t = await uploadServer(upload, more);
    const alice = await RawClient.login(t.port, "alice", "secret", {
      starttls: false,
      mech: "PLAIN",
    });
    try {
      await fn(t, alice);
    } finally {
      alice.close();
      await t.stop();
    }
  });
}

/** Uploads `body` through a new slot; the slot. */
async function uploaded(
  c: RawClient,
  name: string,
  body: Uint8Array<ArrayBuffer>,
  type = "application/octet-stream",
): Promise<SlotUrls> {
  const s = await slot(c, UPLOAD, name, body.length, type);
  const res = await put(s, body, type);
  assert.equal(res.status, 201, await res.text());
  return s;
}

uploadTest("discovery: the service in disco#items, its identity, feature and max-file-size", {
  max_file_size: 200,
}, async (_t, alice) => {
  const items = await alice.iq("get", `<query xmlns='${NS.discoItems}'/>`, "localhost");
  assert.ok(
    items.child("query")!.elements("item").some((i) => i.attrs.jid === UPLOAD),
    `${items}`,
  );
  const info = (await alice.iq("get", `<query xmlns='${NS.discoInfo}'/>`, UPLOAD)).child("query")!;
  const id = info.child("identity")!;
  assert.deepEqual([id.attrs.category, id.attrs.type], ["store", "file"]);
  const features = info.elements("feature").map((f) => f.attrs.var);
  assert.ok(features.includes(NS_UPLOAD));
  const form = info.child("x", NS.dataForms)!;
  const field = (v: string) =>
    form.elements("field").find((f) => f.attrs.var === v)?.childText("value");
  assert.equal(field("FORM_TYPE"), NS_UPLOAD);
  assert.equal(field("max-file-size"), "200");
});

uploadTest(
  "a slot, the PUT, and the file back byte for byte with its headers",
  {},
  async (t, alice) => {
    const body = bytes(300_000, 7);
    const s = await slot(alice, UPLOAD, "très cool.jpg", body.length, "image/jpeg");
    assert.equal(s.put, s.get, "one URL for both, the permission in the header");
    assert.match(
      s.get,
      new RegExp(
        `^http://127\\.0\\.0\\.1:${t.httpPort}/upload/${UPLOAD}/[\\w-]{22}/tr%C3%A8s%20cool\\.jpg$`,
      ),
    );
    assert.match(s.headers.Authorization, /^Bearer \S+$/);
    const res = await put(s, body, "image/jpeg");
    assert.equal(res.status, 201, await res.text());

    const got = await fetch(s.get);
    assert.equal(got.status, 200);
    assert.equal(got.headers.get("content-type"), "image/jpeg");
    assert.equal(got.headers.get("content-length"), String(body.length));
    assert.equal(got.headers.get("accept-ranges"), "bytes");
    assert.match(got.headers.get("cache-control")!, /^public, max-age=\d+, immutable$/);
    assert.equal(got.headers.get("x-content-type-options"), "nosniff");
    assert.match(got.headers.get("content-security-policy")!, /default-src 'none'.*sandbox/);
    assert.equal(
      got.headers.get("content-disposition"),
      `inline; filename="tr_s cool.jpg"; filename*=UTF-8''tr%C3%A8s%20cool.jpg`,
    );
    assert.equal(got.headers.get("access-control-allow-origin"), "*");
    assert.deepEqual(await sha256Of(got), { sha256: sha256(body), bytes: body.length });

    const head = await fetch(s.get, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), String(body.length));
    assert.equal((await head.arrayBuffer()).byteLength, 0);

    // Revalidation: the bytes behind a URL never change.
    const etag = got.headers.get("etag")!;
    const again = await fetch(s.get, { headers: { "if-none-match": etag } });
    assert.equal(again.status, 304);
    await again.body?.cancel();
  },
);

uploadTest("an empty file: stored, served, no range of it", {}, async (_t, alice) => {
  const s = await uploaded(alice, "empty.txt", new Uint8Array(0), "text/plain");
  const got = await fetch(s.get);
  assert.equal(got.status, 200);
  assert.equal(got.headers.get("content-length"), "0");
  assert.equal((await got.arrayBuffer()).byteLength, 0);
  const ranged = await fetch(s.get, { headers: { range: "bytes=0-" } });
  assert.equal(ranged.status, 416);
  await ranged.body?.cancel();
});

uploadTest(
  "single byte ranges: 206 with Content-Range, 416 past the end",
  {},
  async (_t, alice) => {
    // Across the store's 256 KiB chunks.
    const body = bytes(600_000, 3);
    const s = await uploaded(alice, "data.bin", body);
    const ranged = async (range: string, start: number, end: number) => {
      const r = await fetch(s.get, { headers: { range } });
      assert.equal(r.status, 206, range);
      assert.equal(r.headers.get("content-range"), `bytes ${start}-${end}/${body.length}`, range);
      assert.equal(r.headers.get("content-length"), String(end - start + 1), range);
      assert.deepEqual(new Uint8Array(await r.arrayBuffer()), body.subarray(start, end + 1), range);
    };
    await ranged("bytes=0-0", 0, 0);
    await ranged("bytes=262140-262150", 262140, 262150);
    await ranged("bytes=300000-", 300000, 599999);
    await ranged("bytes=-1000", 599000, 599999);
    await ranged("bytes=599990-700000", 599990, 599999);
    const past = await fetch(s.get, { headers: { range: "bytes=600000-" } });
    assert.equal(past.status, 416);
    assert.equal(past.headers.get("content-range"), `bytes */${body.length}`);
    await past.body?.cancel();
    // Several ranges, or a malformed one: the whole file.
    const several = await fetch(s.get, { headers: { range: "bytes=0-1,5-6" } });
    assert.equal(several.status, 200);
    assert.equal((await sha256Of(several)).sha256, sha256(body));
  },
);

uploadTest(
  "nothing is listed; unknown files and other methods are refused",
  {},
  async (t, alice) => {
    const s = await uploaded(alice, "a.txt", bytes(10), "text/plain");
    const base = `http://127.0.0.1:${t.httpPort}`;
    const id = new URL(s.get).pathname.split("/")[3];
    for (
      const path of [
        "/upload/",
        `/upload/${UPLOAD}/`,
        `/upload/${UPLOAD}/${id}`,
        `/upload/${UPLOAD}/${id}/`,
        `/upload/${UPLOAD}/AAAAAAAAAAAAAAAAAAAAAA/a.txt`,
        `/upload/other.localhost/${id}/a.txt`,
      ]
    ) {
      const r = await fetch(base + path);
      assert.equal(r.status, 404, path);
      await r.body?.cancel();
    }
    const del = await fetch(s.get, { method: "DELETE" });
    assert.equal(del.status, 405);
    assert.match(del.headers.get("allow")!, /PUT/);
    await del.body?.cancel();
  },
);

uploadTest("CORS: a preflight for the PUT, and only allowed origins", {}, async (_t, alice) => {
  const body = bytes(100);
  const s = await slot(alice, UPLOAD, "x.png", body.length, "image/png");
  const pre = await fetch(s.put, {
    method: "OPTIONS",
    headers: {
      origin: "https://app.example",
      "access-control-request-method": "PUT",
      "access-control-request-headers": "authorization, content-type",
    },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), "https://app.example");
  assert.match(pre.headers.get("access-control-allow-methods")!, /PUT/);
  assert.match(pre.headers.get("access-control-allow-headers")!, /authorization/);
  assert.match(pre.headers.get("access-control-allow-headers")!, /content-type/);
  const up = await put(s, body, "image/png", { origin: "https://app.example" });
  assert.equal(up.status, 201);
  assert.equal(up.headers.get("access-control-allow-origin"), "https://app.example");
  const other = await fetch(s.get, { headers: { origin: "https://evil.example" } });
  assert.equal(other.status, 403);
  await other.body?.cancel();
  const plain = await fetch(s.get);
  assert.equal(plain.status, 200, "no Origin: not a page");
  await plain.body?.cancel();
}, { http: { allowed_origins: ["https://app.example"] } });

uploadTest(
  "slot errors: size, malformed requests, types not allowed, strangers",
  {},
  async (t, alice) => {
    const big = uploadError(await requestSlot(alice, UPLOAD, "big.png", 201, "image/png"));
    assert.deepEqual([big.type, big.condition, big.errorType], [
      "error",
      "not-acceptable",
      "modify",
    ]);
    assert.equal(big.app?.name, "file-too-large");
    assert.equal(big.app?.childText("max-file-size"), "200");

    for (
      const [name, size, type] of [
        ["", 10, "image/png"],
        ["a/b.png", 10, "image/png"],
        ["..", 10, "image/png"],
        ["x".repeat(256), 10, "image/png"],
        ["a.png", "-1", "image/png"],
        ["a.png", "1e3", "image/png"],
        ["a.png", 10, "image png"],
        ["a.png", 10, "image/png; charset"],
      ] as const
    ) {
      const e = uploadError(await requestSlot(alice, UPLOAD, name, size, type));
      assert.deepEqual(
        [e.condition, e.errorType],
        ["bad-request", "modify"],
        `${name} ${size} ${type}`,
      );
    }
    const pdf = uploadError(await requestSlot(alice, UPLOAD, "a.pdf", 10, "application/pdf"));
    assert.deepEqual([pdf.condition, pdf.errorType], ["not-acceptable", "modify"]);
    assert.equal(pdf.app, undefined);
    const none = uploadError(await requestSlot(alice, UPLOAD, "a.bin", 10));
    assert.equal(
      none.condition,
      "not-acceptable",
      "no type: application/octet-stream, not allowed",
    );
    slotOf(await requestSlot(alice, UPLOAD, "a.png", 10, "IMAGE/PNG"));
    slotOf(await requestSlot(alice, UPLOAD, "a.txt", 10, "text/plain; charset=utf-8"));

    // An account of another host of this server may not use this host's service.
    await t.server.store.createAccount(
      "carol",
      "other.localhost",
      (await deriveCredentials("pw", 64))!,
    );
    const carol = await RawClient.connect(t.port);
    await carol.open("other.localhost");
    assert.ok(await carol.plain("carol", "pw"));
    await carol.open("other.localhost");
    await carol.bind();
    const stranger = uploadError(await requestSlot(carol, UPLOAD, "a.png", 10, "image/png"));
    carol.close();
    assert.deepEqual([stranger.condition, stranger.errorType], ["not-allowed", "cancel"]);
  },
  {
    hosts: [
      {
        domain: "localhost",
        upload: { domain: UPLOAD, max_file_size: 200, allowed_types: ["image/*", "text/plain"] },
      },
      { domain: "other.localhost" },
    ],
  },
);

uploadTest(
  "slots per minute: resource-constraint with a retry stamp",
  { slots_per_minute: 3 },
  async (_t, alice) => {
    for (let i = 0; i < 3; i++) slotOf(await requestSlot(alice, UPLOAD, `f${i}`, 10));
    const before = Date.now();
    const e = uploadError(await requestSlot(alice, UPLOAD, "f4", 10));
    assert.deepEqual([e.condition, e.errorType], ["resource-constraint", "wait"]);
    assert.equal(e.app?.name, "retry");
    const stamp = Date.parse(e.app!.attrs.stamp!);
    assert.ok(stamp > before && stamp <= before + 21_000, `retry at ${e.app!.attrs.stamp}`);
  },
);

uploadTest("quota: checked at the slot request and again at the PUT", {
  quota_per_user: 1000,
  retention: "1h",
}, async (t, alice) => {
  const first = await uploaded(alice, "a", bytes(600));
  // Two slots fit one at a time; once one is stored the other no longer does.
  const s1 = await slot(alice, UPLOAD, "b", 300);
  const s2 = await slot(alice, UPLOAD, "c", 300);
  assert.equal((await put(s1, bytes(300))).status, 201);
  const over = await put(s2, bytes(300));
  assert.equal(over.status, 413);
  assert.match(await over.text(), /quota/);
  const e = uploadError(await requestSlot(alice, UPLOAD, "d", 200));
  assert.deepEqual([e.condition, e.errorType], ["resource-constraint", "wait"]);
  assert.match(e.text!, /quota/);
  // Freed when the first file leaves with retention.
  const at = (await service(t).files.list("alice@localhost"))[0].at;
  assert.equal(Date.parse(e.app!.attrs.stamp!), Math.ceil((at + 3600_000) / 1000) * 1000);
  // The max advertised is no more than the quota.
  const big = uploadError(await requestSlot(alice, UPLOAD, "e", 1001));
  assert.equal(big.app?.childText("max-file-size"), "1000");
  // Another account has its own quota.
  const bob = await RawClient.login(t.port, "bob", "secret", { starttls: false, mech: "PLAIN" });
  slotOf(await requestSlot(bob, UPLOAD, "f", 1000));
  bob.close();
  assert.equal((await fetch(first.get)).status, 200);
});

uploadTest(
  "refused PUTs: no, forged, foreign or used slot; sizes and type that differ",
  {},
  async (t, alice) => {
    const body = bytes(1000, 5);
    const s = await slot(alice, UPLOAD, "f.txt", body.length, "text/plain");
    const status = async (res: Promise<Response>) => {
      const r = await res;
      await r.body?.cancel();
      return r.status;
    };
    assert.equal(
      await status(
        fetch(s.put, { method: "PUT", body, headers: { "content-type": "text/plain" } }),
      ),
      403,
    );
    const [, token] = s.headers.Authorization.split(" ");
    const [payload, mac] = token.split(".");
    const forged = payload.slice(0, -2) + (payload.at(-2) === "A" ? "B" : "A") + payload.at(-1) +
      "." + mac;
    assert.equal(
      await status(
        put({ ...s, headers: { Authorization: `Bearer ${forged}` } }, body, "text/plain"),
      ),
      403,
    );
    // The token of another slot (another id in the URL).
    const other = await slot(alice, UPLOAD, "g.txt", body.length, "text/plain");
    assert.equal(await status(put({ ...s, headers: other.headers }, body, "text/plain")), 403);
    assert.equal(await status(put(s, bytes(1001), "text/plain")), 413, "longer than the slot");
    assert.equal(await status(put(s, bytes(999), "text/plain")), 400, "shorter than the slot");
    assert.equal(await status(put(s, body, "text/html")), 415, "another type");
    // Without Content-Length (chunked).
    const chunked = new ReadableStream({ start: (c) => (c.enqueue(body), c.close()) });
    assert.equal(await status(put(s, chunked, "text/plain")), 411);
    assert.equal(await status(put(s, body, "TEXT/plain")), 201);
    assert.equal(await status(put(s, body, "text/plain")), 409, "a slot is used once");
    // Nothing of the refused ones was stored.
    assert.deepEqual((await service(t).files.list("alice@localhost")).map((f) => f.filename), [
      "f.txt",
    ]);
  },
);

uploadTest("an expired slot is refused", { slot_timeout: "1ms" }, async (t, alice) => {
  const s = await slot(alice, UPLOAD, "late.txt", 3, "text/plain");
  const given = Date.now();
  await until(() => Date.now() > given + 2, "the slot's millisecond past");
  const r = await put(s, bytes(3), "text/plain");
  assert.equal(r.status, 403);
  assert.match(await r.text(), /expired/);
  assert.equal(await service(t).files.usage("alice@localhost"), 0);
});

uploadTest("a body that breaks off leaves nothing behind", {}, async (t, alice) => {
  const s = await slot(alice, UPLOAD, "cut.bin", 1_000_000);
  const url = new URL(s.put);
  const sock = net.connect(Number(url.port), url.hostname);
  await new Promise((r) => sock.once("connect", r));
  sock.write(
    `PUT ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: ${s.headers.Authorization}\r\n` +
      `Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n`,
  );
  sock.write(bytes(400_000));
  // Wait until the bytes are on their way into the store, then cut the connection.
  await eventually(
    async () => (await service(t).files.usage("alice@localhost")) === 1_000_000,
    "the upload under way",
  );
  sock.destroy();
  await eventually(
    async () => (await service(t).files.usage("alice@localhost")) === 0,
    "the reservation freed",
  );
  const left = [...Deno.readDirSync(join(t.dataDir, "uploads"))].flatMap((
    d,
  ) => [...Deno.readDirSync(join(t.dataDir, "uploads", d.name))]);
  assert.deepEqual(left, [], "no part file left");
  // The slot can still be used.
  const body = bytes(1_000_000, 9);
  assert.equal((await put(s, body)).status, 201);
  assert.equal((await sha256Of(await fetch(s.get))).sha256, sha256(body));
});

uploadTest(
  "a verified upload may take longer than the listener's deadline for a request (Expect: 100-continue)",
  {},
  async (_t, alice) => {
    // The deadline here: bosh.max_wait + timeouts.handshake + 5 s = 7 s from the first byte.
    const pieces = 9;
    const body = bytes(pieces * 1000, 11);
    const s = await slot(alice, UPLOAD, "slow.bin", body.length);
    const url = new URL(s.put);
    const sock = net.connect(Number(url.port), url.hostname);
    const answer = new Promise<string>((resolve) => {
      let text = "";
      sock.on("data", (d: Uint8Array) => text += new TextDecoder().decode(d));
      sock.on("close", () => resolve(text));
      sock.on("error", () => {});
    });
    await new Promise((r) => sock.once("connect", r));
    const started = Date.now();
    sock.write(
      `PUT ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n` +
        `Authorization: ${s.headers.Authorization}\r\nContent-Type: application/octet-stream\r\n` +
        `Content-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
    );
    // As curl does for a large body: the interim answer is not the end of the request.
    // A phone on a slow link: a piece a second, past the deadline.
    for (let i = 0; i < pieces; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      sock.write(body.subarray(i * 1000, (i + 1) * 1000));
    }
    const text = await answer;
    assert.ok(Date.now() - started > 8000);
    assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 201/, text);
    assert.equal((await sha256Of(await fetch(s.get))).sha256, sha256(body));
  },
  { bosh: { max_wait: 1 }, timeouts: { handshake: 1 } },
);

uploadTest(
  "requests per address: 429 with Retry-After",
  { requests_per_minute: 5 },
  async (_t, alice) => {
    const s = await uploaded(alice, "r.txt", bytes(5)); // 1
    for (let i = 0; i < 4; i++) {
      const r = await fetch(s.get);
      assert.equal(r.status, 200);
      await r.body?.cancel();
    }
    const r = await fetch(s.get);
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers.get("retry-after")) >= 1);
    await r.body?.cancel();
  },
);

uploadTest("removing the account removes its files", {}, async (t, alice) => {
  const s = await uploaded(alice, "mine.txt", bytes(50));
  const bob = await RawClient.login(t.port, "bob", "secret", { starttls: false, mech: "PLAIN" });
  const kept = await uploaded(bob, "bobs.txt", bytes(50));
  bob.close();
  const r = await alice.iq("set", `<query xmlns='${NS.register}'><remove/></query>`);
  assert.equal(r.attrs.type, "result");
  await eventually(
    async () => (await fetch(s.get).then((r) => (r.body?.cancel(), r.status))) === 404,
    "alice's file gone",
  );
  assert.equal(await fetch(kept.get).then((r) => (r.body?.cancel(), r.status)), 200);
});

uploadTest(
  "retention removes what is older, keeps the rest",
  { retention: "2s" },
  async (t, alice) => {
    const old = await uploaded(alice, "old.txt", bytes(10));
    const at = (await service(t).files.list("alice@localhost"))[0].at;
    await until(() => Date.now() > at + 2000, "the first file past retention");
    const fresh = await uploaded(alice, "new.txt", bytes(10));
    assert.equal(await service(t).retention!.expireOnce(), 1);
    assert.equal(await fetch(old.get).then((r) => (r.body?.cancel(), r.status)), 404);
    assert.equal(await fetch(fresh.get).then((r) => (r.body?.cancel(), r.status)), 200);
    assert.equal(await service(t).files.usage("alice@localhost"), 10);
  },
);

serverTest("parley upload list and purge, and user del, while the server runs", async () => {
  const t = await uploadServer();
  try {
    const file = join(t.dataDir, "parley.yaml");
    await Deno.writeTextFile(
      file,
      stringify({
        data_dir: t.dataDir,
        hosts: [{ domain: "localhost", upload: { domain: UPLOAD } }],
        listeners: [{ type: "http", bind: "127.0.0.1", port: 0 }],
      }),
    );
    const alice = await RawClient.login(t.port, "alice", "secret", {
      starttls: false,
      mech: "PLAIN",
    });
    const a = await uploaded(alice, "one.txt", bytes(11), "text/plain");
    await uploaded(alice, "two words.png", bytes(22), "image/png");
    alice.close();
    const bob = await RawClient.login(t.port, "bob", "secret", { starttls: false, mech: "PLAIN" });
    const b = await uploaded(bob, "bob.txt", bytes(33));
    bob.close();

    const list = await parley(["upload", "list", "alice@localhost", "--config", file]);
    assert.equal(list.code, 0, list.stderr);
    const lines = list.stdout.trim().split("\n");
    assert.match(lines[0], /^ID\s+STORED\s+SIZE\s+TYPE\s+NAME$/);
    assert.match(lines[1], /\s11\s+text\/plain\s+one\.txt$/);
    assert.match(lines[2], /\s22\s+image\/png\s+two words\.png$/);
    assert.equal(lines[3], "2 files, 33 bytes");
    const json = JSON.parse(
      (await parley(["upload", "list", "alice@localhost", "--json", "--config", file])).stdout,
    );
    assert.deepEqual(json.map((f: { filename: string }) => f.filename), [
      "one.txt",
      "two words.png",
    ]);
    assert.equal(json[0].id, new URL(a.get).pathname.split("/")[3]);

    const purge = await parley(["upload", "purge", "alice@localhost", "--config", file]);
    assert.equal(purge.stdout.trim(), "removed 2 uploaded files of alice@localhost");
    assert.equal(await fetch(a.get).then((r) => (r.body?.cancel(), r.status)), 404);
    const empty = await parley(["upload", "list", "alice@localhost", "--config", file]);
    assert.equal(empty.stdout.trim().split("\n").at(-1), "0 files, 0 bytes");

    const del = await parley(["user", "del", "bob@localhost", "--config", file]);
    assert.equal(
      del.stdout.trim(),
      "deleted bob@localhost, 0 archived messages and 1 uploaded file",
    );
    assert.equal(await fetch(b.get).then((r) => (r.body?.cancel(), r.status)), 404);

    const bad = await parley(["upload", "list", "nobody", "--config", file]);
    assert.equal(bad.code, 2);
  } finally {
    await t.stop();
  }
});

uploadTest("/metrics counts slots, uploads, downloads and bytes", {}, async (t, alice) => {
  const s = await uploaded(alice, "m.bin", bytes(1234));
  await (await fetch(s.get)).arrayBuffer();
  await requestSlot(alice, UPLOAD, "", 1);
  const text = await (await fetch(`http://127.0.0.1:${t.httpPort}/metrics`)).text();
  const value = (line: string) =>
    Number(new RegExp(`^${line.replace(/[{}"]/g, "\\$&")} (\\S+)$`, "m").exec(text)?.[1]);
  assert.equal(value('parley_upload_slots_total{outcome="given"}'), 1);
  assert.equal(value('parley_upload_slots_total{outcome="refused"}'), 1);
  assert.equal(value('parley_uploads_total{outcome="stored"}'), 1);
  assert.equal(value("parley_upload_downloads_total"), 1);
  assert.equal(value('parley_upload_bytes_total{direction="up"}'), 1234);
  assert.equal(value('parley_upload_bytes_total{direction="down"}'), 1234);
});
