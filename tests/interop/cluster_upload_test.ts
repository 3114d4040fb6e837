// HTTP File Upload (XEP-0363) on a cluster of three `parley serve` processes sharing PostgreSQL
// (tests/helpers/cluster.ts), with slixmpp's xep_0363 plugin (tests/interop/upload_client.py):
// - alice on n1 finds the service (disco#items, disco#info), uploads a picture and sends its URL
//   (body and XEP-0066 out-of-band URL) to bob on n2 and carol on n3, whose clients download it
//   from their own node's http listener: the same bytes (SHA-256) and type;
// - after `kill -9` of n1, the file is still served by n2 and n3 byte for byte;
// - ranges of the picture across the store's chunks, from n3;
// - on two other nodes, a 200 MiB upload to n1 streams into the shared store while n1's heap (its
//   /metrics) and resident memory (/proc) stay within bounds below the file's size, sampled as it
//   streams, and n2 serves it back byte for byte with its own memory bounded the same way.
import assert from "node:assert/strict";
import { join } from "node:path";
import { C2S_LISTENER, startCluster, type TestCluster } from "../helpers/cluster.ts";
import { lines } from "../helpers/lines.ts";
import {
  bytes,
  generated,
  generatedSha256,
  putStream,
  sha256,
  sha256Of,
  slot,
  type SlotUrls,
} from "../helpers/upload.ts";
import { serverTest } from "../helpers/server.ts";

const UPLOAD = "upload.localhost";
const SCRIPT = new URL("./upload_client.py", import.meta.url).pathname;
const MiB = 1 << 20;
const BIG = 200 * MiB;
/** What each node streams each way before the measure. */
const WARM = 64 * MiB;
/**
 * How much a node's V8 heap in use may grow while it streams BIG bytes one way: a file held in
 * strings or arrays of pieces would take its size.
 */
const HEAP_BOUND = 48 * MiB;
/**
 * How much its resident memory may grow meanwhile, once the node has streamed WARM bytes each
 * way: network buffers live outside the heap and are freed by V8's collections every few tens of
 * MiB allocated, and the allocator keeps what it got (a fresh node's RSS rises by 100–150 MiB
 * whatever the file's size; after the warm-up, measured 2–20 MiB more for 200 MiB). A file held
 * whole would take its 200 MiB more.
 */
const RSS_BOUND = 64 * MiB;

/** Each node's http listener, once started: [c2s port, http port] in its addresses. */
function httpBase(c: TestCluster, i: number): string {
  return `http://${c.nodes[i].host}:${c.nodes[i].process!.ports[1]}`;
}

interface PyResult {
  event: string;
  [k: string]: unknown;
}

/** Runs upload_client.py as `user` on node i: its output lines as they come, and its end. */
function py(c: TestCluster, i: number, user: string, args: string[]) {
  const child = new Deno.Command("/usr/bin/python3", {
    args: [
      SCRIPT,
      "--jid",
      `${user}@localhost/py`,
      "--password",
      "secret",
      "--host",
      c.nodes[i].host,
      "--port",
      String(c.nodes[i].port),
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out: PyResult[] = [];
  let err = "";
  const read = (async () => {
    for await (const line of lines(child.stdout)) out.push(JSON.parse(line));
  })();
  const errs = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      err = (err + chunk).slice(-4000);
    }
  })();
  const ended = Promise.all([child.status, read, errs]).then(([s]) => s);
  return {
    out,
    /** The first line with this event, waiting for it (or the process's end). */
    async event(name: string): Promise<PyResult> {
      for (;;) {
        const found = out.find((o) => o.event === name || o.event === "error");
        if (found) {
          if (found.event === "error") throw new Error(`${user}: ${found.what}\n${err}`);
          return found;
        }
        const done = await Promise.race([ended, new Promise((r) => setTimeout(r, 20, null))]);
        if (done && !out.find((o) => o.event === name)) {
          throw new Error(`${user} ended without ${name}: ${JSON.stringify(out)}\n${err}`);
        }
      }
    },
    async stop() {
      try {
        child.kill("SIGKILL");
      } catch { /* ended */ }
      await ended;
    },
  };
}

/** Resident memory of a process, bytes (/proc). */
async function rss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) * 1024;
}

/** The V8 heap in use of the node whose http listener is at `base` (its /metrics). */
async function heapUsed(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Number(/^deno_heap_used_bytes (\S+)$/m.exec(text)![1]);
}

interface Growth<T> {
  value: T;
  /** The most the resident memory and the heap in use rose above their values before. */
  rss: number;
  heap: number;
}

/** Samples node i's resident memory and heap until `work` settles. */
async function growthDuring<T>(c: TestCluster, i: number, work: Promise<T>): Promise<Growth<T>> {
  const pid = c.nodes[i].process!.child.pid;
  const base = httpBase(c, i);
  const [rss0, heap0] = [await rss(pid), await heapUsed(base)];
  let [rssMost, heapMost] = [rss0, heap0];
  let done = false;
  const sampling = (async () => {
    while (!done) {
      rssMost = Math.max(rssMost, await rss(pid));
      heapMost = Math.max(heapMost, await heapUsed(base));
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  try {
    return { value: await work, rss: rssMost - rss0, heap: heapMost - heap0 };
  } finally {
    done = true;
    await sampling;
  }
}

const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;

serverTest(
  "upload on n1 (slixmpp), download on n2 and n3, and after kill -9 of n1",
  async () => {
    const c = await startCluster(3, {
      overrides: {
        hosts: [{
          domain: "localhost",
          upload: { domain: UPLOAD },
        }],
        listeners: [C2S_LISTENER, { type: "http", bind: "{node_host}", port: 0 }],
      },
    });
    const dir = await Deno.makeTempDir({ prefix: "parley-upload-" });
    const clients: ReturnType<typeof py>[] = [];
    try {
      await c.formed();
      for (const u of ["alice", "bob", "carol"]) await c.addUser(u);
      const picture = bytes(3 * MiB + 12345, 42);
      const file = join(dir, "holiday photo.png");
      await Deno.writeFile(file, picture);

      const bob = py(c, 1, "bob", ["receive", "--base", httpBase(c, 1)]);
      const carol = py(c, 2, "carol", ["receive", "--base", httpBase(c, 2)]);
      clients.push(bob, carol);
      await Promise.all([bob.event("ready"), carol.event("ready")]);
      const alice = py(c, 0, "alice", [
        "send",
        file,
        "--to",
        "bob@localhost",
        "carol@localhost",
        "--type",
        "image/png",
      ]);
      clients.push(alice);
      const sent = await alice.event("sent");
      assert.equal(
        sent.max_file_size,
        String(100 * MiB),
        "max-file-size from disco#info (the default)",
      );
      const url = String(sent.url);
      assert.ok(url.startsWith(`${httpBase(c, 0)}/upload/${UPLOAD}/`), url);
      assert.ok(url.endsWith("/holiday%20photo.png"), url);
      for (const [who, at] of [[bob, 1], [carol, 2]] as const) {
        const got = await who.event("received");
        assert.equal(got.status, 200);
        assert.ok(String(got.url).startsWith(httpBase(c, at)), `downloaded from n${at + 1}`);
        assert.equal(got.sha256, sha256(picture));
        assert.equal(got.bytes, picture.length);
        assert.equal(got.content_type, "image/png");
      }

      // The node that received it dies: the file is in the shared store.
      await c.kill(0);
      const path = new URL(url).pathname;
      for (const i of [1, 2]) {
        const res = await fetch(httpBase(c, i) + path);
        assert.equal(res.status, 200, `n${i + 1} after n1's death`);
        assert.equal((await sha256Of(res)).sha256, sha256(picture));
      }

      // Ranges across chunks (128 KiB each), from the shared store.
      for (
        const [start, end] of [[0, 0], [131_000, 263_000], [
          picture.length - 10,
          picture.length - 1,
        ]]
      ) {
        const res = await fetch(httpBase(c, 2) + path, {
          headers: { range: `bytes=${start}-${end}` },
        });
        assert.equal(res.status, 206);
        assert.deepEqual(new Uint8Array(await res.arrayBuffer()), picture.subarray(start, end + 1));
      }
    } finally {
      await Promise.all(clients.map((p) => p.stop()));
      await c.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
);

serverTest(
  "200 MiB streamed into the shared store and back, each node's memory bounded",
  async () => {
    const c = await startCluster(2, {
      overrides: {
        hosts: [{ domain: "localhost", upload: { domain: UPLOAD, max_file_size: 256 * MiB } }],
        listeners: [C2S_LISTENER, { type: "http", bind: "{node_host}", port: 0 }],
      },
    });
    try {
      await c.formed();
      await c.addUser("alice");
      const client = await c.login(0, "alice");
      // A slot is used once, whichever node the second PUT reaches.
      const once = await slot(client, UPLOAD, "once.txt", 5, "text/plain");
      const twice = (at: number) =>
        fetch(httpBase(c, at) + new URL(once.put).pathname, {
          method: "PUT",
          body: "hello",
          headers: { ...once.headers, "content-type": "text/plain" },
        }).then((r) => (r.body?.cancel(), r.status));
      assert.equal(await twice(0), 201);
      assert.equal(await twice(1), 409);
      const warm = await slot(client, UPLOAD, "warm.bin", WARM, "application/octet-stream");
      const big = await slot(client, UPLOAD, "big.bin", BIG, "application/octet-stream");
      client.close();
      // First a smaller file each way: what a node keeps of streaming anything (its allocator's
      // arenas, V8's grown spaces) is there before the measure.
      const headers = (s: SlotUrls) => ({
        ...s.headers,
        "content-type": "application/octet-stream",
      });
      assert.equal(
        (await putStream(warm.put, headers(warm), WARM, generated(WARM, 4))).status,
        201,
      );
      await fetch(httpBase(c, 1) + new URL(warm.get).pathname).then(sha256Of);
      // 200 MiB into n1, never whole in its memory; back out of n2, the same.
      const up = await growthDuring(
        c,
        0,
        putStream(big.put, headers(big), BIG, generated(BIG, 5)),
      );
      assert.equal(up.value.status, 201, up.value.text);
      const down = await growthDuring(
        c,
        1,
        fetch(httpBase(c, 1) + new URL(big.get).pathname).then(sha256Of),
      );
      assert.deepEqual(down.value, { sha256: generatedSha256(BIG, 5), bytes: BIG });
      const figures = `storing: n1 RSS +${mib(up.rss)}, heap +${mib(up.heap)}; ` +
        `serving: n2 RSS +${mib(down.rss)}, heap +${mib(down.heap)}`;
      console.log(`200 MiB ${figures}`);
      for (const g of [up, down]) assert.ok(g.heap < HEAP_BOUND && g.rss < RSS_BOUND, figures);
    } finally {
      await c.stop();
    }
  },
);
