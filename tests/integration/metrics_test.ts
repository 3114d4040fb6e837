// /metrics and /health on a real server: what a login, a failed login and a few stanzas move,
// sessions by transport, who may read /metrics (behind a trusted proxy: the forwarded address),
// and /health as the store goes away and the server stops.
import assert from "node:assert/strict";
import { client } from "@xmpp/client";
import { serverTest, startServer, type TestServer } from "../helpers/server.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { BoshClient } from "../helpers/bosh_client.ts";
import { eventually } from "../helpers/until.ts";
import { health, scrape } from "../helpers/metrics.ts";
import { CONTENT_TYPE } from "../../src/metrics/exposition.ts";

const base = (t: TestServer) => `http://127.0.0.1:${t.httpPort}`;
const stanzas = (direction: string, kind: string) =>
  `parley_stanzas_total{direction="${direction}",kind="${kind}"}`;
const auth = (mechanism: string, result: string) =>
  `parley_auth_total{mechanism="${mechanism}",result="${result}"}`;
const sessions = (transport: string) => `parley_sessions{transport="${transport}"}`;

serverTest("metrics: a login, a failed one and stanzas move the counters and gauges", async () => {
  const t = await startServer();
  const clients: RawClient[] = [];
  try {
    await t.addUser("alice");
    await t.addUser("bob");
    const before = await scrape(base(t));
    assert.equal(before.status, 200);
    assert.equal(before.contentType, CONTENT_TYPE);
    assert.equal(before.samples.get(sessions("tcp")), 0);
    assert.equal(before.samples.get(auth("SCRAM-SHA-256", "success")), 0);
    assert.equal(before.types.get("parley_stanzas_total"), "counter");
    assert.equal(before.types.get("parley_sessions"), "gauge");
    assert.equal(before.samples.get('parley_build_info{version="0.1.0"}'), 1);
    for (
      const name of [
        "process_resident_memory_bytes",
        "deno_heap_used_bytes",
        "process_open_fds",
        "parley_event_loop_delay_seconds",
        "parley_store_errors_total",
        "parley_cluster_sessions",
        "parley_muc_rooms",
        "parley_s5b_streams",
        'parley_sessions_resumable{state="detached"}',
      ]
    ) {
      assert.ok(before.samples.has(name), name);
    }
    assert.ok(before.samples.get("process_open_fds")! > 0);

    // A wrong password: one failure of SCRAM-SHA-256.
    const wrong = await RawClient.connect(t.port);
    clients.push(wrong);
    await wrong.open();
    assert.equal(await wrong.scram("alice", "not the password"), false);

    const alice = await RawClient.login(t.port, "alice", "secret", {
      starttls: false,
      resource: "desk",
    });
    const bob = await RawClient.login(t.port, "bob", "secret", { starttls: false, mech: "PLAIN" });
    clients.push(alice, bob);
    alice.send(`<message to='${bob.jid}' type='chat' id='m1'><body>hi</body></message>`);
    await bob.waitFor((e) => e.name === "message" && e.attrs.id === "m1");
    await alice.iq("get", "<ping xmlns='urn:xmpp:ping'/>", "localhost");

    const after = await scrape(base(t));
    const moved = (key: string) => after.samples.get(key)! - before.samples.get(key)!;
    assert.equal(after.samples.get(sessions("tcp")), 2);
    assert.equal(after.samples.get(sessions("websocket")), 0);
    assert.equal(after.samples.get("parley_cluster_sessions"), 2);
    assert.equal(moved(auth("SCRAM-SHA-256", "success")), 1);
    assert.equal(moved(auth("SCRAM-SHA-256", "failure")), 1);
    assert.equal(moved(auth("PLAIN", "success")), 1);
    assert.equal(moved(stanzas("in", "message")), 1);
    assert.equal(moved(stanzas("out", "message")), 1);
    assert.equal(moved(stanzas("in", "iq")), 1);
    assert.equal(moved(stanzas("out", "iq")), 1);

    // Gone: the gauge follows.
    bob.close();
    await eventually(
      async () => (await scrape(base(t))).samples.get(sessions("tcp")) === 1,
      "bob's session to end",
    );
  } finally {
    for (const c of clients) c.close();
    await t.stop();
  }
});

serverTest("metrics: WebSocket and BOSH sessions count as their transports", async () => {
  const t = await startServer();
  let bosh: BoshClient | undefined;
  const ws = client({
    service: `ws://127.0.0.1:${t.httpPort}/xmpp-websocket`,
    domain: "localhost",
    username: "carol",
    password: "secret",
    resource: "browser",
  });
  try {
    await t.addUser("carol");
    await ws.start();
    bosh = await BoshClient.login(t, "carol", { attrs: "wait='1' hold='1'", resource: "web" });
    const s = await scrape(base(t));
    assert.equal(s.samples.get(sessions("websocket")), 1);
    assert.equal(s.samples.get(sessions("bosh")), 1);
    assert.equal(s.samples.get(sessions("tcp")), 0);
    // Both clients chose SCRAM-SHA-1.
    assert.equal(s.samples.get(auth("SCRAM-SHA-1", "success")), 2);
  } finally {
    await ws.stop().catch(() => {});
    await t.stop();
    await bosh?.settled().catch(() => {});
  }
});

serverTest("metrics: refused (403) to an address outside metrics.allow", async () => {
  const t = await startServer({ metrics: { allow: ["10.0.0.0/8"] } });
  try {
    const s = await scrape(base(t));
    assert.equal(s.status, 403);
    assert.doesNotMatch(s.text, /parley_/);
    // A forwarded address is not believed from a proxy that is not trusted.
    assert.equal((await scrape(base(t), { "x-forwarded-for": "10.1.2.3" })).status, 403);
    // /health is for anyone.
    assert.equal((await health(base(t))).status, 200);
  } finally {
    await t.stop();
  }
});

serverTest(
  "metrics: behind a trusted proxy, the forwarded address is the one checked",
  async () => {
    const t = await startServer({
      metrics: { allow: ["10.0.0.0/8"] },
      listeners: [
        { type: "c2s", bind: "127.0.0.1", port: 0, starttls: "optional", plain_without_tls: true },
        { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
        { type: "http", bind: "127.0.0.1", port: 0, trusted_proxies: ["127.0.0.1"] },
      ],
    });
    try {
      const allowed = await scrape(base(t), { "x-forwarded-for": "10.1.2.3" });
      assert.equal(allowed.status, 200);
      assert.ok(allowed.samples.has(sessions("tcp")));
      assert.equal((await scrape(base(t), { "x-forwarded-for": "192.0.2.7" })).status, 403);
      // The proxy itself (no forwarded address) is not in the list.
      assert.equal((await scrape(base(t))).status, 403);
    } finally {
      await t.stop();
    }
  },
);

serverTest("health: 200 while serving, 503 once the store is gone, failures counted", async () => {
  const t = await startServer();
  try {
    await t.addUser("alice");
    const ok = await health(base(t));
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, { status: "ok", node: null, sessions: 0 });
    const errors = (await scrape(base(t))).samples.get("parley_store_errors_total")!;

    await t.server.store.close();
    // The last answer is kept up to a second.
    await eventually(async () => (await health(base(t))).status === 503, "health 503", 5000);
    const down = await health(base(t));
    assert.equal(down.body.status, "unavailable");
    assert.match(String(down.body.reason), /store/);

    // A login needs the store: it fails, and the failure is counted.
    const c = await RawClient.connect(t.port);
    try {
      await c.open();
      assert.equal(await c.scram("alice", "secret"), false);
    } finally {
      c.close();
    }
    const after = await scrape(base(t));
    assert.ok(after.samples.get("parley_store_errors_total")! > errors);
    assert.equal(after.samples.get(auth("SCRAM-SHA-256", "failure")), 1);
  } finally {
    await t.stop();
  }
});

serverTest("health: the server is stopping from the moment stop() begins", async () => {
  const t = await startServer();
  assert.equal(t.server.state, "running");
  assert.equal((await health(base(t))).status, 200);
  const stopped = t.stop();
  assert.equal(t.server.state, "stopping");
  await stopped;
  assert.equal(t.server.state, "stopping");
});
