// The SOCKS5 Bytestreams proxy (XEP-0065) on a three-node cluster, every node its own `parley
// serve` process: one proxy JID, a streamhost per node, streams whose two connections reach two
// nodes relayed between them, activation through any node, limits over the whole cluster, and the
// death of a node ending only the streams that ran through it.
import assert from "node:assert/strict";
import { DOMAIN, freePort, startCluster, type TestCluster } from "../helpers/cluster.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import {
  activate,
  NS_BYTESTREAMS,
  openStream,
  type Peer,
  randomBytes,
  sha1,
  sha256,
  socks,
} from "../helpers/socks5_client.ts";
import { interop } from "../helpers/process.ts";
import { writeAll } from "../../src/stream/write_all.ts";

const PROXY = "proxy.localhost";

/** Every node runs the proxy on its own address: `{node_host}`, any port. */
const proxyOn = (extra: Record<string, unknown> = {}) => ({
  overrides: {
    hosts: [{ domain: DOMAIN, proxy65: { domain: PROXY, bind: "{node_host}", port: 0, ...extra } }],
  },
});

/** The streamhost node `i` announces to a client logged in there. */
async function streamhost(c: RawClient): Promise<{ jid: string; host: string; port: number }> {
  const info = await c.iq("get", `<query xmlns='${NS_BYTESTREAMS}'/>`, PROXY);
  const sh = info.child("query")!.child("streamhost")!;
  return { jid: sh.attrs.jid!, host: sh.attrs.host!, port: Number(sh.attrs.port) };
}

/** Writes `data` with backpressure; resolves once written, or early if the socket closes. */
function push(peer: Peer, data: Uint8Array, chunk = 1 << 20): Promise<void> {
  return new Promise((resolve) => {
    let off = 0;
    const done = () => {
      peer.socket.off("close", done);
      peer.socket.off("drain", more);
      resolve();
    };
    function more() {
      while (off < data.length && !peer.closed) {
        const ok = peer.socket.write(data.subarray(off, off + chunk));
        off += chunk;
        if (!ok) return peer.socket.once("drain", more);
      }
      done();
    }
    peer.socket.once("close", done);
    more();
  });
}

async function withCluster(
  opts: ReturnType<typeof proxyOn>,
  users: string[],
  body: (c: TestCluster, clients: RawClient[]) => Promise<void>,
): Promise<void> {
  const c = await startCluster(3, opts);
  const clients: RawClient[] = [];
  try {
    await c.formed();
    for (const u of users) await c.addUser(u);
    await body(c, clients);
  } catch (e) {
    // What the proxies said, to tell why.
    for (let i = 0; i < 3; i++) {
      console.log(
        `n${i + 1}:`,
        c.logs(i).filter((l) => /proxy65|stream [0-9a-f]/.test(l)),
      );
    }
    throw e;
  } finally {
    for (const cl of clients) cl.close();
    await c.stop();
  }
}

/** Copies `from` to `to` until the end, which it passes on (a half close). */
async function forward(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(1 << 16);
  try {
    for (let n; (n = await from.read(buf)) !== null;) await writeAll(to, buf.subarray(0, n));
    await to.closeWrite();
  } catch { /* either side gone */ }
}

/** A TCP load balancer in front of the nodes' proxies: connection k goes to `targets[k % n]`. */
function balancer(targets: { host: string; port: number }[]) {
  const chosen: number[] = [];
  const conns = new Set<Deno.Conn>();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  void (async () => {
    for await (const client of listener) {
      const i = chosen.length % targets.length;
      chosen.push(i);
      const upstream = await Deno.connect({ hostname: targets[i].host, port: targets[i].port });
      for (const c of [client, upstream]) conns.add(c);
      void Promise.all([forward(client, upstream), forward(upstream, client)]).finally(() => {
        for (const c of [client, upstream]) {
          conns.delete(c);
          c.close();
        }
      });
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    chosen,
    close() {
      listener.close();
      for (const c of conns) c.close();
    },
  };
}

Deno.test({
  name: "cluster proxy65: slixmpp clients, target on n1, requester on n2, SOCKS5 on n1 and n3",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // proxy.localhost stands for every node behind a load balancer: the target's connection
    // (the first) reaches n1, the requester's n3; the activation goes through n2.
    const port = freePort(["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    const lb = balancer([{ host: "127.0.0.1", port }, { host: "127.0.0.3", port }]);
    try {
      await withCluster(
        proxyOn({ port, host: "127.0.0.1", announce_port: lb.port }),
        ["alice", "bob"],
        async (c) => {
          const r = await interop("s5b_transfer.py", [
            `${c.nodes[1].host}:${c.nodes[1].port}`,
            `alice@${DOMAIN}/s`,
            `bob@${DOMAIN}/r`,
            "secret",
            String(3 << 20),
            `${c.nodes[0].host}:${c.nodes[0].port}`,
          ]);
          assert.deepEqual(r.proxies, [PROXY]);
          assert.deepEqual(lb.chosen, [0, 1], "the target reached n1, the requester n3");
          assert.equal(r.bytes, 3 << 20);
          assert.equal(r.received, r.sent, "SHA-256 of what arrived");
        },
      );
    } finally {
      lb.close();
    }
  },
});

Deno.test({
  name: "cluster proxy65: each node announces its own streamhost; a node's death ends only its " +
    "streams",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withCluster(proxyOn(), ["req", "tgt", "req2"], async (c, clients) => {
      const [onN1, req, req2] = [
        await c.login(0, "tgt", "t"),
        await c.login(1, "req", "r"),
        await c.login(0, "req2", "r"),
      ];
      clients.push(onN1, req, req2);
      // One JID, each node's own address (XEP-0065 §6.2): whichever node a client asks.
      const hosts = [];
      for (let i = 0; i < 3; i++) {
        const cl = await c.login(i, "tgt", `probe${i}`);
        clients.push(cl);
        hosts.push(await streamhost(cl));
      }
      assert.deepEqual(hosts.map((h) => [h.jid, h.host]), [
        [PROXY, "127.0.0.1"],
        [PROXY, "127.0.0.2"],
        [PROXY, "127.0.0.3"],
      ]);
      const [n1, n2, n3] = hosts;
      const target = `tgt@${DOMAIN}/t`;

      // T1: connections on n1 and n3, activated through n2; it runs until n3 dies.
      const t1 = await openStream(req, [n1, n3], "t1", target);
      const endless = randomBytes(1 << 20);
      let sending = true;
      void (async () => {
        while (sending && !t1.requester.closed) await push(t1.requester, endless);
      })();
      // T2: connections on n2 and n1, activated through n1; its reader waits, so it is mid-way
      // when n3 dies.
      const t2 = await openStream(req2, [n2, n1], "t2", target);
      const data = randomBytes(24 << 20);
      t2.target.socket.pause();
      const sent = push(t2.requester, data);
      await t1.target.until(() => t1.target.size >= 8 << 20, "T1 flows", 20_000);
      await c.kill(2);
      await t1.target.until(() => t1.target.closed, "T1's socket on n1 closed", 5000);
      await t1.requester.until(() => t1.requester.closed, "T1's socket on n3 closed", 5000);
      sending = false;
      t2.target.socket.resume();
      await t2.target.until(() => t2.target.size >= data.length, "T2 completes", 30_000);
      await sent;
      assert.equal(sha256(t2.target.bytes()), sha256(data));
      assert.equal(t2.requester.closed, false, "T2 is still open");
      // The survivors serve new streams across nodes.
      const t3 = await openStream(req, [n1, n2], "t3", target);
      t3.requester.socket.write("after");
      await t3.target.until(() => t3.target.size >= 5, "bytes across n2 → n1");
      // Either side closing ends the stream on both nodes.
      t3.requester.socket.end();
      await t3.target.until(() => t3.target.closed, "the end passed on across nodes");
    });
  },
});

Deno.test({
  name: "cluster proxy65: limits hold over the cluster; activation errors from any node",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withCluster(
      proxyOn({ max_streams_per_user: 1, max_streams: 2 }),
      ["a", "b", "d", "tgt"],
      async (c, clients) => {
        const [a1, a3, b, d] = [
          await c.login(0, "a", "r"),
          await c.login(2, "a", "r3"),
          await c.login(1, "b", "r"),
          await c.login(2, "d", "r"),
        ];
        clients.push(a1, a3, b, d);
        const [n1, n2, n3] = await Promise.all([a1, b, d].map(streamhost));
        const target = `tgt@${DOMAIN}/t`;
        assert.ok((await activate(a3, "none", target)).child("error")!.child("item-not-found"));
        // a's stream on n1; a second one on n3, activated there, is over a's limit.
        await openStream(a1, n1, "a1", target);
        for (const at of [n3, n3]) {
          assert.equal((await socks(at, sha1("a3" + a3.jid + target))).code, 0);
        }
        const over = await activate(a3, "a3", target);
        assert.ok(over.child("error")!.child("resource-constraint"), String(over));
        // b's stream across n2 and n3 fills the cluster (max_streams: 2) ...
        await openStream(b, [n2, n3], "b1", target);
        const again = await activate(b, "b1", target);
        assert.ok(again.child("error")!.child("bad-request"), "activated twice: " + again);
        // ... so d's, on n3 alone, is refused.
        for (const at of [n3, n1]) {
          assert.equal((await socks(at, sha1("d1" + d.jid + target))).code, 0);
        }
        const full = await activate(d, "d1", target);
        assert.ok(full.child("error")!.child("resource-constraint"), String(full));
      },
    );
  },
});

/** The relay port node `i` listens on for other nodes' links, as it logged. */
function relayPort(c: TestCluster, i: number): number {
  const line = c.logs(i).find((l) => l.includes("streams from other nodes on"))!;
  return Number(/streams from other nodes on \S+:(\d+)/.exec(line)![1]);
}

/** What the relay port sends `conn` until it closes it. */
async function untilClosed(conn: Deno.Conn): Promise<number[]> {
  const got: number[] = [];
  const buf = new Uint8Array(512);
  for (let n; (n = await conn.read(buf).catch(() => null)) !== null;) {
    got.push(...buf.subarray(0, n));
  }
  conn.close();
  return got;
}

Deno.test({
  name: "cluster proxy65: the relay port refuses links without a valid ticket and stops no " +
    "transfer; a third connection with a running stream's hash is refused on any node",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withCluster(proxyOn(), ["req", "tgt"], async (c, clients) => {
      const [tgt, req] = [await c.login(0, "tgt", "t"), await c.login(1, "req", "r")];
      clients.push(tgt, req);
      const hosts = [];
      for (let i = 0; i < 3; i++) {
        const cl = await c.login(i, "tgt", `probe${i}`);
        clients.push(cl);
        hosts.push(await streamhost(cl));
      }
      const [n1, n2, n3] = hosts;
      // A stream across n1 (the target) and n2 (the requester), reading slowly meanwhile.
      const t = await openStream(req, [n1, n2], "t", `tgt@${DOMAIN}/t`);
      const data = randomBytes(16 << 20);
      const sent = push(t.requester, data);
      await t.target.until(() => t.target.size >= 1 << 20, "the stream flows");
      const ca = await Deno.readTextFile(c.pki.files("n1").ca);
      for (const i of [0, 1]) {
        const port = relayPort(c, i);
        const host = c.nodes[i].host;
        // Plaintext garbage.
        const plain = await Deno.connect({ hostname: host, port });
        await writeAll(plain, new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n" + "x".repeat(100)));
        // Closed after a TLS alert (content type 21), nothing more.
        assert.equal((await untilClosed(plain))[0], 21, `n${i + 1}: plaintext closed`);
        // TLS to the right node, with a made-up ticket (a valid one has 48 bytes), twice.
        for (let k = 0; k < 2; k++) {
          const tcp = await Deno.connect({ hostname: host, port });
          const tls = await Deno.startTls(tcp, { hostname: `n${i + 1}`, caCerts: [ca] });
          await writeAll(tls, crypto.getRandomValues(new Uint8Array(48)));
          assert.deepEqual(await untilClosed(tls), [], `n${i + 1}: a wrong ticket closed`);
        }
      }
      // A third connection with the stream's hash: refused (0x02) on the nodes of the stream
      // and on one that holds nothing of it.
      for (const at of [n1, n2, n3]) {
        const third = await socks(at, t.hash);
        assert.equal(third.code, 2, `third connection at ${at.host}`);
        third.peer.socket.destroy();
      }
      await sent;
      await t.target.until(() => t.target.size >= data.length, "the transfer completes", 30_000);
      assert.equal(sha256(t.target.bytes()), sha256(data));
      assert.ok(c.logs(0).some((l) => l.includes("no valid ticket")), "n1 says why it refused");
      // A connection that waits on a third node when its stream starts elsewhere is closed then.
      const extra = await socks(n3, sha1("w" + req.jid + `tgt@${DOMAIN}/t`));
      assert.equal(extra.code, 0);
      await openStream(req, [n1, n2], "w", `tgt@${DOMAIN}/t`);
      await extra.peer.until(() => extra.peer.closed, "the waiting third connection closed", 5000);
    });
  },
});
