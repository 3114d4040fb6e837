// `deno task bench`: the server pinned to core 0, the load generator (bench/load.ts) to core 1.
// Prints a table and records it, with machine and date, in docs/PERFORMANCE.md (BENCH_RECORD=0:
// printed only, for trying a part out).
import { join } from "node:path";
import { serveProcess } from "../tests/helpers/process.ts";
import { VERSION } from "../src/version.ts";
import {
  generatorCommand,
  jsonLines,
  LOAD_CPU,
  rssKiB as rssOf,
  runGenerator,
  SECONDS,
  type Transport,
  ulimit,
  USERS,
} from "./generator.ts";
import { clusterBench } from "./cluster.ts";
import { proxy65ClusterBench } from "./proxy65_cluster.ts";
import { MUC_PACE, MUC_SIZES, mucClusterBench, type MucFigures } from "./muc_cluster.ts";
import { pepClusterBench } from "./pep_cluster.ts";
import { uploadBench } from "./upload.ts";
import { csiBench } from "./csi.ts";
import { RESUME_ROUNDS, resumeRows, smClusterBench, smCompare } from "./sm.ts";
import { sharedPostgres } from "../tests/helpers/postgres.ts";

/** The server's core; BENCH_SERVER_CPU="" leaves it unpinned (key derivation may use both). */
const SERVER_CPU = Deno.env.get("BENCH_SERVER_CPU") ?? "0";
/** PBKDF2 iterations of the benchmark accounts (the default configuration has 4,096). */
const ITERATIONS = Number(Deno.env.get("BENCH_ITERATIONS") ?? 16);
const IDLE_SESSIONS = Number(Deno.env.get("BENCH_IDLE_SESSIONS") ?? 10_000);
const detachedScript = new URL("./detached_sessions.ts", import.meta.url).pathname;
/** Idle sessions of the stream management part's memory rows, with and without it. */
const SM_SESSIONS = Number(Deno.env.get("BENCH_SM_SESSIONS") ?? IDLE_SESSIONS);
/**
 * Comma-separated subset (memory, logins, throughput, latency, websocket, muc, proxy65,
 * components, cluster, cluster-components: only the component part of cluster); default all. `muc`
 * and `proxy65` each measure one node, then the same across a cluster in the same run
 * (bench/muc_cluster.ts: three nodes; bench/proxy65_cluster.ts: two), with the ratio. `websocket`
 * measures throughput, latency and memory per idle session over RFC 7395 next to TCP's of the same
 * run (those of `throughput`, `latency`, `memory` when they ran, else measured in this part). `sm`
 * measures stream management (XEP-0198, resumable, on every session) next to the same without it in
 * the same run, on one node and on two (bench/sm.ts), resumption times, and memory per idle and per
 * detached session. `mam` measures one-to-one messages with every message archived next to the same
 * without (the other parts run with the archive off). `pep` measures PEP (XEP-0163) notifications
 * to 100 contacts spread over three nodes: latency at a fixed rate and rate at saturation
 * (bench/pep_cluster.ts). `csi` measures what a client state indication (XEP-0352) inactive
 * session is spared: a user with 100 contacts sending presence updates, the stanzas and bytes her
 * session gets active and inactive, and the server's CPU per update (bench/csi.ts). `upload`
 * measures HTTP File Upload (XEP-0363): a 100 MiB file up and down through one node keeping files
 * on disk, then through two nodes keeping them in PostgreSQL (down from the node that stored it and
 * from the other), next to plain TCP copies of the same bytes (bench/upload.ts).
 */
const ONLY = Deno.env.get("BENCH_ONLY")?.split(",");
const wanted = (part: string) => !ONLY || ONLY.includes(part);

const dir = await Deno.makeTempDir({ prefix: "parley-bench-" });
/**
 * The benchmark server's configuration: the message archive (XEP-0313) off, as in the rows
 * measured before it existed and in ejabberd's yardsticks (no mod_mam), but in the `mam` part.
 */
const benchConfig = (mam: boolean) =>
  `data_dir: ${dir}
log: { level: info }
hosts:
  - domain: localhost
    registration: true
    components: [{ domain: gw.localhost, secret: benchsecret }]
    proxy65: { domain: proxy.localhost, port: 0, max_streams_per_user: 100 }
    muc: { domain: conference.localhost, max_occupants: 1000, message_rate: 0, room_delivery_rate: 0 }
# Benchmark users get a low iteration count by default so the generator, which derives the SCRAM
# keys of every user once, is not the bottleneck. SCRAM costs the server the same work whatever the
# count; PLAIN derives a key on the server at every login.
auth: { scram_iterations: ${ITERATIONS} }
listeners:
  - { type: c2s, bind: 127.0.0.1, port: 0, starttls: optional, plain_without_tls: true }
  - { type: component, bind: 127.0.0.1, port: 0 }
  - { type: http, bind: 127.0.0.1, port: 0, plain_without_tls: true }
limits:
  connections_per_ip: 100000
  rate_bytes_per_second: 1073741824
  rate_burst_bytes: 1073741824
  component_rate_bytes_per_second: 1073741824
  component_rate_burst_bytes: 1073741824
  registrations_per_address: 1000000
timeouts: { ping_interval: 0, handshake: 600, auth_failure_delay_ms: 0 }
stream_management: { resume_timeout: "300s", max_resume_timeout: "3600s", max_unacked: 5000 }
mam: { enabled: ${mam} }
`;
const configFile = join(dir, "bench.yaml");
await Deno.writeTextFile(configFile, benchConfig(false));
/** The same with every account's and room's messages archived. */
const mamConfigFile = join(dir, "bench-mam.yaml");
await Deno.writeTextFile(mamConfigFile, benchConfig(true));

// Each group of measurements gets a fresh server process on the same data directory, so no
// scenario pays for the garbage or caches another left behind.
const pin = SERVER_CPU ? ["taskset", "-c", SERVER_CPU] : [];
let server = await serveProcess(configFile, [...ulimit, ...pin]);
let [port, componentPort, httpPort] = server.ports;

async function freshServer(file = configFile): Promise<void> {
  server.child.kill("SIGTERM");
  await server.exited;
  server = await serveProcess(file, [...ulimit, ...pin]);
  [port, componentPort, httpPort] = server.ports;
}
const loadCommand = (args: Record<string, unknown>) =>
  generatorCommand({ port, componentPort, httpPort, ...args });

/**
 * Runs a scenario; `busy` is the share of its core the server used between the generator's
 * {"phase":"start"} line and its result (1 = saturated).
 */
const load = (args: Record<string, unknown>) =>
  runGenerator({ port, componentPort, httpPort, ...args }, () => [server.child.pid]);

const pct = (r: Record<string, number>) => ` (server core ${(r.busy * 100).toFixed(0)}% busy)`;

const rssKiB = () => rssOf(server.child.pid);

const rows: [string, string, string][] = [];
const row = (what: string, value: string, yardstick: string) => {
  rows.push([what, value, yardstick]);
  console.log(`${what.padEnd(72)} ${value.padStart(14)}   ${yardstick}`);
};

/** The server's V8 heap in use (garbage included), KiB, from /metrics. */
async function heapKiB(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  return Number(/^deno_heap_used_bytes (\S+)/m.exec(text)![1]) / 1024;
}

/** Waits (at most 60 s) until the server has no archive entries left to write, from /metrics. */
async function archiveDrained(): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    if (Number(/^parley_archive_backlog (\d+)/m.exec(text)?.[1] ?? 0) === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Resumable sessions the server holds detached, from /metrics. */
async function detachedSessions(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  return Number(/^parley_sessions_resumable\{state="detached"\} (\d+)/m.exec(text)?.[1] ?? 0);
}

interface IdleMemory {
  sessions: number;
  rss0: number;
  rssN: number;
  heap0: number;
  heapN: number;
  /** With stream management: once every connection was cut and its session detached. */
  rssDetached?: number;
  heapDetached?: number;
}

/**
 * RSS (and heap) with no sessions, then with `sessions` authenticated idle ones over `transport`
 * (on a fresh server: a fresh heap). With `sm`, each session enables stream management with
 * resumption; then the generator cuts every connection, and once the server has seen them all
 * close (the sessions wait, detached, for a resumption), the same again.
 */
async function idleMemory(
  transport: Transport,
  { sessions = IDLE_SESSIONS, sm = false, users = USERS } = {},
): Promise<IdleMemory> {
  const settle = () => new Promise((r) => setTimeout(r, 3000)); // the server collects its garbage
  await new Promise((r) => setTimeout(r, 2000));
  const rss0 = rssKiB();
  const heap0 = await heapKiB();
  const idle = loadCommand({
    scenario: "idle",
    // A web connection holds three descriptors (the http listener relays it over loopback): half
    // as many fit under the generator's limit of 20,000.
    sessions: transport === "websocket" ? Math.min(sessions, 5000) : sessions,
    concurrency: 64,
    transport,
    sm,
    users,
  }).spawn();
  try {
    const line = jsonLines(idle);
    const m: IdleMemory = { sessions: (await line()).ready, rss0, rssN: 0, heap0, heapN: 0 };
    await settle();
    m.rssN = rssKiB();
    m.heapN = await heapKiB();
    if (sm) {
      idle.kill("SIGUSR2");
      await line(); // {"cut": n}
      const deadline = performance.now() + 60_000;
      while (await detachedSessions() < m.sessions && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      const detached = await detachedSessions();
      if (detached < m.sessions) throw new Error(`${detached} of ${m.sessions} sessions detached`);
      await settle();
      m.rssDetached = rssKiB();
      m.heapDetached = await heapKiB();
    }
    return m;
  } finally {
    idle.kill("SIGKILL");
    await idle.status;
  }
}

/** KiB per session over the idle RSS, as bench.ts's memory rows have always reported. */
async function memory(transport: Transport): Promise<number> {
  const m = await idleMemory(transport);
  const on = transport === "websocket" ? "WebSocket: " : "";
  row(`${on}RSS with 0 sessions (KiB)`, String(m.rss0), "");
  row(`${on}RSS with ${m.sessions} idle sessions (KiB)`, String(m.rssN), "");
  return (m.rssN - m.rss0) / m.sessions;
}

type Result = Record<string, number>;
const throughput = (transport: Transport) =>
  load({ scenario: "throughput", concurrency: 50, transport });
const latency = (transport: Transport) =>
  load({ scenario: "latency", concurrency: 50, rate: 2000, transport });

/** TCP's figures of this run, for the WebSocket part to compare with. */
const tcp: { memory?: number; throughput?: Result; latency?: Result } = {};

async function tcpMemory(): Promise<void> {
  tcp.memory = await memory("tcp");
  row(
    "memory per idle authenticated session (KiB)",
    tcp.memory.toFixed(1),
    "Prosody 0.12: ~36 KiB",
  );
}

async function tcpThroughput(): Promise<void> {
  const thr = tcp.throughput = await throughput("tcp");
  row(
    "messages/s routed one-to-one at saturation" + pct(thr),
    thr.rate.toFixed(0),
    "ejabberd 23.01: ~16,000",
  );
}

async function tcpLatency(): Promise<void> {
  const lat = tcp.latency = await latency("tcp");
  row("latency p50 at 2,000 messages/s (ms)", lat.p50.toFixed(3), "");
  row("latency p99 at 2,000 messages/s (ms)", lat.p99.toFixed(3), "ejabberd 23.01: 0.9 ms");
  row(
    "latency p99.9 / max at 2,000 messages/s (ms)",
    `${lat.p999.toFixed(2)} / ${lat.max.toFixed(2)}`,
    "",
  );
}

/**
 * Throughput, latency and memory per idle session over WebSocket (RFC 7395), each next to TCP's
 * of this run (measured here, the same way, when their parts did not run) and the ratio.
 */
async function websocket(): Promise<void> {
  const ratio = (ws: number, base: number) => `${(ws / base).toFixed(2)}×`;
  if (!tcp.throughput) {
    await freshServer();
    await tcpThroughput();
  }
  if (!tcp.latency) await tcpLatency();
  await freshServer();
  const thr = await throughput("websocket");
  const t = tcp.throughput!;
  row(
    "WebSocket: messages/s routed one-to-one at saturation" + pct(thr),
    thr.rate.toFixed(0),
    `TCP, same run: ${t.rate.toFixed(0)}${pct(t)}`,
  );
  row("  WebSocket / TCP", ratio(thr.rate, t.rate), "");
  const lat = await latency("websocket");
  const l = tcp.latency!;
  row(
    "WebSocket: latency p50 / p99 at 2,000 messages/s (ms)",
    `${lat.p50.toFixed(3)} / ${lat.p99.toFixed(3)}`,
    `TCP, same run: ${l.p50.toFixed(3)} / ${l.p99.toFixed(3)}`,
  );
  row("  WebSocket / TCP", `${ratio(lat.p50, l.p50)} / ${ratio(lat.p99, l.p99)}`, "");
  if (tcp.memory === undefined) {
    await freshServer();
    await tcpMemory();
  }
  await freshServer();
  const mem = await memory("websocket");
  row(
    "WebSocket: memory per idle authenticated session (KiB)",
    mem.toFixed(1),
    `TCP, same run: ${tcp.memory!.toFixed(1)}`,
  );
  row("  WebSocket / TCP", ratio(mem, tcp.memory!), "");
}

/** Rounds of the archive comparison, alternately without and with archiving. */
const MAM_ROUNDS = Number(Deno.env.get("BENCH_MAM_ROUNDS") ?? 3);

/**
 * The message archive (XEP-0313): one-to-one messages with every message archived at both ends
 * next to the same without archiving, rounds alternately on fresh servers, on the embedded store
 * (SQLite, in the server's process and core) and on PostgreSQL (its server unpinned, beside the
 * generator): throughput at saturation (each case keeps its round of least CPU per message: other
 * work on a shared machine only ever adds to it), and latency at 2,000 messages/s (the median of
 * the rounds' p50 and p99).
 */
async function archiving(): Promise<void> {
  const url = await (await sharedPostgres()).database();
  const pgFile = (mam: boolean) => {
    const file = join(dir, `bench-pg-${mam}.yaml`);
    return Deno.writeTextFile(
      file,
      benchConfig(mam) + `storage: { type: postgres, url: "${url}", pool: 8 }\n`,
    ).then(() => file);
  };
  const stores = [
    { name: "SQLite", files: [configFile, mamConfigFile] },
    { name: "PostgreSQL", files: [await pgFile(false), await pgFile(true)] },
  ];
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const { name, files } of stores) {
    const best = files.map(() => ({ rate: 0, us: Infinity, busy: 0 }));
    const lat = files.map(() => ({ p50: [] as number[], p99: [] as number[] }));
    const all: string[][] = [[], []];
    for (let round = 0; round < MAM_ROUNDS; round++) {
      for (const [k, file] of files.entries()) {
        await freshServer(file);
        // The PostgreSQL database is new: its accounts first (SQLite's were registered at start).
        if (round === 0 && k === 0 && file !== configFile) await load({ scenario: "register" });
        const r = await load({ scenario: "throughput", concurrency: 50 });
        const us = r.cpu / r.messages * 1e6;
        all[k].push(`${r.rate.toFixed(0)}/s ${us.toFixed(2)} µs ${(r.busy * 100).toFixed(0)}%`);
        if (us < best[k].us) best[k] = { rate: r.rate, us, busy: r.busy };
        // The saturation run's archive backlog written first: the latency run measures its own.
        await archiveDrained();
        const l = await load({ scenario: "latency", concurrency: 50, rate: 2000 });
        lat[k].p50.push(l.p50);
        lat[k].p99.push(l.p99);
      }
    }
    console.log(
      `  ${name} rounds: without archive ${all[0].join(", ")}; with ${all[1].join(", ")}`,
    );
    const [off, on] = best;
    row(
      `MAM (${name}): messages/s one-to-one, every message archived at both ends` +
        ` (server core ${(on.busy * 100).toFixed(0)}% busy)`,
      on.rate.toFixed(0),
      `without archiving, same run: ${off.rate.toFixed(0)}`,
    );
    row("  archiving / not: messages/s", `${(on.rate / off.rate).toFixed(2)}×`, "goal ≥ 0.6×");
    row(
      "  CPU per message, server (µs)",
      `${on.us.toFixed(2)}`,
      `without: ${off.us.toFixed(2)} (${(on.us / off.us).toFixed(2)}×)`,
    );
    row(
      "  latency p50 / p99 at 2,000 messages/s (ms)",
      `${median(lat[1].p50).toFixed(3)} / ${median(lat[1].p99).toFixed(3)}`,
      `without: ${median(lat[0].p50).toFixed(3)} / ${median(lat[0].p99).toFixed(3)}`,
    );
  }
  await freshServer();
}

/**
 * Stream management (XEP-0198) on one node, each figure next to the same without it in this run:
 * throughput and latency (rounds alternately), resumption on the same node, memory per idle
 * session with it (SM_SESSIONS sessions; without it, as many, on a fresh server) and per session
 * once detached; then the same over two nodes (bench/sm.ts).
 */
async function streamManagement(): Promise<void> {
  await freshServer();
  await smCompare(load, row, "one node", "server core");
  resumeRows(row, "on the same node", await load({ scenario: "resume", rounds: RESUME_ROUNDS }));
  // An account keeps at most 16 detached sessions (src/c2s/resumption.ts): ten per account here,
  // with and without stream management.
  const users = Math.ceil(SM_SESSIONS / 10);
  await load({ scenario: "register", users });
  await freshServer();
  const off = await idleMemory("tcp", { sessions: SM_SESSIONS, users });
  await freshServer();
  const on = await idleMemory("tcp", { sessions: SM_SESSIONS, sm: true, users });
  const per = (rss: number, heap: number, m: IdleMemory) =>
    `${((rss - m.rss0) / m.sessions).toFixed(1)}; ${((heap - m.heap0) / m.sessions).toFixed(1)}`;
  row(
    `SM: RSS with 0 sessions / ${on.sessions} idle resumable sessions / the same detached (KiB)`,
    `${on.rss0} / ${on.rssN} / ${on.rssDetached}`,
    `without SM: ${off.rss0} / ${off.rssN}`,
  );
  row(
    `SM: memory per idle resumable session (KiB; RSS; heap in use; ${users} accounts)`,
    per(on.rssN, on.heapN, on),
    `without SM, same run: ${per(off.rssN, off.heapN, off)}`,
  );
  row(
    "SM: memory per detached session, connection cut (KiB; RSS; heap in use)",
    per(on.rssDetached!, on.heapDetached!, on),
    "",
  );
  // The same in the heap alone, exactly (bench/detached_sessions.ts).
  const out = await new Deno.Command(ulimit[0], {
    args: [
      ...ulimit.slice(1),
      Deno.execPath(),
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      detachedScript,
      String(Math.min(SM_SESSIONS, 5000)),
    ],
    stderr: "inherit",
  }).output();
  const heap = JSON.parse(new TextDecoder().decode(out.stdout));
  row(
    `  the same, heap after full collections, ${heap.sessions} sessions (bytes): what SM adds to a bound session; a detached one; detached, its gone connection's transport dropped`,
    `${heap.smBound.toFixed(0)}; ${heap.detached.toFixed(0)}; ${heap.withoutTransport.toFixed(0)}`,
    "",
  );
  await smClusterBench(row, ITERATIONS, SERVER_CPU);
}

async function logins(): Promise<void> {
  await load({ scenario: "login", seconds: 2, starttls: false }); // warm-up (JIT)
  const common = { scenario: "login", concurrency: 100 };
  const scram = await load({ ...common, starttls: false, mech: "SCRAM-SHA-256" });
  row(
    "logins/s, SCRAM-SHA-256, no TLS" + pct(scram),
    scram.rate.toFixed(0),
    "ejabberd 23.01: ~1,300 (PLAIN)",
  );
  const tls = await load({ ...common, starttls: true, mech: "SCRAM-SHA-256" });
  row(
    "logins/s, STARTTLS + SCRAM-SHA-256" + pct(tls),
    tls.rate.toFixed(0),
    "ejabberd 23.01: ~560 (PLAIN)",
  );
  const plain = await load({ ...common, starttls: false, mech: "PLAIN" });
  row("logins/s, SASL PLAIN, no TLS" + pct(plain), plain.rate.toFixed(0), "(reported separately)");
  const tlsPlain = await load({ ...common, starttls: true, mech: "PLAIN" });
  row("logins/s, STARTTLS + SASL PLAIN" + pct(tlsPlain), tlsPlain.rate.toFixed(0), "");
}

/** The 1-minute load average: other work on a shared machine shows in every figure. */
const loadAverage = () => Deno.loadavg()[0].toFixed(2);
const loadBefore = loadAverage();
try {
  await load({ scenario: "register" });
  if (wanted("memory")) await tcpMemory();
  if (wanted("logins")) {
    await freshServer();
    await logins();
  }
  if (wanted("throughput")) {
    await freshServer();
    await tcpThroughput();
  }
  if (wanted("latency")) {
    if (!wanted("throughput")) await freshServer();
    await tcpLatency();
  }
  if (wanted("websocket")) await websocket();
  if (wanted("muc")) {
    const oneNode = new Map<number, MucFigures>();
    for (const occupants of MUC_SIZES) {
      await freshServer();
      const sat = await load({ scenario: "muc", occupants });
      row(
        `MUC, ${occupants} occupants: stanzas out/s at saturation` + pct(sat),
        sat.stanzasOut.toFixed(0),
        occupants === 100 ? "ejabberd 23.01: ~53,800" : "",
      );
      row(`  messages in/s`, sat.messagesIn.toFixed(0), "");
      // A fixed 5,000 stanzas out per second, as for the yardstick, once the server has settled
      // (collected the garbage of the saturation run).
      await new Promise((r) => setTimeout(r, 2000));
      const lat = await load({ scenario: "muc", occupants, rate: MUC_PACE / occupants });
      oneNode.set(occupants, { stanzasOut: sat.stanzasOut, p50: lat.p50, p99: lat.p99 });
      row(`  latency p50 at 5,000 stanzas out/s (ms)`, lat.p50.toFixed(2), "");
      row(
        `  latency p99 at 5,000 stanzas out/s (ms)`,
        lat.p99.toFixed(2),
        occupants === 100 ? "ejabberd 23.01: 3 ms" : "",
      );
    }
    await mucClusterBench(row, ITERATIONS, SERVER_CPU, oneNode);
  }
  if (wanted("proxy65")) {
    await freshServer();
    const runs = [
      { streams: 1, mib: 1024, what: "one 1 GiB transfer", anchor: ["~1,150", "(1,460 there)"] },
      { streams: 20, mib: 64, what: "20 concurrent 64 MiB transfers, total", anchor: ["", ""] },
    ];
    for (const { streams, mib, what, anchor } of runs) {
      const r = await load({ scenario: "proxy", streams, bytes: mib << 20 });
      row(
        `proxy65: ${what} (MiB/s)` + pct(r),
        r.proxy.toFixed(0),
        anchor[0] && `ejabberd 23.01: ${anchor[0]}`,
      );
      row("  plain TCP copies, same endpoints (MiB/s)", r.direct.toFixed(0), anchor[1]);
      row("  proxy / direct", `${(r.ratio * 100).toFixed(0)} %`, "goal ≥ 90 %");
    }
    await proxy65ClusterBench(row, ITERATIONS, SERVER_CPU);
  }
  if (wanted("components")) {
    await freshServer();
    for (const instances of [1, 4]) {
      const rt = await load({ scenario: "component", instances, concurrency: 50 });
      row(
        `component round trips/s, ${instances} instance(s)` + pct(rt),
        rt.rate.toFixed(0),
        "ejabberd 23.01: ~14,400",
      );
    }
  }
  if (wanted("sm")) await streamManagement();
  if (wanted("mam")) await archiving();
  if (wanted("pep")) await pepClusterBench(row, ITERATIONS, SERVER_CPU);
  if (wanted("upload")) await uploadBench(row, ITERATIONS, SERVER_CPU);
  if (wanted("csi")) {
    await freshServer();
    await csiBench(row, port, httpPort, () => [server.child.pid]);
  }
  if (wanted("cluster") || wanted("cluster-components")) {
    await clusterBench(row, ITERATIONS, SERVER_CPU, !wanted("cluster"));
  }
} finally {
  server.child.kill("SIGTERM");
  await server.exited;
}

const cpu = /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo"))?.[1] ??
  "unknown CPU";
const date = new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC";
const table = [
  "| measure | Parley | yardstick |",
  "| --- | ---: | --- |",
  ...rows.map(([a, b, c]) => `| ${a} | ${b} | ${c} |`),
].join("\n");
const section = `## ${date} — Parley ${VERSION}, Deno ${Deno.version.deno}

Machine: ${cpu}, ${navigator.hardwareConcurrency} cores; ${
  SERVER_CPU ? `server pinned to core ${SERVER_CPU}` : "server unpinned"
}, load generator on core ${LOAD_CPU}.
${SECONDS} s per measurement; ${USERS} users registered in-band (${ITERATIONS} PBKDF2 iterations);
idle sessions without TLS; a fresh server process for each group of measurements.
Load average (1 min) ${loadBefore} at the start, ${loadAverage()} at the end.

${table}
`;
if (Deno.env.get("BENCH_RECORD") === "0") {
  console.log("\nnot recorded (BENCH_RECORD=0)");
  Deno.exit(0);
}
const file = new URL("../docs/PERFORMANCE.md", import.meta.url);
let doc = "";
try {
  doc = await Deno.readTextFile(file);
} catch { /* first run */ }
const marker = "<!-- results: newest first -->";
if (!doc.includes(marker)) {
  doc = `# Performance\n\nProduced by \`deno task bench\` (see bench/bench.ts). ${marker}\n`;
}
await Deno.writeTextFile(file, doc.replace(marker, `${marker}\n\n${section}`));
console.log(`\nrecorded in docs/PERFORMANCE.md`);
