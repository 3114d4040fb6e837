// Abuse: half-open SOCKS5 connections to the file-transfer proxy (XEP-0065). Anyone may connect
// without logging in, so what such connections hold is capped per address, freed the moment they
// close, and kept apart from the streams of logged-in users; and running out of descriptors never
// stops the proxy from accepting.
import assert from "node:assert/strict";
import net from "node:net";
import pLimit from "p-limit";
import { abuseServer, MAX_STALL_MS, stallProbe } from "../helpers/abuse.ts";
import { serverTest } from "../helpers/server.ts";
import { RawClient } from "../helpers/raw_client.ts";
import {
  NS_BYTESTREAMS,
  openStream,
  type Peer,
  type ProxyAddress,
  randomBytes,
  sha1,
  sha256,
  socks,
} from "../helpers/socks5_client.ts";
import { until } from "../helpers/until.ts";
import { DOMAIN, startCluster } from "../helpers/cluster.ts";

const FLOOD = 1000;
const PER_IP = 20;
const PAIR_TIMEOUT_S = 15;
/** Loopback addresses: the flood's two, and the legitimate clients'. */
const [ATTACKER, ATTACKER2, USERS] = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];

const login = (port: number, user: string, resource?: string) =>
  RawClient.login(port, user, "secret", { starttls: false, mech: "PLAIN", resource });

async function streamhostPort(c: RawClient): Promise<number> {
  const info = await c.iq("get", `<query xmlns='${NS_BYTESTREAMS}'/>`, "proxy.localhost");
  return Number(info.child("query")!.child("streamhost")!.attrs.port);
}

/**
 * `n` CONNECTs with distinct hashes from `from`, 50 at a time; the ones the proxy answered with
 * success stay open (unpaired) and are returned, with the count of the others.
 */
async function flood(port: ProxyAddress, n: number, from: string, tag: string) {
  const limit = pLimit(50);
  const results = await Promise.all(
    Array.from(
      { length: n },
      (_, i) => limit(() => socks(port, sha1(`${tag}${i}`), from).catch(() => null)),
    ),
  );
  const held: Peer[] = [];
  let refused = 0;
  for (const r of results) {
    if (r?.code === 0) held.push(r.peer);
    else {
      refused++;
      r?.peer.socket.destroy();
    }
  }
  return { held, refused };
}

serverTest(
  "abuse: a half-open SOCKS5 flood next to a legitimate transfer stalls nobody",
  async () => {
    const server = await abuseServer({
      hosts: [{
        domain: "localhost",
        // Fewer streams than the flood has places: unpaired connections must not count.
        proxy65: { domain: "proxy.localhost", port: 0, max_streams: 25, pending_per_ip: PER_IP },
      }],
    }, ["probe", "req", "tgt"]);
    const held: Peer[] = [];
    const clients: RawClient[] = [];
    try {
      const requester = await login(server.port, "req", "r");
      const target = await login(server.port, "tgt", "t");
      clients.push(requester, target);
      const port = await streamhostPort(requester);
      const probe = await stallProbe(server.port);
      let probed: { maxWaitMs: number; pings: number } | undefined;
      try {
        const first = await flood(port, FLOOD, ATTACKER, "a");
        held.push(...first.held);
        assert.equal(first.held.length, PER_IP, "the proxy holds a few per address");
        assert.equal(first.refused, FLOOD - PER_IP, "the rest is refused");
        const second = await flood(port, 100, ATTACKER2, "b");
        held.push(...second.held);
        assert.equal(second.held.length, PER_IP);

        // The XEP-0065 flow with the flood still connected: the offer through the server, then
        // the target connects, then the requester, who activates.
        requester.send(
          `<iq type='set' id='offer' to='tgt@localhost/t'><query xmlns='${NS_BYTESTREAMS}' ` +
            `sid='s1'><streamhost jid='proxy.localhost' host='127.0.0.1' port='${port}'/>` +
            `</query></iq>`,
        );
        await target.waitFor((e) => e.attrs.id === "offer");
        const s = await openStream(requester, port, "s1", "tgt@localhost/t", USERS);
        const data = randomBytes(16 << 20);
        s.requester.socket.write(data);
        await s.target.until(() => s.target.size >= data.length, "the transfer", 15_000);
        assert.equal(sha256(s.target.bytes()), sha256(data));
        s.requester.socket.destroy();
        s.target.socket.destroy();

        // Closed, the flood's connections free their places at once, long before pair_timeout.
        const closedAt = performance.now();
        for (const p of held.splice(0)) p.socket.destroy();
        // Checked by new batches from the same address until one is admitted whole.
        let again = await flood(port, PER_IP, ATTACKER, "c");
        while (again.held.length < PER_IP) {
          for (const p of again.held) p.socket.destroy();
          assert.ok(performance.now() - closedAt < 5000, "the places were not freed");
          await new Promise((r) => setTimeout(r, 50));
          again = await flood(port, PER_IP, ATTACKER, "c");
        }
        held.push(...again.held);
        assert.ok(performance.now() - closedAt < PAIR_TIMEOUT_S * 1000);
        probed = await probe.stop();
        console.log(
          `SOCKS5 flood: probe max wait ${probed.maxWaitMs.toFixed(0)} ms over ${probed.pings} ` +
            `pings; places freed in ${(performance.now() - closedAt).toFixed(0)} ms`,
        );
      } finally {
        probed ??= await probe.stop();
      }
      assert.ok(probed.maxWaitMs < MAX_STALL_MS, `the probe waited ${probed.maxWaitMs} ms`);
    } finally {
      for (const p of held) p.socket.destroy();
      for (const c of clients) c.close();
      await server.stop();
    }
  },
);

serverTest("abuse: the proxy keeps accepting after running out of descriptors", async () => {
  const server = await abuseServer(
    {
      hosts: [{
        domain: "localhost",
        proxy65: { domain: "proxy.localhost", port: 0, max_streams: 1000, pending_per_ip: 1000 },
      }],
    },
    ["probe", "req"],
    ["prlimit", "--nofile=128:128"],
  );
  const sockets: net.Socket[] = [];
  try {
    const requester = await login(server.port, "req", "r");
    const port = await streamhostPort(requester);
    // More connections than the server has descriptors left: it refuses them near the limit (the
    // budget it shares with the XMPP listeners), or its accepts fail.
    for (let i = 0; i < 200; i++) {
      const s = net.connect(port, "127.0.0.1");
      s.on("error", () => {});
      sockets.push(s);
    }
    await until(
      () => server.logs.some((l) => /accept failed|refusing connections/.test(String(l.message))),
      "the server to run short of descriptors",
    );
    for (const s of sockets.splice(0)) s.destroy();
    // Once descriptors are free again (the server closes its ends as it reads the closes: under
    // load, a moment later), the proxy serves a stream as before.
    let s: Awaited<ReturnType<typeof openStream>> | undefined;
    for (let i = 0, deadline = Date.now() + 5000; !s; i++) {
      try {
        s = await openStream(requester, port, `s${i}`, "tgt@localhost/t");
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    s.requester.socket.write("after");
    await s.target.until(() => s.target.size >= 5, "bytes through the proxy");
    s.requester.socket.destroy();
    s.target.socket.destroy();
    requester.close();
  } finally {
    for (const s of sockets) s.destroy();
    await server.stop();
  }
});

serverTest(
  "abuse (cluster): 1,000 half-open connections to one node stop no transfer across two nodes",
  async () => {
    const c = await startCluster(2, {
      overrides: {
        hosts: [{
          domain: DOMAIN,
          proxy65: { domain: "proxy.localhost", bind: "{node_host}", port: 0, max_streams: 25 },
        }],
      },
    });
    const held: Peer[] = [];
    const clients: RawClient[] = [];
    try {
      await c.formed();
      for (const u of ["probe", "req", "tgt"]) await c.addUser(u);
      const requester = await c.login(1, "req", "r");
      const target = await c.login(0, "tgt", "t");
      clients.push(requester, target);
      const on = async (cl: RawClient) => {
        const info = await cl.iq("get", `<query xmlns='${NS_BYTESTREAMS}'/>`, "proxy.localhost");
        const sh = info.child("query")!.child("streamhost")!;
        return { host: sh.attrs.host!, port: Number(sh.attrs.port) };
      };
      const [n1, n2] = [await on(target), await on(requester)];
      const probe = await stallProbe(c.nodes[0].port);
      let probed: { maxWaitMs: number; pings: number } | undefined;
      try {
        // From one address, at the node that holds the target's connection.
        const first = await flood(n1, FLOOD, ATTACKER2, "a");
        held.push(...first.held);
        assert.equal(first.held.length, PER_IP, "the node holds a few per address");
        assert.equal(first.refused, FLOOD - PER_IP, "the rest is refused");
        // The target's connection on n1, the requester's on n2, activation through n2.
        const s = await openStream(requester, [n1, n2], "s1", "tgt@localhost/t", USERS);
        const data = randomBytes(16 << 20);
        s.requester.socket.write(data);
        await s.target.until(() => s.target.size >= data.length, "the transfer", 15_000);
        assert.equal(sha256(s.target.bytes()), sha256(data));
        s.requester.socket.destroy();
        s.target.socket.destroy();
        probed = await probe.stop();
      } finally {
        probed ??= await probe.stop();
      }
      assert.ok(probed.maxWaitMs < MAX_STALL_MS, `the probe waited ${probed.maxWaitMs} ms`);
    } finally {
      for (const p of held) p.socket.destroy();
      for (const cl of clients) cl.close();
      await c.stop();
    }
  },
);
