// External components across a three-node cluster, every node its own `parley serve` process:
// one pool per domain over all nodes, with real component libraries (@xmpp/component in this
// process, slixmpp's ComponentXMPP as separate Python processes, tests/interop/component_echo.py).
// Each instance echoes a user's message back with its own name, so the user sees who served it.
import assert from "node:assert/strict";
import { component, xml } from "@xmpp/component";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import { until } from "../helpers/until.ts";
import { parley } from "../helpers/process.ts";
import { adminRequest, type ComponentStatus } from "../../src/admin/socket.ts";

const SECRET = "s3cret";
const MODES = ["bare_source", "source", "bare_destination", "destination", "random"];
const modeDomain = (mode: string) => `${mode.replace("_", "-")}.localhost`;
const DISCO_INFO = "http://jabber.org/protocol/disco#info";

/** An instance of a component: what reached it (message ids), and a way to kill it. */
interface Instance {
  name: string;
  node: number;
  got: Set<string>;
  kill(): Promise<void>;
}

/** @xmpp/component: echoes messages, names itself in disco#info, and can ask users things. */
async function libInstance(c: TestCluster, node: number, domain: string, name: string) {
  const xmpp = component({
    service: `xmpp://${c.nodes[node].host}:${c.nodes[node].process!.ports[1]}`,
    domain,
    password: SECRET,
  });
  const got = new Set<string>();
  /** Ids of the iq answers that reached this instance. */
  const answers: string[] = [];
  xmpp.on("error", () => {});
  xmpp.on("stanza", (s: { is(n: string): boolean; attrs: Record<string, string> }) => {
    if (s.is("iq") && (s.attrs.type === "result" || s.attrs.type === "error")) {
      answers.push(s.attrs.id);
    }
    if (!s.is("message") || s.attrs.type === "error") return;
    got.add(s.attrs.id);
    xmpp.send(xml("message", { from: s.attrs.to, to: s.attrs.from, id: s.attrs.id }, [
      xml("body", {}, name),
    ])).catch(() => {});
  });
  xmpp.iqCallee.get(
    DISCO_INFO,
    "query",
    () =>
      xml(
        "query",
        { xmlns: DISCO_INFO },
        xml("identity", { category: "gateway", type: "echo", name }),
      ),
  );
  await xmpp.start();
  return {
    name,
    node,
    got,
    answers,
    xmpp,
    async kill() {
      xmpp.reconnect.stop();
      await xmpp.stop().catch(() => {});
    },
  };
}

/** slixmpp's ComponentXMPP in its own process; killed with SIGKILL. */
async function slixInstance(c: TestCluster, node: number, domain: string, name: string) {
  const port = String(c.nodes[node].process!.ports[1]);
  const script = new URL("../interop/component_echo.py", import.meta.url).pathname;
  const child = new Deno.Command("/usr/bin/python3", {
    args: [script, c.nodes[node].host, port, domain, SECRET, name],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const got = new Set<string>();
  const ready = Promise.withResolvers<void>();
  void (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (line.ready) ready.resolve();
        if (line.got) got.add(line.got);
      }
    }
    ready.reject(new Error(`${name} exited before connecting`));
  })();
  await ready.promise;
  return {
    name,
    node,
    got,
    async kill() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    },
  };
}

/** The pool of `domain` as node i lists it (`parley components --json`). */
async function listed(c: TestCluster, i: number, domain: string) {
  const all = await adminRequest(c.nodes[i].dataDir, { cmd: "components" }) as ComponentStatus[];
  return all.find((s) => s.domain === domain)!;
}

async function poolSize(c: TestCluster, nodes: number[], domain: string, n: number) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const sizes = await Promise.all(
      nodes.map(async (i) => (await listed(c, i, domain)).instances.length),
    );
    if (sizes.every((s) => s === n)) return;
    if (Date.now() > deadline) throw new Error(`${domain}: ${sizes} instances, not ${n}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Each user sends one message to `to(i)`; returns user index → the instance that echoed it. */
async function round(
  us: RawClient[],
  tag: string,
  to: (i: number) => string = () => "gw.localhost",
): Promise<Map<number, string>> {
  us.forEach((u, i) => u.send(`<message to='${to(i)}' id='${tag}-${i}'><body>hi</body></message>`));
  const out = new Map<number, string>();
  await until(
    () => {
      us.forEach((u, i) => {
        const k = u.received.findIndex((e) => e.name === "message" && e.attrs.id === `${tag}-${i}`);
        if (k >= 0) out.set(i, u.received.splice(k, 1)[0].child("body")!.text());
      });
      return out.size === us.length;
    },
    `${us.length} echoes (${tag})`,
    15_000,
  );
  return out;
}

function loads(m: Map<number, string>): Map<string, number> {
  const out = new Map<string, number>();
  for (const name of m.values()) out.set(name, (out.get(name) ?? 0) + 1);
  return out;
}

async function loginAll(c: TestCluster, n: number, node: (i: number) => number, res: string) {
  const out: RawClient[] = [];
  for (let i = 0; i < n; i += 30) {
    const batch = Array.from(
      { length: Math.min(30, n - i) },
      (_, k) => c.login(node(i + k), `u${i + k}`, res),
    );
    out.push(...await Promise.all(batch));
  }
  return out;
}

Deno.test({
  name: "components across three nodes: one pool, sticky, fair, iq answers to the asker, " +
    "only a dead instance's or node's users move, none lost, a returning instance takes its keys " +
    "back, every balance mode holds cluster-wide",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const components = [
      // A long grace: an instance back on its node within it takes exactly its keys back.
      { domain: "gw.localhost", secret: SECRET, reconnect_grace_ms: 60_000 },
      ...MODES.map((balance) => ({ domain: modeDomain(balance), secret: SECRET, balance })),
    ];
    const c = await startCluster(3, {
      overrides: {
        hosts: [{ domain: "localhost", components }],
        limits: { connections_per_ip: 10_000 },
        listeners: [
          {
            type: "c2s",
            bind: "{node_host}",
            port: 0,
            starttls: "optional",
            plain_without_tls: true,
          },
          { type: "component", bind: "{node_host}", port: 0 },
        ],
      },
    });
    const instances: Instance[] = [];
    const clients: RawClient[] = [];
    try {
      await c.formed();
      for (let i = 0; i < 300; i++) await c.addUser(`u${i}`);
      // 300 users, 100 per node, and each again on the next node.
      const us = await loginAll(c, 300, (i) => i % 3, "r");
      const again = await loginAll(c, 300, (i) => (i + 1) % 3, "other");
      clients.push(...us, ...again);
      // 6 instances, 2 per node: @xmpp/component and slixmpp on every node.
      for (let k = 0; k < 6; k++) {
        const make = k < 3 ? libInstance : slixInstance;
        instances.push(await make(c, k % 3, "gw.localhost", `I${k}`));
      }
      await poolSize(c, [0, 1, 2], "gw.localhost", 6);
      // Every node lists the same instances with their nodes.
      const views = await Promise.all([0, 1, 2].map((i) => listed(c, i, "gw.localhost")));
      for (const v of views) {
        assert.deepEqual(
          v.instances.map((i) => [i.id, i.node]),
          views[0].instances.map((i) => [i.id, i.node]),
        );
        assert.deepEqual(v.instances.map((i) => i.node).sort(), [
          "n1",
          "n1",
          "n2",
          "n2",
          "n3",
          "n3",
        ]);
        const share = v.instances.reduce((s, i) => s + i.share, 0);
        assert.ok(Math.abs(share - 1) < 1e-6, `shares add up to ${share}`);
      }
      // `parley cluster status` counts each member's instances and lists them all.
      const status = ["cluster", "status", "--config", c.configFile, "--node", "n2"];
      const members = JSON.parse((await parley([...status, "--json"])).stdout);
      assert.deepEqual(members.map((m: { components: number }) => m.components), [2, 2, 2]);
      const table = (await parley(status)).stdout;
      assert.match(table, /gw\.localhost {2}balance=bare_source {2}instances=6/);
      assert.equal(table.match(/^ {2}n[123]\/\S+ +n[123] /gm)?.length, 6, table);

      // Sticky whichever node the user is on, and fair.
      const first = await round(us, "a");
      assert.deepEqual(await round(us, "b"), first, "each user's messages reach one instance");
      assert.deepEqual(await round(again, "c"), first, "the same from the user's other node");
      for (const [name, n] of loads(first)) assert.ok(n <= 2 * 50, `${name} took ${n} of 300`);
      assert.equal(loads(first).size, 6);
      const [counted] = (await listed(c, 0, "gw.localhost")).instances.filter((i) =>
        i.node === "n3"
      );
      assert.ok(counted.received > 0 && counted.sent > 0, "n1 lists n3's counters");

      // iq: a user's request is answered by its instance, wherever the user is; an instance's
      // request is answered to that instance, never to another one.
      const askers = instances.slice(0, 3) as Awaited<ReturnType<typeof libInstance>>[];
      for (const [k, asker] of askers.entries()) {
        // A user on another node than its instance.
        const i = [...first].find(([i, name]) => name === asker.name && i % 3 !== k)![0];
        const answer = await us[i].iq("get", `<query xmlns='${DISCO_INFO}'/>`, "gw.localhost");
        assert.equal(answer.child("query")!.child("identity")!.attrs.name, asker.name);
      }
      for (const [k, asker] of askers.entries()) {
        // A user on another node whose traffic goes to another instance.
        const u = [...first].find(([i, name]) => name !== asker.name && i % 3 !== k)![0];
        const request = asker.xmpp.iqCaller.request(
          xml(
            "iq",
            { type: "get", to: `u${u}@localhost/r`, from: "gw.localhost" },
            xml("query", { xmlns: "urn:test" }),
          ),
          5000,
        );
        const got = await us[u].waitFor((e) => e.name === "iq" && e.attrs.type === "get");
        us[u].send(`<iq type='result' to='gw.localhost' id='${got.attrs.id}'/>`);
        const result = await request;
        assert.equal(result.attrs.type, "result", `${asker.name} got its answer`);
        assert.equal(result.attrs.id, asker.answers.at(-1), "with the id it gave");
      }
      for (const asker of askers) assert.equal(asker.answers.length, 1, "nobody else's answers");

      // One instance killed: only its users move, on every node.
      const victim = instances[4];
      await victim.kill();
      await poolSize(c, [0, 1, 2], "gw.localhost", 5);
      const moved = await round(us, "d");
      const movedAgain = await round(again, "e");
      for (const [u, name] of first) {
        if (name !== victim.name) assert.equal(moved.get(u), name, `u${u} moved`);
        else assert.notEqual(moved.get(u), victim.name);
        assert.equal(movedAgain.get(u), moved.get(u), `u${u} sticky across nodes after the move`);
      }

      // It comes back to its node within the grace: exactly its users come back to it.
      instances[4] = await slixInstance(c, victim.node, "gw.localhost", "I4b");
      await poolSize(c, [0, 1, 2], "gw.localhost", 6);
      const back = await round(us, "f");
      for (const [u, name] of first) assert.equal(back.get(u), name === "I4" ? "I4b" : name);

      // Each balance mode's rule, with users and instances on every node.
      for (const mode of MODES) {
        const domain = modeDomain(mode);
        const inst = await Promise.all(
          [0, 1, 2].map((n) => libInstance(c, n, domain, `${mode}${n}`)),
        );
        try {
          await poolSize(c, [0, 1, 2], domain, 3);
          const some = us.slice(0, 60);
          const others = again.slice(0, 60);
          const one = () => `one@${domain}`;
          const a = await round(some, `${mode}-a`, one);
          const b = await round(others, `${mode}-b`, one);
          const cc = await round(some, `${mode}-c`, (i) => `c${i}@${domain}/res${i}`);
          const d = await round(others, `${mode}-d`, (i) => `c${i}@${domain}/other`);
          const spread = (m: Map<number, string>) => new Set(m.values()).size;
          if (mode === "bare_source") {
            assert.deepEqual(b, a, "both resources of a user, on two nodes, go to one instance");
            assert.deepEqual(cc, a, "whatever the destination");
          } else if (mode === "source") {
            assert.deepEqual(cc, a, "one full JID always goes to one instance");
            assert.ok(spread(a) > 1);
          } else if (mode === "bare_destination") {
            const all = new Set([...a.values(), ...b.values()]);
            assert.equal(all.size, 1, "one destination, one instance, from any node");
            assert.deepEqual(d, cc, "the bare destination decides, not the resource");
          } else if (mode === "destination") {
            assert.equal(spread(a), 1);
            assert.deepEqual(b, a);
            assert.ok(spread(cc) > 1);
          } else {
            assert.ok(spread(a) > 1, "random spreads one user's traffic");
          }
        } finally {
          for (const i of inst) await i.kill();
        }
      }

      // kill -9 of n3 while users on n1 and n2 send: its instances leave every view, their
      // users move to the others, and every message reaches an instance or comes back bounced.
      const survivors = us.filter((_, i) => i % 3 !== 2);
      const index = us.map((_, i) => i).filter((i) => i % 3 !== 2);
      const sent: string[] = [];
      let seq = 0;
      let stop = false;
      const traffic = (async () => {
        while (!stop) {
          for (let k = 0; k < 10; k++) {
            const j = seq++ % survivors.length;
            const id = `k-${index[j]}-${seq}`;
            sent.push(id);
            survivors[j].send(`<message to='gw.localhost' id='${id}'><body>x</body></message>`);
          }
          await new Promise((r) => setTimeout(r, 10));
        }
      })();
      await new Promise((r) => setTimeout(r, 300));
      await c.kill(2);
      await poolSize(c, [0, 1], "gw.localhost", 4);
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
      await traffic;
      const bounced = new Set<string>();
      const delivered = () => new Set(instances.flatMap((i) => [...i.got]));
      await until(
        () => {
          for (const u of survivors) {
            for (const e of u.received) {
              if (e.name === "message" && e.attrs.type === "error") bounced.add(e.attrs.id!);
            }
          }
          const got = delivered();
          return sent.every((id) => got.has(id) || bounced.has(id));
        },
        "every message delivered or bounced",
        15_000,
      ).catch(() => {});
      const got = delivered();
      const lost = sent.filter((id) => !got.has(id) && !bounced.has(id));
      assert.deepEqual(lost, [], `${lost.length} of ${sent.length} messages lost`);
      assert.ok(sent.length > 200, `only ${sent.length} sent`);
      const onN3 = new Set(instances.filter((i) => i.node === 2).map((i) => i.name));
      const after = await round(survivors, "g");
      survivors.forEach((_, j) => {
        const before = back.get(index[j])!;
        if (!onN3.has(before)) assert.equal(after.get(j), before, `u${index[j]} moved`);
        else assert.ok(!onN3.has(after.get(j)!), `u${index[j]} still served by n3`);
      });
    } finally {
      for (const u of clients) u.close();
      for (const i of instances) await i.kill();
      await c.stop();
    }
  },
});
