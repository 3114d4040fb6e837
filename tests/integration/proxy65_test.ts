// The SOCKS5 Bytestreams proxy (XEP-0065) with real sockets: discovery, pairing, activation,
// relaying checked by SHA-256, backpressure, and every error path.
import assert from "node:assert/strict";
import { RawClient } from "../helpers/raw_client.ts";
import { SLIXMPP_LISTENERS, type TestServer, withServer } from "../helpers/server.ts";
import {
  NS_BYTESTREAMS as NS_BS,
  openStream,
  Peer,
  randomBytes,
  sha1,
  sha256,
  socks,
} from "../helpers/socks5_client.ts";
import { NS } from "../../src/xml/ns.ts";
import { interopPair } from "../helpers/process.ts";
import { until } from "../helpers/until.ts";

const PROXY = { domain: "proxy.localhost", bind: "127.0.0.1", port: 0, pair_timeout: 2 };
const CONFIG = { hosts: [{ domain: "localhost", proxy65: PROXY }] };

let streamhostPort = 0;

async function setup(t: TestServer) {
  await t.addUser("req");
  await t.addUser("tgt");
  const requester = await RawClient.login(t.port, "req", "secret", { resource: "r" });
  const info = await requester.iq("get", `<query xmlns='${NS_BS}'/>`, "proxy.localhost");
  const sh = info.child("query")!.child("streamhost")!;
  streamhostPort = Number(sh.attrs.port);
  return { requester, streamhost: sh };
}

withServer(
  "discovery: listed by the server, identity proxy/bytestreams, streamhost with host and port",
  CONFIG,
  async (t) => {
    const { requester, streamhost } = await setup(t);
    const items = await requester.iq("get", `<query xmlns='${NS.discoItems}'/>`, "localhost");
    assert.ok(
      items.child("query")!.elements("item").some((i) => i.attrs.jid === "proxy.localhost"),
    );
    const info = await requester.iq("get", `<query xmlns='${NS.discoInfo}'/>`, "proxy.localhost");
    const q = info.child("query")!;
    assert.deepEqual(
      { ...q.child("identity")!.attrs },
      { category: "proxy", type: "bytestreams", name: "SOCKS5 Bytestreams Service" },
    );
    assert.ok(q.elements("feature").some((f) => f.attrs.var === NS_BS));
    assert.equal(streamhost.attrs.jid, "proxy.localhost");
    assert.equal(streamhost.attrs.host, "127.0.0.1");
    assert.ok(streamhostPort > 0);
  },
);

withServer("announced host/port are separate from the listening address (NAT)", {
  hosts: [{ domain: "localhost", proxy65: { ...PROXY, host: "203.0.113.7", announce_port: 7777 } }],
}, async (t) => {
  await t.addUser("n");
  const c = await RawClient.login(t.port, "n");
  const info = await c.iq("get", `<query xmlns='${NS_BS}'/>`, "proxy.localhost");
  const sh = info.child("query")!.child("streamhost")!;
  assert.equal(sh.attrs.host, "203.0.113.7");
  assert.equal(sh.attrs.port, "7777");
});

withServer(
  "a 4 MiB transfer through the proxy arrives intact (SHA-256), both directions",
  CONFIG,
  async (t) => {
    const { requester } = await setup(t);
    const { target, requester: req } = await openStream(
      requester,
      streamhostPort,
      "s1",
      "tgt@localhost/t",
    );
    const data = randomBytes(4 << 20);
    req.socket.write(data);
    target.socket.write("pong");
    await target.until(() => target.size >= data.length, "4 MiB", 20_000);
    await req.until(() => req.size >= 4, "reply bytes");
    assert.equal(sha256(target.bytes()), sha256(data));
    assert.equal(new TextDecoder().decode(req.bytes()), "pong");
    // Either side closing ends the stream.
    req.socket.end();
    await target.until(() => target.closed, "close propagated");
  },
);

withServer("a slow reader: the proxy stops reading instead of buffering", CONFIG, async (t) => {
  const { requester } = await setup(t);
  const { target, requester: req, hash } = await openStream(
    requester,
    streamhostPort,
    "s2",
    "tgt@localhost/t",
  );
  target.socket.pause(); // the target reads nothing for now
  const chunk = new Uint8Array(1 << 20);
  const total = 64 << 20;
  let written = 0;
  const pump = () => {
    while (written < total) {
      written += chunk.length;
      if (!req.socket.write(chunk)) return req.socket.once("drain", pump);
    }
  };
  pump();
  // Kernel buffers fill, then the sender is stuck: the proxy reads no more than it can write,
  // so it holds at most its stated bound (4 × `buffer`) for the stream.
  const pair = t.server.proxies.get("proxy.localhost")!.relay.pairs.get(hash)!;
  let before = -1;
  for (const deadline = Date.now() + 15_000; written !== before;) {
    assert.ok(Date.now() < deadline, "the sender never stalled");
    before = written;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(pair.owner, "the stream is active");
  // The sender was ahead, so the buffers grew, but never past the bound.
  const limit = 4 * t.server.config.hosts[0].proxy65!.buffer;
  assert.ok(pair.held > 4 * 64 * 1024 && pair.held <= limit, `holds ${pair.held} of ${limit}`);
  // Memory: the server's heap does not grow with what the sender tries to push.
  const heap = Deno.memoryUsage().heapUsed;
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(
    Deno.memoryUsage().heapUsed - heap < (8 << 20),
    "heap stays flat while the reader is stalled",
  );
  assert.equal(written, before, "the sender stays blocked while the reader does not read");
  assert.ok(written < total);
  target.socket.resume();
  await target.until(() => target.size >= total, "everything delivered", 30_000);
});

withServer("activation errors: no pair, twice, not allowed; a third connection is refused", {
  hosts: [{ domain: "localhost", proxy65: PROXY }, {
    domain: "other.localhost",
    proxy65: { ...PROXY, domain: "proxy.other.localhost", allow: ["someone@localhost"] },
  }],
}, async (t) => {
  const { requester } = await setup(t);
  const activate = (sid: string, to = "proxy.localhost") =>
    requester.iq(
      "set",
      `<query xmlns='${NS_BS}' sid='${sid}'><activate>tgt@localhost/t</activate></query>`,
      to,
    );
  assert.ok((await activate("nothing")).child("error")!.child("item-not-found"));
  const hash = sha1("s3" + "req@localhost/r" + "tgt@localhost/t");
  await socks(streamhostPort, hash);
  assert.ok(
    (await activate("s3")).child("error")!.child("item-not-found"),
    "only one side connected",
  );
  await socks(streamhostPort, hash);
  const third = await socks(streamhostPort, hash);
  assert.equal(third.code, 0x02, "connection not allowed by ruleset");
  assert.equal((await activate("s3")).attrs.type, "result");
  assert.ok((await activate("s3")).child("error")!.child("bad-request"), "activated twice");
  // A proxy that only serves listed JIDs refuses others with not-allowed.
  const refused = await requester.iq("get", `<query xmlns='${NS_BS}'/>`, "proxy.other.localhost");
  assert.ok(refused.child("error")!.child("not-allowed"));
  const bad = await requester.iq("set", `<query xmlns='${NS_BS}'/>`, "proxy.localhost");
  assert.ok(bad.child("error")!.child("bad-request"));
});

withServer(
  "bad SOCKS5 bytes get the right reply and close only that connection",
  CONFIG,
  async (t) => {
    await setup(t);
    const cases: [number[], number[]][] = [
      [[4, 1, 0], []], // SOCKS4: closed without a reply
      [[5, 1, 2], [5, 0xff]], // no acceptable method
      [[5, 1, 0, 5, 2, 0, 3, 1, 0x61, 0, 0], [5, 0, 5, 7]], // BIND: command not supported
      [[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 0], [5, 0, 5, 8]], // IPv4: address type not supported
      [[5, 1, 0, 5, 1, 0, 3, 3, 0x61, 0x62, 0x63, 0, 0], [5, 0, 5, 4]], // not a SHA-1 hash
    ];
    for (const [send, expect] of cases) {
      const p = await Peer.open(streamhostPort);
      p.socket.write(Uint8Array.from(send));
      await p.until(() => p.closed, `close after ${send}`);
      assert.deepEqual([...p.bytes()].slice(0, expect.length), expect, `reply to ${send}`);
    }
    // Unpaired connections time out (pair_timeout: 2 s in this test).
    const lonely = await socks(streamhostPort, sha1("lonely"));
    assert.equal(lonely.code, 0);
    await lonely.peer.until(() => lonely.peer.closed, "unpaired timeout", 6000);
  },
);

withServer("interop: two slixmpp clients transfer a file through the proxy (SHA-256)", {
  ...CONFIG,
  listeners: SLIXMPP_LISTENERS,
}, async (t) => {
  const r = await interopPair(
    t,
    "s5b_transfer.py",
    "alice@localhost/s",
    "bob@localhost/r",
    String(3 << 20),
  );
  assert.deepEqual(r.proxies, ["proxy.localhost"]);
  assert.equal(r.bytes, 3 << 20);
  assert.equal(r.received, r.sent);
});

withServer(
  "activation by anyone but the requester who offered the stream is not-allowed (JIDs prepared)",
  CONFIG,
  async (t) => {
    const { requester } = await setup(t);
    const target = await RawClient.login(t.port, "tgt", "secret", { resource: "t" });
    await t.addUser("mallory");
    const mallory = await RawClient.login(t.port, "mallory");
    // The requester offers the proxy to the target through the server (XEP-0065 §6.3.1), naming
    // it in another case: JIDs compare prepared.
    requester.send(
      `<iq type='set' id='offer' to='tgt@localhost/t'><query xmlns='${NS_BS}' sid='s9'>` +
        `<streamhost jid='Proxy.LocalHost' host='127.0.0.1' port='${streamhostPort}'/></query></iq>`,
    );
    await target.waitFor((e) => e.attrs.id === "offer");
    const hash = sha1("s9" + "req@localhost/r" + "tgt@localhost/t");
    await socks(streamhostPort, hash);
    await socks(streamhostPort, hash);
    const activate =
      `<query xmlns='${NS_BS}' sid='s9'><activate>tgt@localhost/t</activate></query>`;
    const stolen = await mallory.iq("set", activate, "proxy.localhost");
    assert.ok(stolen.child("error")!.child("not-allowed"), String(stolen));
    assert.equal((await requester.iq("set", activate, "proxy.localhost")).attrs.type, "result");
  },
);

withServer("the allow list matches JIDs in any case (prepared)", {
  hosts: [{ domain: "localhost", proxy65: { ...PROXY, allow: ["REQ@LocalHost"] } }],
}, async (t) => {
  const { streamhost } = await setup(t);
  assert.equal(streamhost.attrs.jid, "proxy.localhost", "req@localhost is allowed");
  const other = await RawClient.login(t.port, "tgt");
  const refused = await other.iq("get", `<query xmlns='${NS_BS}'/>`, "proxy.localhost");
  assert.ok(refused.child("error")!.child("not-allowed"));
});

withServer("unpaired connections: a few per address, each freed the moment it closes", {
  hosts: [{ domain: "localhost", proxy65: { ...PROXY, pair_timeout: 60, pending_per_ip: 3 } }],
}, async (t) => {
  const { requester } = await setup(t);
  const relay = t.server.proxies.get("proxy.localhost")!.relay;
  const lonely = [];
  for (let i = 0; i < 3; i++) {
    const c = await socks(streamhostPort, sha1(`flood${i}`));
    assert.equal(c.code, 0);
    lonely.push(c.peer);
  }
  assert.equal((await socks(streamhostPort, sha1("flood3"))).code, null, "refused past the cap");
  // One side of a pair waiting for activation goes away: the pair ends, its partner is closed.
  const hash = sha1("s10" + "req@localhost/r" + "tgt@localhost/t");
  for (const p of lonely.splice(1)) p.socket.destroy();
  await until(() => relay.waiting.size === 1, "two places freed", 3000);
  const target = await socks(streamhostPort, hash);
  const req = await socks(streamhostPort, hash);
  assert.equal(req.code, 0);
  req.peer.socket.destroy();
  await target.peer.until(() => target.peer.closed, "the partner closed");
  lonely[0].socket.destroy();
  // Long before pair_timeout (60 s), nothing is held any more.
  await until(() => relay.waiting.size === 0 && relay.pairs.size === 0, "places freed", 3000);
  await openStream(requester, streamhostPort, "s11", "tgt@localhost/t");
});

withServer("the SOCKS5 handshake has seconds; a completed CONNECT waits up to pair_timeout", {
  hosts: [{
    domain: "localhost",
    proxy65: { ...PROXY, handshake_timeout: 1, pair_timeout: 60 },
  }],
}, async (t) => {
  await setup(t);
  const connected = await socks(streamhostPort, sha1("waiting for its partner"));
  assert.equal(connected.code, 0);
  const silent = await Peer.open(streamhostPort);
  const half = await Peer.open(streamhostPort);
  half.socket.write(Uint8Array.of(5, 1)); // a greeting that never ends
  const opened = performance.now();
  await silent.until(() => silent.closed, "a silent connection closed", 5000);
  await half.until(() => half.closed, "a half greeting closed", 5000);
  assert.ok(performance.now() - opened >= 900, "not before handshake_timeout");
  // Connected before them, it has waited longer than handshake_timeout: still open.
  assert.equal(connected.peer.closed, false, "a completed CONNECT waits for its partner");
  const relay = t.server.proxies.get("proxy.localhost")!.relay;
  assert.equal(relay.waiting.size, 1);
  connected.peer.socket.destroy();
});

withServer("unpaired connections do not use up max_streams; past it activation is refused", {
  hosts: [{ domain: "localhost", proxy65: { ...PROXY, max_streams: 2 } }],
}, async (t) => {
  const { requester } = await setup(t);
  for (const h of ["u1", "u2"]) assert.equal((await socks(streamhostPort, sha1(h))).code, 0);
  await openStream(requester, streamhostPort, "a", "tgt@localhost/t");
  await openStream(requester, streamhostPort, "b", "tgt@localhost/t");
  const hash = sha1("c" + "req@localhost/r" + "tgt@localhost/t");
  assert.equal((await socks(streamhostPort, hash)).code, 0);
  assert.equal((await socks(streamhostPort, hash)).code, 0);
  const full = await requester.iq(
    "set",
    `<query xmlns='${NS_BS}' sid='c'><activate>tgt@localhost/t</activate></query>`,
    "proxy.localhost",
  );
  assert.ok(full.child("error")!.child("resource-constraint"), String(full));
});
