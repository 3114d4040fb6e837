// Node-to-node links over real sockets on loopback aliases (n1 on 127.0.0.1, n2 on 127.0.0.2,
// n3 on 127.0.0.3) with certificates from Parley's own PKI.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { captureLogs } from "../helpers/logs.ts";
import { Mesh, type MeshOptions, PROTOCOL_VERSION } from "../../src/cluster/mesh.ts";
import { FIRST_APP_TYPE } from "../../src/cluster/frames.ts";
import type { ClusterTls } from "../../src/cluster/tls.ts";
import { type TestPki, testPki } from "../helpers/cluster_pki.ts";
import { type FaultMode, FaultProxy } from "../helpers/fault_proxy.ts";
import { until } from "../helpers/until.ts";

const HOSTS: Record<string, string> = { n1: "127.0.0.1", n2: "127.0.0.2", n3: "127.0.0.3" };
const decoder = new TextDecoder();

/** A free port on every alias (the same number, so addresses read n1/n2/n3). */
function freePort(): number {
  for (;;) {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    try {
      for (const host of Object.values(HOSTS).slice(1)) {
        Deno.listen({ hostname: host, port }).close();
      }
      return port;
    } catch { /* taken on another alias: try another */ }
  }
}

/** A mesh node that records what it sees. */
class TestNode {
  mesh!: Mesh;
  readonly log: string[] = [];
  readonly ups = new Map<string, number>();
  readonly messages: string[] = [];
  downAt = new Map<string, number>();

  constructor(readonly name: string, readonly options: MeshOptions) {}

  async start(): Promise<this> {
    this.mesh = new Mesh(this.options, {
      up: (peer, incarnation) => {
        this.log.push(`up ${peer}`);
        this.ups.set(peer, incarnation);
      },
      down: (peer) => {
        this.log.push(`down ${peer}`);
        this.ups.delete(peer);
        this.downAt.set(peer, performance.now());
      },
      message: (peer, type, payload) =>
        this.messages.push(`${peer} ${type} ${decoder.decode(payload)}`),
    });
    await this.mesh.start();
    return this;
  }

  linked(...peers: string[]): boolean {
    return peers.every((p) => this.ups.has(p));
  }
}

interface Cluster {
  pki: TestPki;
  port: number;
  node(name: string, extra?: Partial<MeshOptions>, creds?: ClusterTls): Promise<TestNode>;
  stop(): Promise<void>;
}

async function cluster(names = ["n1", "n2", "n3"]): Promise<Cluster> {
  const pki = await testPki(names);
  const port = freePort();
  const nodes: TestNode[] = [];
  return {
    pki,
    port,
    async node(name, extra = {}, creds) {
      const node = new TestNode(name, {
        node: name,
        listen: { host: HOSTS[name], port },
        peers: names.map((n) => ({ node: n, host: HOSTS[n], port })),
        tls: creds ?? await pki.creds(name),
        heartbeatMs: 100,
        deadAfterMs: 500,
        backoff: { minMs: 20, maxMs: 200 },
        ...extra,
      });
      nodes.push(node);
      return await node.start();
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.mesh.stop()));
      await pki.remove();
    },
  };
}

/** Log records of the "parley" loggers while `fn` runs. */
async function withLogs(fn: (logs: () => string[]) => Promise<void>): Promise<void> {
  const { records, release } = captureLogs("info");
  try {
    await fn(() => records.map((r) => r.message.map((p, i) => i % 2 ? String(p) : p).join("")));
  } finally {
    release();
  }
}

const logged = (logs: () => string[], re: RegExp) => () => logs().some((l) => re.test(l));

Deno.test("three nodes form a full mesh in any start order; messages go both ways", async () => {
  for (const order of [["n3", "n1", "n2"], ["n2", "n3", "n1"]]) {
    const c = await cluster();
    try {
      const nodes: Record<string, TestNode> = {};
      for (const name of order) nodes[name] = await c.node(name);
      const { n1, n2, n3 } = nodes;
      await until(
        () => n1.linked("n2", "n3") && n2.linked("n1", "n3") && n3.linked("n1", "n2"),
        "a full mesh",
      );
      assert.ok(n1.mesh.send("n3", FIRST_APP_TYPE, "from n1"));
      assert.ok(n3.mesh.send("n1", FIRST_APP_TYPE + 1, new TextEncoder().encode("from n3")));
      await until(() => n3.messages.length > 0 && n1.messages.length > 0, "messages");
      assert.deepEqual(n3.messages, [`n1 ${FIRST_APP_TYPE} from n1`]);
      assert.deepEqual(n1.messages, [`n3 ${FIRST_APP_TYPE + 1} from n3`]);
      // Exactly one link per pair: each node saw each peer come up once and never go down.
      for (const n of [n1, n2, n3]) {
        assert.equal(n.log.filter((e) => e.startsWith("down")).length, 0);
      }
      for (const n of [n1, n2, n3]) assert.equal(n.log.length, 2, `${n.name}: ${n.log}`);
      assert.equal(n2.ups.get("n1"), n1.mesh.incarnation);
    } finally {
      await c.stop();
    }
  }
});

Deno.test("nodes started at the same moment keep exactly one link per pair", async () => {
  for (let round = 0; round < 3; round++) {
    const c = await cluster();
    try {
      const [n1, n2, n3] = await Promise.all(["n1", "n2", "n3"].map((n) => c.node(n)));
      await until(
        () => n1.linked("n2", "n3") && n2.linked("n1", "n3") && n3.linked("n1", "n2"),
        "a full mesh",
      );
      // Each connection a node dialled is settled either way (no handshake left pending).
      await until(
        () => [n1, n2, n3].every((n) => n.mesh.status().every((s) => s.state === "up")),
        "settled",
      );
      for (const n of [n1, n2, n3]) {
        assert.deepEqual(
          n.log.sort(),
          n.name === "n1"
            ? ["up n2", "up n3"]
            : n.name === "n2"
            ? ["up n1", "up n3"]
            : ["up n1", "up n2"],
        );
      }
    } finally {
      await c.stop();
    }
  }
});

Deno.test("a closed node is down at once for the others and rejoins as a new incarnation", async () => {
  const c = await cluster();
  try {
    const [n1, n2, n3] = await Promise.all(["n1", "n2", "n3"].map((n) => c.node(n)));
    await until(() => n1.linked("n2", "n3") && n3.linked("n2"), "a full mesh");
    const before = n1.ups.get("n2")!;
    const stopped = performance.now();
    await n2.mesh.stop();
    await until(() => !n1.ups.has("n2") && !n3.ups.has("n2"), "n2 down");
    for (const n of [n1, n3]) assert.ok(n.downAt.get("n2")! - stopped < 500, "within dead_after");
    const again = await c.node("n2");
    await until(() => n1.linked("n2") && n3.linked("n2") && again.linked("n1", "n3"), "n2 back");
    assert.ok(n1.ups.get("n2")! > before, "a new, larger incarnation");
    assert.equal(n3.ups.get("n2"), again.mesh.incarnation);
    assert.deepEqual(n1.log.slice(-2), ["down n2", "up n2"]);
  } finally {
    await c.stop();
  }
});

/** n1 and n2 reach each other only through fault proxies (one per direction of dialling). */
async function proxiedPair(c: Cluster, extra: Partial<MeshOptions> = {}) {
  const to = (n: string) => ({ host: HOSTS[n], port: c.port });
  const toN2 = await FaultProxy.start(to("n2"));
  const toN1 = await FaultProxy.start(to("n1"), HOSTS.n2);
  const peers = (self: string, proxy: FaultProxy, other: string) => [
    { node: self, ...to(self) },
    { node: other, host: proxy.host, port: proxy.port },
  ];
  const n1 = await c.node("n1", { peers: peers("n1", toN2, "n2"), ...extra });
  const n2 = await c.node("n2", { peers: peers("n2", toN1, "n1"), ...extra });
  await until(() => n1.linked("n2") && n2.linked("n1"), "n1 and n2 linked");
  const proxies = [toN2, toN1];
  return {
    n1,
    n2,
    set: (mode: FaultMode, delayMs?: number) => proxies.forEach((p) => p.set(mode, delayMs)),
    close: () => Promise.all(proxies.map((p) => p.close())),
  };
}

Deno.test("a blackholed link is declared dead within dead_after and heals by itself", async () => {
  const c = await cluster(["n1", "n2"]);
  const pair = await proxiedPair(c);
  try {
    const { n1, n2 } = pair;
    const incarnations = [n1.ups.get("n2"), n2.ups.get("n1")];
    const cut = performance.now();
    pair.set("blackhole");
    await until(() => !n1.ups.has("n2") && !n2.ups.has("n1"), "both sides declare the other dead");
    // Silent for dead_after (500 ms) counted from the last frame heard, checked every 25 ms.
    for (const [n, peer] of [[n1, "n2"], [n2, "n1"]] as const) {
      const after = n.downAt.get(peer)! - cut;
      assert.ok(after > 400 && after < 700, `${n.name} saw ${peer} down after ${after} ms`);
    }
    pair.set("pass");
    await until(() => n1.linked("n2") && n2.linked("n1"), "the link back");
    assert.deepEqual([n1.ups.get("n2"), n2.ups.get("n1")], incarnations);
    assert.ok(n1.mesh.send("n2", FIRST_APP_TYPE, "after the partition"));
    await until(() => n2.messages.length === 1, "a message over the healed link");
  } finally {
    await pair.close();
    await c.stop();
  }
});

Deno.test("a peer that stops reading is disconnected once its queue passes the bound", async () => {
  const c = await cluster(["n1", "n2"]);
  // Heartbeats would notice the silence only after 20 s: the queue bound acts first.
  const pair = await proxiedPair(c, { deadAfterMs: 20_000, maxQueued: 1 << 20 });
  try {
    await withLogs(async (logs) => {
      pair.set("blackhole");
      const chunk = new Uint8Array(64 * 1024);
      const started = performance.now();
      while (pair.n1.ups.has("n2")) {
        assert.ok(performance.now() - started < 10_000, "n1 keeps queueing for n2");
        pair.n1.mesh.send("n2", FIRST_APP_TYPE, chunk);
        const queued = pair.n1.mesh.status()[0].queuedBytes;
        assert.ok(queued <= (1 << 20) + chunk.length * 2, `${queued} bytes queued`);
        await new Promise((r) => setTimeout(r, 1));
      }
      await until(
        logged(logs, /link to n2 down: the peer does not read: \d+ bytes queued/),
        "the log line",
      );
    });
  } finally {
    await pair.close();
    await c.stop();
  }
});

Deno.test("a cut link is down at once; a delayed one shows its round trip time", async () => {
  const c = await cluster(["n1", "n2"]);
  const pair = await proxiedPair(c);
  try {
    const { n1, n2 } = pair;
    const cut = performance.now();
    pair.set("cut");
    await until(() => !n1.ups.has("n2") && !n2.ups.has("n1"), "both down");
    assert.ok(n1.downAt.get("n2")! - cut < 200, "a closed connection is noticed at once");
    pair.set("delay", 50);
    await until(() => n1.linked("n2") && n2.linked("n1"), "the link back");
    await until(() => (n1.mesh.status()[0].rttMs ?? 0) >= 100, "RTT over a 2 × 50 ms delay");
    const [status] = n1.mesh.status();
    assert.equal(status.state, "up");
    assert.equal(status.incarnation, n2.mesh.incarnation);
    assert.equal(status.version, PROTOCOL_VERSION);
  } finally {
    await pair.close();
    await c.stop();
  }
});

Deno.test("refused: a certificate from another CA, one claiming another node's name, plaintext", async () => {
  const c = await cluster(["n1", "n2", "n3"]);
  const other = await testPki(["n2"]);
  try {
    await withLogs(async (logs) => {
      const n1 = await c.node("n1");
      // n2 with a certificate from another CA, dialling n1 and dialled by it: each side refuses
      // the other's certificate.
      const stranger = await c.node("n2", {}, await other.creds("n2"));
      await until(
        logged(
          logs,
          /no link to n2 at 127\.0\.0\.2:\d+: its certificate is not issued by the cluster CA/,
        ),
        "n1 refuses n2's certificate",
      );
      await until(
        logged(logs, /refused a connection from 127\.0\.0\.\d+:\d+: it ended the handshake/),
        "n2 refused n1's certificate",
      );
      await stranger.mesh.stop();
      // A client that trusts the cluster CA but shows a certificate from another one.
      const { ca } = await c.pki.creds("n1");
      const foreign = tls.connect({
        socket: net.connect({ host: HOSTS.n1, port: c.port, localAddress: HOSTS.n3 }),
        ...await other.creds("n2"),
        ca,
        servername: "n1",
      });
      foreign.on("error", () => {});
      await until(
        logged(
          logs,
          /refused a connection from 127\.0\.0\.3:\d+: its certificate is not issued by the cluster CA/,
        ),
        "n1 refuses a foreign client certificate",
      );
      foreign.destroy();
      // A node calling itself n2 with n3's certificate (from the right CA).
      const impostor = await c.node("n2", {}, { ...await c.pki.creds("n3"), ca });
      await until(
        logged(logs, /refused a connection: its certificate names n3 but its hello claims n2/),
        "the name check",
      );
      await until(
        logged(logs, /refused 127\.0\.0\.2:\d+ as n2: its certificate names n3/),
        "the dialler's name check",
      );
      await impostor.mesh.stop();
      // Plaintext, and TLS without a client certificate.
      const plain = net.connect(c.port, HOSTS.n1, () => plain.write("<stream:stream>\n"));
      plain.on("error", () => {});
      await until(
        logged(logs, /refused a connection from 127\.0\.0\.1:\d+: it does not speak TLS/),
        "plaintext refused",
      );
      plain.destroy();
      const anonymous = tls.connect({ host: HOSTS.n1, port: c.port, ca, servername: "n1" });
      anonymous.on("error", () => {});
      await until(
        logged(logs, /refused a connection from 127\.0\.0\.1:\d+: it sent no certificate/),
        "no certificate refused",
      );
      anonymous.destroy();
      assert.equal(n1.log.length, 0, "n1 never linked");
    });
  } finally {
    await other.remove();
    await c.stop();
  }
});

Deno.test("protocol versions: N talks to N-1, and refuses N-2 on both sides", async () => {
  const c = await cluster(["n1", "n2", "n3"]);
  try {
    await withLogs(async (logs) => {
      const n1 = await c.node("n1", { version: 5 });
      const n2 = await c.node("n2", { version: 4 });
      await until(() => n1.linked("n2") && n2.linked("n1"), "N and N-1 linked");
      assert.equal(n1.mesh.status().find((s) => s.node === "n2")!.version, 4);
      await c.node("n3", { version: 3 });
      await until(
        logged(
          logs,
          /refused n3: it speaks protocol version 3, this node 5 \(it talks to versions 4 to 6\)/,
        ),
        "n1 refuses N-2",
      );
      await until(
        logged(logs, /refused n1: it speaks protocol version 5, this node 3/),
        "n3 refuses N+2",
      );
      await until(() => n2.linked("n3"), "N-1 and N-2 linked");
      assert.ok(!n1.linked("n3"));
    });
  } finally {
    await c.stop();
  }
});

Deno.test("an oversized frame closes the link, which then comes back", async () => {
  const c = await cluster(["n1", "n2"]);
  try {
    await withLogs(async (logs) => {
      const n1 = await c.node("n1", { maxFrame: 1024 });
      const n2 = await c.node("n2");
      await until(() => n1.linked("n2") && n2.linked("n1"), "linked");
      assert.ok(n2.mesh.send("n1", FIRST_APP_TYPE, "x".repeat(2000)));
      await until(
        logged(logs, /link to n2 down: malformed input: a frame of 2000 bytes \(at most 1024\)/),
        "the log line",
      );
      await until(() => n2.log.includes("down n1"), "n2 sees the link closed");
      await until(() => n1.linked("n2") && n2.linked("n1"), "linked again");
      // Not sent (and logged): the caller handles it as undeliverable.
      assert.equal(n1.mesh.send("n2", FIRST_APP_TYPE, "x".repeat(1025)), false);
      assert.deepEqual(n1.messages, []);
    });
  } finally {
    await c.stop();
  }
});
