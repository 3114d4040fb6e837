// External components (XEP-0114) and their balancing, with real sockets.
import assert from "node:assert/strict";
import { component, xml } from "@xmpp/component";
import { componentLogin, HEADER, RawClient } from "../helpers/raw_client.ts";
import { type TestServer, withServer } from "../helpers/server.ts";
import { parley } from "../helpers/process.ts";
import { until } from "../helpers/until.ts";
import { NS } from "../../src/xml/ns.ts";
import { pick } from "../../src/component/balance.ts";
import type { Element } from "../../src/xml/element.ts";

const MODES = ["bare_source", "source", "bare_destination", "destination", "random"];
const CONFIG = {
  hosts: [{
    domain: "localhost",
    components: [
      { domain: "gw.localhost", secret: "s3cret" },
      ...MODES.map((balance) => ({
        domain: `${balance.replace("_", "-")}.localhost`,
        secret: "s",
        balance,
      })),
    ],
  }],
  listeners: [
    { type: "c2s", bind: "127.0.0.1", port: 0, starttls: "optional", plain_without_tls: true },
    { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
    { type: "component", bind: "127.0.0.1", port: 0 },
  ],
  limits: { connections_per_ip: 1000 },
};
const componentPort = (t: TestServer) => t.server.addresses[2].port;

async function users(t: TestServer, n: number, prefix = "u"): Promise<RawClient[]> {
  const out: RawClient[] = [];
  for (let i = 0; i < n; i += 25) {
    const batch = Array.from({ length: Math.min(25, n - i) }, async (_, k) => {
      const name = `${prefix}${i + k}`;
      await t.addUser(name);
      return await RawClient.login(t.port, name, "secret", {
        starttls: false,
        mech: "PLAIN",
        resource: "r",
      });
    });
    out.push(...await Promise.all(batch));
  }
  return out;
}

/** Which instance got each message, by message id. */
function collect(instances: RawClient[]): Map<string, number> {
  const seen = new Map<string, number>();
  instances.forEach((c, i) => {
    for (const el of c.received.splice(0)) if (el.name === "message") seen.set(el.attrs.id!, i);
  });
  return seen;
}

/** Sends one message per user to the component; returns user index → instance index. */
async function round(us: RawClient[], instances: RawClient[], tag: string, to = "gw.localhost") {
  us.forEach((u, i) => u.send(`<message to='${to}' id='${tag}-${i}'><body>${i}</body></message>`));
  const got = new Map<string, number>();
  await until(() => {
    for (const [k, v] of collect(instances)) got.set(k, v);
    return got.size === us.length;
  }, `${us.length} messages (${tag})`);
  return new Map([...got].map(([id, inst]) => [Number(id.split("-")[1]), inst]));
}

withServer(
  "@xmpp/component connects, receives and sends; components are listed in disco#items",
  CONFIG,
  async (t) => {
    const [alice] = await users(t, 1, "alice");
    alice.send("<presence/>");
    const xmpp = component({
      service: `xmpp://127.0.0.1:${componentPort(t)}`,
      domain: "gw.localhost",
      password: "s3cret",
    });
    try {
      const incoming = new Promise<
        Element | { attrs: Record<string, string>; getChildText(n: string): string }
      >(
        (resolve) =>
          xmpp.on(
            "stanza",
            (s: { is(n: string): boolean }) => s.is("message") && resolve(s as never),
          ),
      );
      await xmpp.start();
      alice.send(
        "<message to='bot@gw.localhost' id='m1' type='chat'><body>hello bot</body></message>",
      );
      const m = await incoming as {
        attrs: Record<string, string>;
        getChildText(n: string): string;
      };
      assert.equal(m.attrs.from, "alice0@localhost/r");
      assert.equal(m.getChildText("body"), "hello bot");
      await xmpp.send(
        xml(
          "message",
          { from: "bot@gw.localhost", to: "alice0@localhost/r", id: "m2" },
          xml("body", {}, "hi"),
        ),
      );
      const reply = await alice.waitFor((e) => e.attrs.id === "m2");
      assert.equal(reply.attrs.from, "bot@gw.localhost");
      const items = await alice.iq("get", `<query xmlns='${NS.discoItems}'/>`, "localhost");
      const jids = items.child("query")!.elements("item").map((i) => i.attrs.jid);
      assert.ok(jids.includes("gw.localhost"));
    } finally {
      await xmpp.stop().catch(() => {});
    }
  },
);

withServer(
  "handshake errors: wrong secret, unknown domain, wrong namespace, foreign from",
  CONFIG,
  async (t) => {
    const port = componentPort(t);
    const c = await RawClient.connect(port);
    c.send(
      `<stream:stream xmlns='jabber:component:accept' xmlns:stream='${NS.streams}' to='gw.localhost'>`,
    );
    c.send("<handshake>0000</handshake>");
    assert.ok((await c.streamError()).child("not-authorized"));
    const d = await RawClient.connect(port);
    d.send(
      `<stream:stream xmlns='jabber:component:accept' xmlns:stream='${NS.streams}' to='nope.localhost'>`,
    );
    assert.ok((await d.streamError()).child("host-unknown"));
    const e = await RawClient.connect(port);
    e.send(HEADER("gw.localhost"));
    assert.ok((await e.streamError()).child("invalid-namespace"));
    const f = await componentLogin(port, "gw.localhost", "s3cret");
    f.send("<message from='someone@localhost' to='x@localhost'><body>spoof</body></message>");
    assert.ok((await f.streamError()).child("invalid-from"));
  },
);

withServer(
  "wrong secrets from one address are answered later and later; a right one is not delayed",
  { ...CONFIG, timeouts: { auth_failure_delay_ms: 100 } },
  async (t) => {
    const port = componentPort(t);
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await RawClient.connect(port);
      c.send(
        `<stream:stream xmlns='jabber:component:accept' xmlns:stream='${NS.streams}' to='gw.localhost'>`,
      );
      const sent = performance.now();
      c.send("<handshake>0000</handshake>");
      if (i === 3) {
        // While that guess waits, the right secret from another connection gets straight in.
        const before = performance.now();
        const good = await componentLogin(port, "gw.localhost", "s3cret");
        assert.ok(performance.now() - before < 400, "the right secret is not delayed");
        good.close();
      }
      assert.ok((await c.streamError(5000)).child("not-authorized"));
      waits.push(performance.now() - sent);
    }
    // 100, 200, 400, 800 ms: each at least its due and later than the one before.
    waits.forEach((w, i) => assert.ok(w >= 100 * 2 ** i - 20, `waits ${waits.map(Math.round)}`));
    for (let i = 1; i < waits.length; i++) assert.ok(waits[i] > waits[i - 1]);
  },
);

withServer(
  "4 instances, 300 users: sticky, fair, only a dead instance's users move, a new one takes a share",
  CONFIG,
  async (t) => {
    const port = componentPort(t);
    const us = await users(t, 300);
    const inst = await Promise.all(
      [0, 1, 2, 3].map(() => componentLogin(port, "gw.localhost", "s3cret")),
    );
    const first = await round(us, inst, "a");
    const again = await round(us, inst, "b");
    assert.deepEqual(again, first, "each user's messages reach the same instance");
    const counts = [0, 0, 0, 0];
    for (const i of first.values()) counts[i]++;
    for (const n of counts) assert.ok(n > 0 && n <= 2 * 75, `instance loads ${counts}`);
    // Instance 1 dies: only its users move.
    inst[1].drop();
    await until(
      () => t.server.components.get("gw.localhost")!.instances.size === 3,
      "instance removal",
    );
    const after = await round(us, inst, "c");
    for (const [u, i] of first) {
      if (i !== 1) assert.equal(after.get(u), i, `user ${u} moved although its instance lives`);
      else assert.notEqual(after.get(u), 1);
    }
    // A new instance joins: it takes a share, and nobody else moves.
    inst.push(await componentLogin(port, "gw.localhost", "s3cret"));
    const joined = await round(us, inst, "d");
    let taken = 0;
    for (const [u, i] of after) {
      if (joined.get(u) !== i) {
        assert.equal(joined.get(u), 4, "keys move only to the new instance");
        taken++;
      }
    }
    assert.ok(taken > 30, `the new instance took only ${taken} users`);
  },
);

withServer("each balance mode keys on what it says", CONFIG, async (t) => {
  const port = componentPort(t);
  const us = await users(t, 40, "m");
  // A second resource for every user, to tell bare from full JIDs.
  const second = await Promise.all(
    us.map((_, i) =>
      RawClient.login(t.port, `m${i}`, "secret", {
        starttls: false,
        mech: "PLAIN",
        resource: "two",
      })
    ),
  );
  for (const mode of MODES) {
    const domain = `${mode.replace("_", "-")}.localhost`;
    const inst = await Promise.all([0, 1, 2, 3].map(() => componentLogin(port, domain, "s")));
    const byResource = async (clients: RawClient[], tag: string, to: (i: number) => string) => {
      clients.forEach((c, i) => c.send(`<message to='${to(i)}' id='${tag}-${i}'/>`));
      const got = new Map<number, number>();
      await until(() => {
        for (const [id, v] of collect(inst)) got.set(Number(id.split("-")[1]), v);
        return got.size === clients.length;
      }, `${mode} ${tag}`);
      return got;
    };
    const toOne = () => `one@${domain}`;
    const toMany = (i: number) => `c${i}@${domain}/res${i}`;
    const a = await byResource(us, "a", toOne);
    const b = await byResource(second, "b", toOne);
    const c = await byResource(us, "c", toMany);
    const d = await byResource(second, "d", (i) => `c${i}@${domain}/other`);
    const spread = (m: Map<number, number>) => new Set(m.values()).size;
    if (mode === "bare_source") {
      assert.deepEqual(b, a, "both resources of a user go to one instance");
      assert.deepEqual(c, a, "whatever the destination");
    } else if (mode === "source") {
      assert.deepEqual(c, a, "one full JID always goes to one instance");
      assert.ok(spread(a) > 1);
    } else if (mode === "bare_destination") {
      assert.equal(spread(a), 1, "one destination, one instance");
      assert.deepEqual(d, c, "bare destination decides, not the resource");
    } else if (mode === "destination") {
      assert.equal(spread(a), 1);
      assert.ok(spread(c) > 1);
    } else {
      assert.ok(spread(a) > 1, "random spreads one user's traffic");
    }
    for (const i of inst) i.close();
  }
});

withServer(
  "failover: a dropped instance's users go to the survivor; with none left, service-unavailable",
  CONFIG,
  async (t) => {
    const port = componentPort(t);
    const [u] = await users(t, 1, "f");
    const a = await componentLogin(port, "gw.localhost", "s3cret");
    const b = await componentLogin(port, "gw.localhost", "s3cret");
    const owner = (await round([u], [a, b], "x")).get(0)!;
    const [dead, alive] = owner === 0 ? [a, b] : [b, a];
    dead.drop();
    // Once the server has seen the instance go, its users' traffic goes to the survivor (a
    // stanza for an instance gone but not yet noticed is rerouted: tests/unit/component_pool_test).
    await until(() => t.server.components.get("gw.localhost")!.instances.size === 1, "removal");
    u.send("<message to='gw.localhost' id='y-0'><body>after the drop</body></message>");
    await alive.waitFor((e) => e.attrs.id === "y-0");
    alive.drop();
    await until(
      () => t.server.components.get("gw.localhost")!.instances.size === 0,
      "no instances",
    );
    u.send("<message to='gw.localhost' id='z-0' type='chat'><body>anyone?</body></message>");
    const err = await u.waitFor((e) => e.attrs.id === "z-0");
    assert.equal(err.attrs.type, "error");
    assert.ok(err.child("error")!.child("service-unavailable"));
  },
);

withServer(
  "parley components lists each instance and the traffic it has taken",
  CONFIG,
  async (t) => {
    const [u] = await users(t, 1, "s");
    const a = await componentLogin(componentPort(t), "gw.localhost", "s3cret");
    u.send("<message to='gw.localhost' id='s-0'/>");
    await a.waitFor((e) => e.attrs.id === "s-0");
    a.send("<message from='gw.localhost' to='s0@localhost/r' id='back'/>");
    await u.waitFor((e) => e.attrs.id === "back");
    const file = `${t.dataDir}/parley.yaml`;
    await Deno.writeTextFile(file, `data_dir: ${t.dataDir}\n`);
    const out = await parley(["components", "--json", "--config", file]);
    assert.equal(out.code, 0, out.stderr);
    const gw = JSON.parse(out.stdout).find((c: { domain: string }) => c.domain === "gw.localhost");
    assert.equal(gw.balance, "bare_source");
    assert.equal(gw.instances.length, 1);
    assert.equal(gw.instances[0].received, 1);
    assert.equal(gw.instances[0].sent, 1);
    const text = await parley(["components", "--config", file]);
    assert.match(text.stdout, /gw\.localhost {2}balance=bare_source {2}instances=1/);
  },
);

withServer(
  "a component that stops reading is dropped after a bounded queue; its users move, nothing stalls",
  {
    ...CONFIG,
    limits: {
      connections_per_ip: 1000,
      max_outbound_buffer: 1 << 20,
      // Fast enough to fill the stalled instance's buffers in about a second, slow enough for
      // the other instance to read what follows.
      component_rate_bytes_per_second: 8 << 20,
      component_rate_burst_bytes: 1 << 20,
    },
  },
  async (t) => {
    const port = componentPort(t);
    const [probe] = await users(t, 1, "p");
    const stalled = await componentLogin(port, "gw.localhost", "s3cret");
    const reader = await componentLogin(port, "gw.localhost", "s3cret");
    const pool = t.server.components.get("gw.localhost")!;
    const [stalledId, readerId] = [...pool.instances.keys()];
    stalled.socket.pause();
    // Senders (another component's users) whose traffic goes to the stalled instance.
    const flooder = await componentLogin(port, "bare-source.localhost", "s");
    const mine = Array.from({ length: 200 }, (_, i) => `k${i}@bare-source.localhost`)
      .filter((k) => pick([stalledId, readerId], k) === stalledId);
    const body = "x".repeat(4000);
    let pings = 0;
    let worst = 0;
    let flooding = true;
    const pinger = (async () => {
      while (flooding) {
        const sent = performance.now();
        await probe.iq("get", "<ping xmlns='urn:xmpp:ping'/>", "localhost");
        worst = Math.max(worst, performance.now() - sent);
        pings++;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    let bytes = 0;
    try {
      while (pool.instances.has(stalledId) && bytes < 256 << 20) {
        let chunk = "";
        for (let i = 0; i < 64; i++) {
          chunk += `<message from='${
            mine[i % mine.length]
          }' to='gw.localhost'><body>${body}</body></message>`;
        }
        bytes += chunk.length;
        flooder.socket.write(chunk);
        // Paced, so that little is still on its way when the stalled instance is dropped.
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      flooding = false;
      await pinger;
    }
    assert.ok(!pool.instances.has(stalledId), `still connected after ${bytes} bytes`);
    assert.ok(worst < 1000, `a ping waited ${Math.round(worst)} ms (${pings} pings)`);
    // Its users are the reader's now.
    flooder.send(`<message from='${mine[0]}' to='gw.localhost' id='moved'/>`);
    await reader.waitFor((e) => e.attrs.id === "moved");
  },
);
