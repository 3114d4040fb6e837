// Behind a reverse proxy: X-Forwarded-For is believed only from `trusted_proxies`, and the caps
// per address then count the forwarded address, not the proxy's.
import assert from "node:assert/strict";
import net from "node:net";
import { serverTest, startServer } from "../helpers/server.ts";
import { AddressList } from "../../src/core/address_list.ts";
import { clientAddress } from "../../src/http/addresses.ts";
import { until } from "../helpers/until.ts";

/** The SASL mechanisms a WebSocket client is offered on `port`. */
async function mechanisms(port: number): Promise<string> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/xmpp-websocket`, ["xmpp"]);
  const got: string[] = [];
  ws.onmessage = (e) => got.push(String(e.data));
  await new Promise((r) => ws.onopen = r);
  ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>");
  await until(() => got.some((m) => m.includes("<stream:features")), "features");
  const closed = new Promise((r) => ws.onclose = r);
  ws.close();
  await closed;
  return got.find((m) => m.includes("<stream:features"))!;
}

/** A WebSocket upgrade over a raw socket (to send any header): the status, the socket held. */
function upgrade(
  port: number,
  forwardedFor?: string,
): Promise<{ status: number; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    let head = "";
    socket.on("error", reject);
    socket.on("close", () => resolve({ status: 0, socket }));
    socket.on("data", (d) => {
      head += d.toString();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      if (m) resolve({ status: Number(m[1]), socket });
    });
    socket.write(
      "GET /xmpp-websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n" +
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n" +
        (forwardedFor ? `X-Forwarded-For: ${forwardedFor}\r\n` : "") + "\r\n",
    );
  });
}

Deno.test("client address: forwarded headers only from trusted proxies, rightmost untrusted hop", () => {
  const trusted = new AddressList(["127.0.0.1", "10.0.0.0/8", "::1/128"]);
  const h = (v: Record<string, string>) => new Headers(v);
  assert.equal(
    clientAddress("192.0.2.1", h({ "x-forwarded-for": "203.0.113.9" }), trusted),
    "192.0.2.1",
  );
  assert.equal(
    clientAddress("127.0.0.1", h({ "x-forwarded-for": "203.0.113.9" }), trusted),
    "203.0.113.9",
  );
  // A client cannot forge its way in front of its own proxy's entry.
  assert.equal(
    clientAddress(
      "127.0.0.1",
      h({ "x-forwarded-for": "198.51.100.1, 203.0.113.9, 10.1.2.3" }),
      trusted,
    ),
    "203.0.113.9",
  );
  const fwd = 'for="[2001:db8::7]:4711";proto=https, for=10.0.0.2';
  assert.equal(clientAddress("::1", h({ forwarded: fwd }), trusted, "forwarded"), "2001:db8::7");
  // One header per listener: the other, which a client may send through its proxy, is ignored.
  const both = h({ forwarded: "for=198.51.100.7", "x-forwarded-for": "203.0.113.9" });
  assert.equal(clientAddress("127.0.0.1", both, trusted), "203.0.113.9");
  assert.equal(clientAddress("127.0.0.1", both, trusted, "forwarded"), "198.51.100.7");
  assert.equal(
    clientAddress("127.0.0.1", h({ "x-forwarded-for": "not an address" }), trusted),
    "127.0.0.1",
  );
  assert.equal(
    clientAddress("::ffff:127.0.0.1", h({ "x-forwarded-for": "203.0.113.9" }), trusted),
    "203.0.113.9",
  );
  assert.throws(() => new AddressList(["10.0.0.0/99"]), /not an IP address or CIDR/);
});

serverTest(
  "trusted proxies: the cap per address counts forwarded addresses, others' headers ignored",
  async () => {
    const t = await startServer({
      limits: { connections_per_ip: 2 },
      listeners: [
        { type: "c2s", bind: "127.0.0.1", port: 0, starttls: "optional", plain_without_tls: true },
        { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
        { type: "http", bind: "127.0.0.1", port: 0, trusted_proxies: ["127.0.0.1"] },
        { type: "http", bind: "127.0.0.1", port: 0 },
      ],
    });
    const held: net.Socket[] = [];
    const open = async (port: number, xff?: string) => {
      const r = await upgrade(port, xff);
      held.push(r.socket);
      return r.status;
    };
    try {
      const [trusting, plain] = t.server.addresses.filter((a) => a.type === "http").map((a) =>
        a.port
      );
      // Through the trusted proxy: two per forwarded address, whatever the proxy's own address.
      assert.equal(await open(trusting, "203.0.113.1"), 101);
      assert.equal(await open(trusting, "203.0.113.1"), 101);
      assert.equal(await open(trusting, "203.0.113.1"), 429);
      assert.equal(await open(trusting, "203.0.113.2"), 101);
      // Where the peer is not trusted, the header is ignored: loopback itself is at its cap soon.
      assert.equal(await open(plain, "203.0.113.3"), 101);
      assert.equal(await open(plain, "203.0.113.4"), 101);
      assert.equal(await open(plain, "203.0.113.5"), 429);
      for (const s of held.splice(0)) s.destroy();
      // SASL PLAIN only through a trusted proxy (it terminates TLS); SCRAM everywhere.
      await until(() => t.server.listeners.every((l) => l.streams.size === 0), "the upgrades gone");
      assert.match(await mechanisms(trusting), /PLAIN/);
      assert.doesNotMatch(await mechanisms(plain), /PLAIN/);
      assert.match(await mechanisms(plain), /SCRAM-SHA-256/);
    } finally {
      for (const s of held) s.destroy();
      await t.stop();
    }
  },
);

serverTest("a failed WebSocket handshake gives its place back", async () => {
  const t = await startServer({ limits: { connections_per_ip: 2 } });
  try {
    for (let i = 0; i < 5; i++) {
      // An upgrade without a key: refused, and not counted against the address.
      const res = await fetch(`http://127.0.0.1:${t.httpPort}/xmpp-websocket`, {
        headers: { upgrade: "websocket", connection: "upgrade", "sec-websocket-protocol": "xmpp" },
      });
      assert.equal(res.status, 400);
      await res.body?.cancel();
    }
    assert.match(await mechanisms(t.httpPort), /SCRAM-SHA-256/, "a real WebSocket still gets in");
  } finally {
    await t.stop();
  }
});

serverTest(
  "the http front: refused connections go, slow requests end, half-closed ones are answered",
  async () => {
    const t = await startServer({
      limits: { connections_per_ip: 1 },
      timeouts: { handshake: 1 },
      bosh: { max_wait: 1 },
    });
    const open: net.Socket[] = [];
    const connect = () => {
      const s = net.connect(t.httpPort, "127.0.0.1");
      s.on("error", () => {});
      open.push(s);
      return s;
    };
    const closedWithin = (s: net.Socket, ms: number) =>
      new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), ms);
        s.once("close", () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
    try {
      // A half-closed request is still answered.
      const half = connect();
      let answer = "";
      half.on("data", (d) => answer += d.toString());
      half.end("GET /.well-known/host-meta.json HTTP/1.1\r\nHost: x\r\n\r\n");
      await until(() => answer.includes("alt-connections"), "the answer to a half-closed request");
      await until(() => half.destroyed || half.closed, "the half-closed connection gone");
      // Over the cap: told 429 and closed, even when the client keeps its side open.
      const first = connect();
      await new Promise((r) => first.once("connect", r));
      const over = connect();
      let refusal = "";
      over.on("data", (d) => refusal += d.toString());
      assert.ok(await closedWithin(over, 5000), "the refused connection is closed");
      assert.match(refusal, /^HTTP\/1\.1 429/);
      // A request trickled slower than it may take (max_wait + handshake + 5 s) is cut off.
      const slow = first;
      slow.write("GET /health HTTP/1.1\r\n");
      const trickle = setInterval(() => slow.write("X"), 200);
      const cut = await closedWithin(slow, 15_000);
      clearInterval(trickle);
      assert.ok(cut, "a slowly trickled request is cut off");
    } finally {
      for (const s of open) s.destroy();
      await t.stop();
    }
  },
);
