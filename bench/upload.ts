// HTTP File Upload (XEP-0363) in `deno task bench` (BENCH_ONLY=upload): upload and download MiB/s
// of one node keeping files on disk (SQLite), then of two nodes keeping them in a throwaway
// PostgreSQL (upload to n1, download from n1 and from n2), next to plain TCP copies of the same
// bytes between the same cores (bench/upload_client.ts), with the CPU the measured processes used,
// the resident memory a node gained while storing, and what PostgreSQL took on disk per byte
// stored. Servers on the server core, the client on the load core; PostgreSQL unpinned.
import { join } from "node:path";
import { parse, stringify } from "yaml";
import postgres from "postgres";
import { parley, serveProcess } from "../tests/helpers/process.ts";
import { sharedPostgres } from "../tests/helpers/postgres.ts";
import { testPki } from "../tests/helpers/cluster_pki.ts";
import { RawClient } from "../tests/helpers/raw_client.ts";
import { slot, type SlotUrls } from "../tests/helpers/upload.ts";
import { lines } from "../tests/helpers/lines.ts";
import { BenchCluster, configure } from "./cluster.ts";
import { cpuSeconds, pinnedGenerator, rssKiB, ulimit } from "./generator.ts";

type Row = (what: string, value: string, yardstick: string) => void;

const MiB = 1 << 20;
/** Bytes of the one-file runs: the default max_file_size. */
const FILE = 100 * MiB;
/** Concurrent uploads of the parallel run, FILE / STREAMS bytes each. */
const STREAMS = 4;
const UPLOAD = "upload.localhost";
const clientScript = new URL("./upload_client.ts", import.meta.url).pathname;
const HTTP = { type: "http", bind: "127.0.0.1", port: 0 };

interface Transfer {
  mibps: number;
  /** Share of one core the measured processes used meanwhile. */
  busy: number;
  /** The most resident memory the first measured process gained meanwhile (KiB). */
  rssGainKiB: number;
}

/** Runs bench/upload_client.ts with `arg` on the load core, measuring `pids` meanwhile. */
async function transfer(arg: Record<string, unknown>, pids: number[]): Promise<Transfer> {
  const child = pinnedGenerator(clientScript, arg).spawn();
  const cpu = () => pids.reduce((n, pid) => n + cpuSeconds(pid), 0);
  let cpu0 = cpu();
  let t0 = performance.now();
  const rss0 = rssKiB(pids[0]);
  let rssMost = rss0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      rssMost = Math.max(rssMost, rssKiB(pids[0]));
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  let result: Record<string, number> = {};
  let busy = 0;
  for await (const text of lines(child.stdout)) {
    const line = JSON.parse(text);
    if (line.phase === "start") {
      cpu0 = cpu();
      t0 = performance.now();
    } else {
      busy = (cpu() - cpu0) / ((performance.now() - t0) / 1000);
      result = line;
    }
  }
  sampling = false;
  await sampler;
  if (!(await child.status).success || !result.mibps) throw new Error("a transfer failed");
  return { mibps: result.mibps, busy, rssGainKiB: rssMost - rss0 };
}

const mibps = (t: Transfer) => t.mibps.toFixed(0);
const pct = (t: Transfer) => ` (server core ${(t.busy * 100).toFixed(0)}% busy)`;

/** Slots for `users` (one each), `size` bytes. */
async function slots(port: number, users: string[], size: number): Promise<SlotUrls[]> {
  const out: SlotUrls[] = [];
  for (const user of users) {
    const c = await RawClient.login(port, user, "secret", { starttls: false, mech: "PLAIN" });
    try {
      out.push(await slot(c, UPLOAD, `${user}.bin`, size, "application/octet-stream"));
    } finally {
      c.close();
    }
  }
  return out;
}

const puts = (s: SlotUrls[]) => s.map((x) => ({ url: x.put, headers: x.headers }));

/** The peer of the plain TCP copies, pinned like the server. */
async function copyPeer(pin: string[]) {
  const argv = [Deno.execPath(), "run", "-A", clientScript, JSON.stringify({ op: "serve" })];
  const child = new Deno.Command(pin.length ? pin[0] : argv[0], {
    args: [...pin.slice(1), ...(pin.length ? argv : argv.slice(1))],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const first = await lines(child.stdout).next();
  return { child, port: JSON.parse(first.value!).port as number };
}

export async function uploadBench(row: Row, iterations: number, serverCpu: string): Promise<void> {
  const pin = serverCpu ? ["taskset", "-c", serverCpu] : [];
  const dir = await Deno.makeTempDir({ prefix: "parley-bench-upload-" });
  const users = Array.from({ length: STREAMS }, (_, i) => `up${i}`);
  try {
    // The plain copies: the ceiling of this machine's loopback between the two cores.
    const peer = await copyPeer(pin);
    const direct = {
      up: await transfer({ op: "tcp-put", port: peer.port, bytes: FILE }, [peer.child.pid]),
      down: await transfer({ op: "tcp-get", port: peer.port, bytes: FILE }, [peer.child.pid]),
    };
    peer.child.kill("SIGTERM");
    await peer.child.status;

    // One node, files on disk.
    const file = join(dir, "single.yaml");
    await Deno.writeTextFile(
      file,
      stringify({
        data_dir: join(dir, "single"),
        log: { level: "info" },
        hosts: [{ domain: "localhost", upload: { domain: UPLOAD } }],
        auth: { scram_iterations: iterations },
        listeners: [
          {
            type: "c2s",
            bind: "127.0.0.1",
            port: 0,
            starttls: "optional",
            plain_without_tls: true,
          },
          HTTP,
        ],
      }),
    );
    for (const u of users) {
      await parley(["user", "add", `${u}@localhost`, "--password", "secret", "--config", file]);
    }
    const one = await serveProcess(file, [...ulimit, ...pin]);
    try {
      const pid = one.child.pid;
      const [s] = await slots(one.ports[0], users.slice(0, 1), FILE);
      const up = await transfer({ op: "put", puts: puts([s]), bytes: FILE }, [pid]);
      const down = await transfer({ op: "get", urls: [s.get], bytes: FILE }, [pid]);
      row(`upload: one 100 MiB file through one node, on disk (MiB/s)` + pct(up), mibps(up), "");
      row(`  download of it (MiB/s)` + pct(down), mibps(down), "");
      row(
        `  plain TCP copies of the same bytes, up / down (MiB/s)`,
        `${mibps(direct.up)} / ${mibps(direct.down)}`,
        "",
      );
    } finally {
      one.child.kill("SIGTERM");
      await one.exited;
    }

    // Two nodes, files in PostgreSQL.
    const pki = await testPki(["n1", "n2"]);
    const url = await (await sharedPostgres()).database();
    const clusterFile = await configure(dir, 2, url, pki.dir, iterations);
    const config = parse(await Deno.readTextFile(clusterFile));
    config.hosts[0].upload = { domain: UPLOAD };
    config.listeners.push(HTTP);
    await Deno.writeTextFile(clusterFile, stringify(config));
    for (const u of users) {
      await parley([
        "user",
        "add",
        `${u}@localhost`,
        "--password",
        "secret",
        "--config",
        clusterFile,
        "--node",
        "n1",
      ]);
    }
    const two = new BenchCluster(dir, clusterFile, pin);
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await two.startAll(2);
      const pids = two.pids();
      const base = (i: number) => `http://127.0.0.1:${two.node(i).process.ports[2]}`;
      const [s] = await slots(two.port(0), users.slice(0, 1), FILE);
      const up = await transfer({ op: "put", puts: puts([s]), bytes: FILE }, pids);
      const path = new URL(s.get).pathname;
      const down1 = await transfer({ op: "get", urls: [base(0) + path], bytes: FILE }, pids);
      const down2 = await transfer({ op: "get", urls: [base(1) + path], bytes: FILE }, [
        pids[1],
        pids[0],
      ]);
      const [size] = await sql`SELECT pg_total_relation_size('upload_chunks') +
        pg_total_relation_size('upload_files') AS bytes`;
      const many = await slots(two.port(0), users, FILE / STREAMS);
      const parallel = await transfer({ op: "put", puts: puts(many), bytes: FILE / STREAMS }, pids);
      row(
        `upload: one 100 MiB file into PostgreSQL through n1 of two (MiB/s)` + pct(up),
        mibps(up),
        "",
      );
      row(`  download from n1 (MiB/s)` + pct(down1), mibps(down1), "");
      row(`  download from n2, across nodes (MiB/s)` + pct(down2), mibps(down2), "");
      row(
        `  ${STREAMS} concurrent uploads of 25 MiB to n1, total (MiB/s)` + pct(parallel),
        mibps(parallel),
        "",
      );
      row(
        `  n1's RSS gained while storing its first 100 MiB (MiB)`,
        (up.rssGainKiB / 1024).toFixed(0),
        "",
      );
      row(
        `  PostgreSQL size of 100 MiB stored (tables, TOAST, indexes; MiB)`,
        (Number(size.bytes) / MiB).toFixed(1),
        "",
      );
    } finally {
      await sql.end();
      await two.stop();
      await pki.remove();
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
