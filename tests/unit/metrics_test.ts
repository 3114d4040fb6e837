// The parts of /metrics and /health: counters, the exposition format, the event-loop sampler, the
// store's failures counted, the cached store check, the health states, and the metrics exposed,
// which must be the ones docs/monitoring.md lists.
import assert from "node:assert/strict";
import { AuthCounts, Counters, StanzaCounts } from "../../src/metrics/counters.ts";
import type { ArchiveWriter } from "../../src/mam/archive_writer.ts";
import type { Retention } from "../../src/core/retention.ts";
import { Exposition } from "../../src/metrics/exposition.ts";
import { LoopDelay, WINDOW_S } from "../../src/metrics/loop_delay.ts";
import { countFailures } from "../../src/metrics/counted_store.ts";
import { healthReport, StoreCheck } from "../../src/metrics/health.ts";
import { collectMetrics, type Monitored, type ServerState } from "../../src/metrics/metrics.ts";
import { openFds } from "../../src/metrics/process.ts";
import { UnknownItemError } from "../../src/storage/store.ts";
import { type LocalSession, type Session, SessionRegistry } from "../../src/router/sessions.ts";
import { Jid } from "../../src/jid/jid.ts";
import { ConfigError, defaultConfig, parseConfig } from "../../src/config/load.ts";
import type { ClusterNode } from "../../src/cluster/node.ts";
import type { MucService } from "../../src/muc/service.ts";
import type { ComponentPool } from "../../src/component/pool.ts";
import type { Proxy65Service } from "../../src/proxy65/service.ts";
import { documentedMetrics, parseExposition } from "../helpers/metrics.ts";
import { until } from "../helpers/until.ts";

Deno.test("stanza counts by element name and by serialized start tag", () => {
  const c = new StanzaCounts();
  for (const name of ["message", "message", "presence", "iq", "stream:features"]) c.element(name);
  for (const xml of ["<message to='a'/>", "<presence/>", "<iq type='get'/>", "<iq/>"]) c.text(xml);
  assert.deepEqual({ ...c }, { message: 3, presence: 2, iq: 3 });
});

Deno.test("auth counts: the server's mechanisms, and other for any other name", () => {
  const a = new AuthCounts();
  a.of("PLAIN").success++;
  a.of("X-UNKNOWN").failure++;
  a.of("").failure++;
  const all = Object.fromEntries(a.entries());
  assert.deepEqual(Object.keys(all), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "other"]);
  assert.deepEqual(all.PLAIN, { success: 1, failure: 0 });
  assert.deepEqual(all.other, { success: 0, failure: 2 });
});

Deno.test("exposition: HELP, TYPE, samples, escaped label values and special numbers", () => {
  const text = new Exposition()
    .add("a_total", "counter", "A count\nof things \\ here.", 3)
    .add("b", "gauge", "B.", [[{ peer: 'n"1\\\n' }, 0.5], [{ peer: "n2" }, NaN]])
    .add("c", "gauge", "Nothing yet.", [])
    .add("d", "gauge", "Infinite.", [[null, Infinity]])
    .toString();
  assert.equal(
    text,
    [
      "# HELP a_total A count\\nof things \\\\ here.",
      "# TYPE a_total counter",
      "a_total 3",
      "# HELP b B.",
      "# TYPE b gauge",
      'b{peer="n\\"1\\\\\\n"} 0.5',
      'b{peer="n2"} NaN',
      "# HELP c Nothing yet.",
      "# TYPE c gauge",
      "# HELP d Infinite.",
      "# TYPE d gauge",
      "d +Inf",
      "",
    ].join("\n"),
  );
  const parsed = { samples: new Map<string, number>(), types: new Map<string, string>() };
  parseExposition(text, parsed);
  assert.equal(parsed.samples.get('b{peer="n2"}'), NaN);
});

Deno.test("loop delay: the longest delay of each second, kept for the window", () => {
  const d = new LoopDelay();
  d.record(3, 10_000);
  d.record(12, 10_500);
  d.record(5, 11_000);
  assert.equal(d.longest(11_100), 0.012);
  // The second of 10 s leaves the window WINDOW_S seconds later.
  assert.equal(d.longest(10_000 + WINDOW_S * 1000), 0.005);
  assert.equal(d.longest(11_000 + WINDOW_S * 1000), 0);
  // A slot reused for a later second starts afresh.
  d.record(1, 10_000 + WINDOW_S * 1000);
  assert.equal(d.longest(10_000 + WINDOW_S * 1000), 0.005);
});

Deno.test("loop delay: a blocked event loop shows", async () => {
  const d = new LoopDelay();
  d.start();
  try {
    await new Promise((r) => setTimeout(r, 50));
    const start = performance.now();
    while (performance.now() - start < 120) { /* the loop is blocked */ }
    await until(() => d.longest() >= 0.08, "the sampler to see the block", 2000);
  } finally {
    d.stop();
  }
});

Deno.test("counted store: rejections and throws counted, shapes too, UnknownItemError not", async () => {
  class FakeStore {
    #secret = "s";
    ok(): Promise<string> {
      return Promise.resolve(this.#secret);
    }
    bad(): Promise<void> {
      return Promise.reject(new Error("down"));
    }
    throws(): never {
      throw new Error("sync");
    }
    unknown(): Promise<void> {
      return Promise.reject(new UnknownItemError("no such item"));
    }
    map() {
      return { get: () => Promise.reject(new Error("down")), name: "rooms" };
    }
  }
  let failures = 0;
  const store = countFailures(new FakeStore(), () => failures++);
  assert.equal(await store.ok(), "s");
  await assert.rejects(store.bad(), /down/);
  assert.throws(() => store.throws(), /sync/);
  await assert.rejects(store.unknown(), UnknownItemError);
  const shape = store.map();
  assert.equal(shape.name, "rooms");
  await assert.rejects(shape.get(), /down/);
  assert.equal(failures, 3);
  assert.ok(store instanceof FakeStore);
});

Deno.test("store check: one probe for a flood, again after the cache, bounded when it hangs", async () => {
  let probes = 0;
  let answer: () => Promise<unknown> = () => Promise.resolve();
  const check = new StoreCheck(
    () => {
      probes++;
      return answer();
    },
    100,
    300,
  );
  const flood = await Promise.all(Array.from({ length: 50 }, () => check.problem()));
  assert.ok(flood.every((p) => p === null));
  assert.equal(probes, 1);
  assert.equal(await check.problem(), null);
  assert.equal(probes, 1, "cached");

  answer = () => Promise.reject(new Error("gone"));
  await new Promise((r) => setTimeout(r, 310));
  assert.equal(await check.problem(), "the store is unreachable");
  assert.equal(probes, 2);

  let release!: () => void;
  answer = () => new Promise<void>((r) => release = r);
  await new Promise((r) => setTimeout(r, 310));
  const t0 = Date.now();
  assert.equal(await check.problem(), "the store did not answer in time");
  assert.ok(Date.now() - t0 < 1000);
  await new Promise((r) => setTimeout(r, 310));
  assert.equal(await check.problem(), "the store did not answer in time");
  assert.equal(probes, 3, "no second probe while one hangs");
  release();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(await check.problem(), null);
});

Deno.test("session registry: local sessions by transport, through binds, replacements and ends", () => {
  const r = new SessionRegistry();
  const local = (user: string, kind: string) =>
    ({
      jid: new Jid(user, "localhost", "r"),
      node: null,
      transport: { kind },
    }) as unknown as LocalSession;
  const a = local("a", "tcp"), b = local("b", "websocket"), a2 = local("a", "bosh");
  r.put(a);
  r.put(b);
  assert.deepEqual({ ...r.byTransport }, { tcp: 1, websocket: 1, bosh: 0 });
  // a2 binds a's full JID: a is replaced.
  r.put(a2);
  assert.deepEqual({ ...r.byTransport }, { tcp: 0, websocket: 1, bosh: 1 });
  assert.equal(r.drop(a), false);
  // A remote record taking b's full JID, then b's end: nothing counted twice.
  r.put({ jid: b.jid, node: "n2", boundAt: 1 } as unknown as Session);
  assert.equal(r.drop(b), false);
  r.drop(a2);
  assert.deepEqual({ ...r.byTransport }, { tcp: 0, websocket: 0, bosh: 0 });
  assert.equal(r.size, 0);
});

/** A server as /metrics reads it: two peers (one down), a room, a component, a proxy stream. */
function fakeServer(state: ServerState = "running"): Monitored {
  const member = (node: string, state: string, sessions: number, rttMs: number | null) => ({
    node,
    state,
    sessions,
    rttMs,
    queuedBytes: state === "up" ? 42 : 0,
  });
  return {
    config: { ...defaultConfig(), cluster: { node: "n1" } } as unknown as Monitored["config"],
    counters: new Counters(),
    sessions: new SessionRegistry(),
    resumption: undefined,
    archive: { written: 7, dropped: 1, backlog: 2 } as unknown as ArchiveWriter,
    retention: { removed: 3 } as unknown as Retention,
    cluster: {
      members: () => [
        member("n1", "self", 2, null),
        member("n2", "up", 3, 1.5),
        member("n3", "down", 0, null),
      ],
    } as unknown as ClusterNode,
    mucs: new Map([["conference.localhost", {
      rooms: new Map([["a", { occupantCount: 3 }], ["b", { occupantCount: 1 }]]),
    } as unknown as MucService]]),
    components: new Map([["bot.localhost", {
      domain: "bot.localhost",
      node: "n1",
      instances: new Map([["n1/x", { node: "n1" }], ["n2/y", { node: "n2" }]]),
    } as unknown as ComponentPool]]),
    proxies: new Map([["proxy.localhost", {
      relay: { pairs: new Map([["h1", { owner: "a@localhost" }], ["h2", {}]]) },
    } as unknown as Proxy65Service]]),
    state,
  };
}

Deno.test("metrics: values read from the server, and exactly the metrics documented", async () => {
  const server = fakeServer();
  server.counters.stanzasIn.element("message");
  server.counters.auth.of("PLAIN").failure++;
  server.counters.storeErrors = 4;
  const loop = new LoopDelay();
  loop.record(7, performance.now());
  const parsed = { samples: new Map<string, number>(), types: new Map<string, string>() };
  parseExposition(await collectMetrics(server, loop), parsed);
  const s = parsed.samples;
  assert.equal(s.get("parley_cluster_sessions"), 5);
  assert.equal(s.get('parley_cluster_peer_up{peer="n2"}'), 1);
  assert.equal(s.get('parley_cluster_peer_up{peer="n3"}'), 0);
  assert.equal(s.has('parley_cluster_peer_up{peer="n1"}'), false);
  assert.equal(s.get('parley_cluster_peer_rtt_seconds{peer="n2"}'), 0.0015);
  assert.equal(s.has('parley_cluster_peer_rtt_seconds{peer="n3"}'), false);
  assert.equal(s.get('parley_cluster_queued_bytes{peer="n2"}'), 42);
  assert.equal(s.get("parley_muc_rooms"), 2);
  assert.equal(s.get("parley_muc_occupants"), 4);
  assert.equal(s.get('parley_components_instances{domain="bot.localhost"}'), 1);
  assert.equal(s.get("parley_s5b_streams"), 1);
  assert.equal(s.get('parley_stanzas_total{direction="in",kind="message"}'), 1);
  assert.equal(s.get('parley_auth_total{mechanism="PLAIN",result="failure"}'), 1);
  assert.equal(s.get("parley_store_errors_total"), 4);
  assert.equal(s.get("parley_event_loop_delay_seconds"), 0.007);
  assert.equal(s.get('parley_sessions{transport="bosh"}'), 0);

  const exposed = [...parsed.types.keys()];
  const documented = documentedMetrics();
  // process_open_fds is left out where it cannot be counted.
  const expected = (await openFds()) === undefined
    ? documented.filter((m) => m !== "process_open_fds")
    : documented;
  assert.deepEqual([...exposed].sort(), [...expected].sort());
});

Deno.test("health: 503 while starting or stopping, and when the store fails", async () => {
  const ok = new StoreCheck(() => Promise.resolve());
  assert.deepEqual(await healthReport(fakeServer("starting"), ok), {
    status: 503,
    body: { status: "unavailable", reason: "starting", node: "n1", sessions: 0 },
  });
  assert.equal((await healthReport(fakeServer("stopping"), ok)).body.reason, "shutting down");
  assert.deepEqual(await healthReport(fakeServer("running"), ok), {
    status: 200,
    body: { status: "ok", node: "n1", sessions: 0 },
  });
  const failing = new StoreCheck(() => Promise.reject(new Error("down")));
  const down = await healthReport(fakeServer("running"), failing);
  assert.equal(down.status, 503);
  assert.equal(down.body.reason, "the store is unreachable");
});

Deno.test("open descriptors: counted as /proc/self/fd lists them (Linux)", async () => {
  if (Deno.build.os !== "linux") return;
  const counted = await openFds();
  assert.ok(counted !== undefined);
  const file = await Deno.open(new URL(import.meta.url));
  try {
    assert.equal(await openFds(), counted + 1);
  } finally {
    file.close();
  }
});

Deno.test("metrics.allow: each entry an address or CIDR range, checked with the configuration", () => {
  const config = parseConfig('metrics:\n  allow: ["10.0.0.0/8", "::1", "fe80::/10"]\n', "a.yaml");
  assert.deepEqual(config.metrics.allow, ["10.0.0.0/8", "::1", "fe80::/10"]);
  assert.throws(
    () => parseConfig('metrics:\n  allow: ["10.0.0.0/8", "localhost", "10.0.0.0/33"]\n', "b.yaml"),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.deepEqual(e.problems, [
        "b.yaml:2:25: metrics.allow[1]: is not an IP address or CIDR range",
        "b.yaml:2:38: metrics.allow[2]: is not an IP address or CIDR range",
      ]);
      return true;
    },
  );
});
