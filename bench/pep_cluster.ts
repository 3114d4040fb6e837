// PEP (XEP-0163) across three nodes (BENCH_ONLY=pep): three `parley serve` processes pinned to the
// server core, sharing a throwaway PostgreSQL (unpinned), as the other cluster benches. An owner
// (bench0, on n1) and CONTACTS contacts (bench1…, round-robin over n1–n3) with mutual presence
// subscriptions made through the protocol (subscribe / subscribed both ways); then each contact
// logs in anew and sends initial presence with XEP-0115 caps whose ver (one for all) says
// `NODE+notify`, and answers the server's disco#info query for it. Measured, in one run on one
// cluster: publish-to-notification latency at PEP_RATE publishes per second (from the owner's
// sending of each publish to each contact's receipt of its event; p50/p99 over every (publish,
// contact) pair, with what was missing, duplicated or out of order), then notifications per second
// at saturation with WINDOW publishes in flight, with the CPU of all three nodes (their core's
// busy share, notifications per CPU-second: "per core") and of PostgreSQL.
//
// This file is also its own load generator: run as a script (pinned to the generator's core, as
// bench/load.ts is) it plays the owner and the contacts on bench/native_client.ts's sockets,
// finding whole stanzas by scanning tags, and prints JSON lines as load.ts does.
import { createHash } from "node:crypto";
import { sharedPostgres } from "../tests/helpers/postgres.ts";
import { testPki } from "../tests/helpers/cluster_pki.ts";
import { BenchCluster, configure } from "./cluster.ts";
import { cpuSeconds, pinnedGenerator, runGenerator, SECONDS } from "./generator.ts";
import { NativeClient } from "./native_client.ts";
import { lines } from "../tests/helpers/lines.ts";
import { attr, out, readStanzas, until, within } from "./stanza_text.ts";

type Row = (what: string, value: string, yardstick: string) => void;

/** Contacts of the owner, each with one resource interested in NODE. */
const CONTACTS = 100;
/** Publishes per second of the latency run, and its length. */
const PEP_RATE = 20;
const LATENCY_SECONDS = 10;
/** Publishes in flight at saturation; at most this many publishes in that run. */
const WINDOW = 20;
const MAX_PUBLISHES = 200_000;
/** The PEP node published to (XEP-0172 user nickname). */
const NODE = "http://jabber.org/protocol/nick";
const CAPS_NODE = "https://parley.example/bench";
const DISCO_INFO = "http://jabber.org/protocol/disco#info";
const IDENTITY = { category: "client", type: "pc", name: "Parley bench" };
const FEATURES = [DISCO_INFO, `${NODE}+notify`];
const PASSWORD = "benchpw"; // bench/load.ts's accounts
const user = (i: number) => `bench${i}`;
const OWNER = `${user(0)}@localhost`;
/** The whole generator run may not take longer than this (it is killed). */
const GENERATOR_LIMIT_MS = 300_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The XEP-0115 ver (sha-1) of the contacts' disco#info: one identity, FEATURES. */
function capsVer(): string {
  const s = `${IDENTITY.category}/${IDENTITY.type}//${IDENTITY.name}<` +
    [...FEATURES].sort().map((f) => f + "<").join("");
  return createHash("sha1").update(s, "utf8").digest("base64");
}

// ---------------------------------------------------------------------------------------------
// The orchestrator (bench.ts's part).

const script = new URL(import.meta.url).pathname;

/** The process ids of the PostgreSQL listening on `port`: its postmaster and its children. */
function postgresPids(port: number): number[] {
  const all = [...Deno.readDirSync("/proc")].filter((e) => /^\d+$/.test(e.name)).map((e) =>
    Number(e.name)
  );
  const read = (path: string) => {
    try {
      return Deno.readTextFileSync(path);
    } catch {
      return "";
    }
  };
  const master = all.find((pid) => {
    const argv = read(`/proc/${pid}/cmdline`).split("\0");
    const p = argv.indexOf("-p");
    return argv[0].endsWith("postgres") && p >= 0 && argv[p + 1] === String(port);
  });
  if (master === undefined) return [];
  const children = all.filter((pid) =>
    Number(read(`/proc/${pid}/stat`).split(") ")[1]?.split(" ")[1]) === master
  );
  return [master, ...children];
}

/** CPU seconds of each of `pids` (NaN for one gone). */
const cpuOf = (pids: number[]) =>
  pids.map((pid) => {
    try {
      return cpuSeconds(pid);
    } catch {
      return NaN;
    }
  });

/** What processes in `pids` used since `before` (each process counted only while it lived). */
const cpuSince = (pids: number[], before: number[]) =>
  cpuOf(pids).reduce(
    (sum, now, i) => sum + (Number.isNaN(now - before[i]) ? 0 : now - before[i]),
    0,
  );

/**
 * Runs this file as the generator, pinned to LOAD_CPU; each result line with `cpu` (CPU seconds
 * of the nodes between the preceding {"phase":"start"} line and it), `busy` (that per second of
 * wall time) and `pg` (PostgreSQL's CPU per second of wall time).
 */
async function runPep(
  args: Record<string, unknown>,
  nodes: () => number[],
  pgPort: number,
): Promise<Record<string, number>[]> {
  const child = pinnedGenerator(script, args).spawn();
  const limit = setTimeout(() => {
    console.error(`pep: generator still running after ${GENERATOR_LIMIT_MS} ms, killed`);
    child.kill("SIGKILL");
  }, GENERATOR_LIMIT_MS);
  const results: Record<string, number>[] = [];
  const perNode = () => nodes().map(cpuSeconds);
  const used = () => perNode().reduce((sum, s) => sum + s, 0);
  let cpu0 = used();
  let nodes0 = perNode();
  let pgPids = postgresPids(pgPort);
  let pg0 = cpuOf(pgPids);
  let t0 = performance.now();
  try {
    for await (const text of lines(child.stdout)) {
      const line = JSON.parse(text);
      if (line.phase === "start") {
        cpu0 = used();
        nodes0 = perNode();
        pgPids = postgresPids(pgPort);
        pg0 = cpuOf(pgPids);
        t0 = performance.now();
      } else if (line.phase === "info") {
        console.log(`  pep: ${JSON.stringify(line)}`);
      } else if (line.phase === "extra") {
        Object.assign(results[results.length - 1], line); // after the measured phase
      } else {
        const secs = (performance.now() - t0) / 1000;
        const each = perNode().map((s, i) => (s - nodes0[i]) / secs);
        const cpu = used() - cpu0;
        results.push({
          ...line,
          cpu,
          busy: cpu / secs,
          pg: cpuSince(pgPids, pg0) / secs,
          ...Object.fromEntries(each.map((b, i) => [`busy${i + 1}`, b])),
        });
      }
    }
    const status = await child.status;
    if (!status.success) throw new Error(`pep generator failed (exit code ${status.code})`);
  } finally {
    clearTimeout(limit);
  }
  return results;
}

/**
 * After a failure: each node that exited (its status; left out of the cluster, which stops the
 * others) and what each logged above the info level (the last 20 lines).
 */
async function whatNodesSaid(c: BenchCluster): Promise<void> {
  for (const [i, n] of c.nodes.entries()) {
    if (!n) continue;
    const status = await Promise.race([n.process.exited, sleep(100).then(() => undefined)]);
    if (status) {
      console.error(`pep: ${n.name} exited: code ${status.code}, signal ${status.signal}`);
      await Promise.race([n.process.logsDone, sleep(1000)]);
      c.nodes[i] = undefined;
    }
    const said = n.process.logs.filter((l) => !/^(info|debug)$/i.test(String(l.level ?? "")));
    for (const l of said.slice(-20)) console.error(`pep: ${n.name}: ${JSON.stringify(l)}`);
  }
}

export async function pepClusterBench(row: Row, iterations: number, serverCpu: string) {
  const dir = await Deno.makeTempDir({ prefix: "parley-bench-pep-" });
  const pki = await testPki(["n1", "n2", "n3"]);
  const pg = await sharedPostgres();
  const url = await pg.database();
  const file = await configure(dir, 3, url, pki.dir, iterations);
  const c = new BenchCluster(dir, file, serverCpu ? ["taskset", "-c", serverCpu] : []);
  try {
    await c.startAll(3);
    const ports = [0, 1, 2].map((i) => c.port(i));
    await runGenerator({ scenario: "register", port: ports[0], users: CONTACTS + 1 }, c.pids);
    const [lat, thr] = await runPep(
      {
        ports,
        contacts: CONTACTS,
        rate: PEP_RATE,
        latencySeconds: LATENCY_SECONDS,
        seconds: SECONDS,
        window: WINDOW,
        maxPublishes: MAX_PUBLISHES,
      },
      c.pids,
      pg.port,
    );
    const pct = (share: number) => `${(share * 100).toFixed(0)}%`;
    const where = `${CONTACTS} contacts (+notify by caps) spread over three nodes, owner on n1`;
    row(
      `PEP, ${where}: publish-to-notification p50 / p99 at ${PEP_RATE} publishes/s (ms)`,
      `${lat.p50.toFixed(2)} / ${lat.p99.toFixed(2)}`,
      "",
    );
    const ms = (a: number, b: number) => `${a.toFixed(2)} / ${b.toFixed(2)}`;
    row(
      "  p50 / p99 to contacts on the owner's node; on the other two; p99.9 / max, all (ms)",
      `${ms(lat.p50Local, lat.p99Local)}; ${ms(lat.p50Remote, lat.p99Remote)}; ${
        ms(lat.p999, lat.max)
      }`,
      "",
    );
    row(
      "  publish round trip to the owner's result p50 / p99 (ms)",
      ms(lat.publishP50, lat.publishP99),
      "",
    );
    row(
      `  notifications missing / duplicated / out of order (of ${lat.expected}); publish errors`,
      `${lat.missing} / ${lat.duplicates} / ${lat.outOfOrder}; ${lat.errors}`,
      "all 0",
    );
    row(
      `PEP, ${where}: notifications/s at saturation, ${WINDOW} publishes in flight (nodes' core ${
        (thr.busy * 100).toFixed(0)
      }% busy: n1 ${pct(thr.busy1)}, n2 ${pct(thr.busy2)}, n3 ${pct(thr.busy3)}; PostgreSQL ${
        pct(thr.pg)
      }, generator ${pct(thr.generatorBusy)} of a core)`,
      thr.rate.toFixed(0),
      "",
    );
    row(
      "  per server core: notifications per CPU-second of the three nodes; CPU µs per notification",
      `${(thr.notifications / thr.cpu).toFixed(0)}; ${
        (thr.cpu / thr.notifications * 1e6).toFixed(2)
      }`,
      "",
    );
    row(
      "  publishes/s; notifications missing once drained; publish errors",
      `${thr.publishRate.toFixed(0)}; ${thr.missing}; ${thr.errors}`,
      "",
    );
    row(
      `PEP: caps disco#info queries the server sent the ${CONTACTS} contacts (one ver), on n1 / n2 / n3`,
      `${lat.asks} (${lat.asks1} / ${lat.asks2} / ${lat.asks3})`,
      "the first only",
    );
  } catch (e) {
    await whatNodesSaid(c);
    throw e;
  } finally {
    await c.stop();
    await pki.remove();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// The generator (this file run as a script).

interface Args {
  ports: number[];
  contacts: number;
  rate: number;
  latencySeconds: number;
  seconds: number;
  window: number;
  maxPublishes: number;
}

/** Logs contacts 1…n in, contact i on ports[(i - 1) % length], 20 at a time. */
async function loginContacts(
  a: Args,
  resource: string,
  start: (i: number, c: NativeClient) => void,
): Promise<NativeClient[]> {
  const clients: NativeClient[] = [];
  let next = 1;
  const worker = async () => {
    while (next <= a.contacts) {
      const i = next++;
      const port = a.ports[(i - 1) % a.ports.length];
      const c = await within(
        NativeClient.login(port, user(i), PASSWORD, resource + i),
        10_000,
        `login of ${user(i)}`,
      );
      clients[i] = c;
      start(i, c);
    }
  };
  await Promise.all(Array.from({ length: 20 }, worker));
  return clients;
}

function quantile(sorted: ArrayLike<number>, p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN;
}

const publishXml = (id: string) =>
  `<iq type='set' id='${id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${NODE}'><item id='${id}'><nick xmlns='${NODE}'>owner ${id}</nick></item></publish></pubsub></iq>`;

async function generator(a: Args): Promise<void> {
  const n = a.contacts;
  const node = (i: number) => (i - 1) % a.ports.length; // a contact's node (0: the owner's)
  const t0 = performance.now();
  const since = () => Math.round(performance.now() - t0);

  // The owner, on n1: answers subscription requests; publish results go to `onResult`.
  const owner = await within(
    NativeClient.login(a.ports[0], user(0), PASSWORD, "owner"),
    10_000,
    "the owner's login",
  );
  let onResult = (_id: string, _ok: boolean, _now: number) => {};
  let firstError = "";
  void readStanzas(owner, (s, now) => {
    if (s.startsWith("<iq")) {
      const ok = attr(s, "type") === "result";
      if (!ok && !firstError) firstError = s.slice(0, 600);
      onResult(attr(s, "id") ?? "", ok, now);
    } else if (s.startsWith("<presence") && attr(s, "type") === "subscribe") {
      owner.send(`<presence type='subscribed' to='${attr(s, "from")}'/>`);
    }
  });
  owner.send("<presence/>");

  // Mutual subscriptions: the owner asks each contact; each approves, and asks in turn, which the
  // owner approves; a contact is done when that approval reaches it (both items are then "both").
  const subscribed = new Uint8Array(n + 1);
  const setup = await loginContacts(a, "setup", (i, c) => {
    void readStanzas(c, (s) => {
      if (!s.startsWith("<presence") || !attr(s, "from")?.startsWith(OWNER)) return;
      const type = attr(s, "type");
      if (type === "subscribe") {
        c.send(
          `<presence type='subscribed' to='${OWNER}'/><presence type='subscribe' to='${OWNER}'/>`,
        );
      } else if (type === "subscribed") subscribed[i] = 1;
    });
    c.send("<presence/>");
  });
  const done = () => subscribed.reduce((s, v) => s + v, 0) === n;
  // A request that reached a contact before the server saw it available is asked again (bounded).
  for (let round = 0; round < 10 && !done(); round++) {
    for (let i = 1; i <= n; i++) {
      if (!subscribed[i]) owner.send(`<presence type='subscribe' to='${user(i)}@localhost'/>`);
    }
    await until(done, 5000);
  }
  if (!done()) {
    throw new Error(`mutual subscriptions: ${subscribed.reduce((s, v) => s + v, 0)} of ${n}`);
  }
  const rosterMs = since();
  await sleep(500); // any answer still being written goes out first
  for (const c of setup.slice(1)) c.conn.close();

  // The contacts log in anew, initial presence with caps; each answers the server's disco#info.
  const ver = capsVer();
  const caps =
    `<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='${CAPS_NODE}' ver='${ver}'/>`;
  const features =
    `<identity category='${IDENTITY.category}' type='${IDENTITY.type}' name='${IDENTITY.name}'/>` +
    FEATURES.map((f) => `<feature var='${f}'/>`).join("");
  const asks = [0, 0, 0];
  const otherQueries: string[] = [];
  // Per contact: the last latency item seen (order) and receipts; what the handlers record.
  let measuring: "ready" | "latency" | "throughput" | "off" = "ready";
  const ready = new Uint8Array(n + 1);
  const P = Math.ceil(a.rate * a.latencySeconds) + 1;
  const sentAt = new Float64Array(P);
  const got = new Uint8Array((n + 1) * P);
  const last = new Int32Array(n + 1).fill(-1);
  const samples = [new Float64Array(n * P), new Float64Array(n * P)]; // owner's node, others
  const taken = [0, 0];
  let duplicates = 0;
  let outOfOrder = 0;
  let notifications = 0;
  let counting = false;
  let windowCount = 0;
  const onEvent = (i: number, s: string, now: number) => {
    if (measuring === "throughput") {
      notifications++;
      if (counting) windowCount++;
      return;
    }
    for (let at = s.indexOf("<item "); at >= 0; at = s.indexOf("<item ", at + 6)) {
      const id = attr(s, "id", at) ?? "";
      if (id[0] === "w") ready[i] = 1;
      else if (id[0] === "l") {
        ready[i] = 1;
        const k = Number(id.slice(1));
        if (got[i * P + k]++) {
          duplicates++;
          continue;
        }
        if (k < last[i]) outOfOrder++;
        last[i] = k;
        const where = node(i) === 0 ? 0 : 1;
        samples[where][taken[where]++] = now - sentAt[k];
      }
    }
  };
  const capsStart = since();
  await loginContacts(a, "c", (i, c) => {
    void readStanzas(c, (s, now) => {
      if (s.startsWith("<message")) {
        if (s.includes("http://jabber.org/protocol/pubsub#event")) onEvent(i, s, now);
      } else if (s.startsWith("<iq") && attr(s, "type") === "get") {
        const qAt = s.indexOf("<query");
        if (qAt >= 0 && attr(s, "xmlns", qAt) === DISCO_INFO) {
          asks[node(i)]++;
          const q = attr(s, "node", qAt);
          c.send(
            `<iq type='result' to='${attr(s, "from")}' id='${
              attr(s, "id")
            }'><query xmlns='${DISCO_INFO}'${q ? ` node='${q}'` : ""}>${features}</query></iq>`,
          );
          if (q !== `${CAPS_NODE}#${ver}` && otherQueries.length < 3) otherQueries.push(s);
        } else {
          // Anything else asked of a client: answered as not supported, so nothing waits on it.
          c.send(
            `<iq type='error' to='${attr(s, "from")}' id='${
              attr(s, "id")
            }'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
          );
          if (otherQueries.length < 3) otherQueries.push(s);
        }
      }
    });
    c.send(`<presence>${caps}</presence>`);
  });
  const loggedInMs = since();

  // Until every contact got a notification (the server knows its caps): a probe every 250 ms.
  let probes = 0;
  let probeErrors = 0;
  onResult = (_id, ok) => probeErrors += ok ? 0 : 1;
  const allReady = () => ready.reduce((s, v) => s + v, 0) === n;
  while (!allReady() && probes < 80 && probeErrors < 5) {
    owner.send(publishXml(`w${probes++}`));
    await until(allReady, 250);
  }
  out({
    phase: "info",
    ver,
    rosterMs,
    contactsLoggedInMs: loggedInMs - capsStart,
    readyMs: since() - capsStart,
    probes,
    probeErrors,
    ready: ready.reduce((s, v) => s + v, 0),
    asks,
    ...(firstError && { firstError }),
    ...(otherQueries.length && { otherQueries }),
  });
  if (!allReady()) throw new Error("not every contact gets notifications");
  await sleep(1000);

  // Latency: publishes at a fixed pace.
  measuring = "latency";
  const roundTrips = new Float64Array(P);
  let results = 0;
  let errors = 0;
  onResult = (id, ok, now) => {
    if (id[0] !== "l") return;
    results++;
    if (!ok) errors++;
    roundTrips[Number(id.slice(1))] = now - sentAt[Number(id.slice(1))];
  };
  out({ phase: "start" });
  let sent = 0;
  const paceStart = performance.now();
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(P - 1, Math.floor((performance.now() - paceStart) * a.rate / 1000));
      for (; sent < due; sent++) {
        sentAt[sent] = performance.now();
        owner.send(publishXml(`l${sent}`));
      }
      if (sent >= P - 1) {
        clearInterval(tick);
        resolve();
      }
    }, 1);
  });
  const expected = sent * n;
  await until(() => taken[0] + taken[1] >= expected && results >= sent, 10_000);
  const all = new Float64Array(taken[0] + taken[1]);
  all.set(samples[0].subarray(0, taken[0]));
  all.set(samples[1].subarray(0, taken[1]), taken[0]);
  all.sort();
  const local = samples[0].subarray(0, taken[0]).sort();
  const remote = samples[1].subarray(0, taken[1]).sort();
  const rt = roundTrips.subarray(0, sent).filter((v) => v > 0).sort();
  out({
    publishes: sent,
    expected,
    samples: all.length,
    missing: expected - all.length,
    duplicates,
    outOfOrder,
    errors: errors + (sent - results),
    p50: quantile(all, 0.5),
    p99: quantile(all, 0.99),
    p999: quantile(all, 0.999),
    max: all[all.length - 1],
    p50Local: quantile(local, 0.5),
    p50Remote: quantile(remote, 0.5),
    p99Local: quantile(local, 0.99),
    p99Remote: quantile(remote, 0.99),
    publishP50: quantile(rt, 0.5),
    publishP99: quantile(rt, 0.99),
    asks: asks[0] + asks[1] + asks[2],
    asks1: asks[0],
    asks2: asks[1],
    asks3: asks[2],
  });
  await sleep(2000);

  // Saturation: WINDOW publishes in flight, a new one for each result.
  measuring = "throughput";
  let running = true;
  let published = 0;
  let ok = 0;
  let tErrors = 0;
  let inFlight = 0;
  let windowPublishes = 0;
  const publish = () => {
    inFlight++;
    owner.send(publishXml(`t${published++}`));
  };
  onResult = (id, success, _now) => {
    if (id[0] !== "t") return;
    inFlight--;
    if (success) ok++;
    else tErrors++;
    if (counting) windowPublishes++;
    if (running && published < a.maxPublishes) publish();
  };
  for (let k = 0; k < a.window; k++) publish();
  await sleep(1000); // warm-up
  out({ phase: "start" });
  counting = true;
  const w0 = performance.now();
  const own0 = cpuSeconds(Deno.pid);
  await until(() => published >= a.maxPublishes, a.seconds * 1000);
  const secs = (performance.now() - w0) / 1000;
  counting = false;
  const measured = windowCount;
  out({
    notifications: measured,
    seconds: secs,
    rate: measured / secs,
    publishRate: windowPublishes / secs,
    generatorBusy: (cpuSeconds(Deno.pid) - own0) / secs,
  });
  running = false;
  await until(() => inFlight === 0, 10_000);
  await until(() => notifications >= ok * n, 10_000);
  out({
    phase: "extra",
    publishes: published,
    missing: ok * n - notifications,
    errors: tErrors + inFlight,
  });
  measuring = "off";
}

if (import.meta.main) {
  const a: Args = JSON.parse(Deno.args[0]);
  // A write to a connection closed meanwhile (a setup session) is no reason to stop.
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    console.error("pep generator: unhandled rejection:", e.reason);
  });
  const watchdog = setTimeout(() => {
    console.error("pep generator: out of time");
    Deno.exit(2);
  }, GENERATOR_LIMIT_MS - 10_000);
  Deno.unrefTimer(watchdog);
  try {
    await generator(a);
    Deno.exit(0);
  } catch (e) {
    console.error("pep generator:", e);
    Deno.exit(1);
  }
}
