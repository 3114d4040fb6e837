// XMPP over WebSocket (RFC 7395) with a real client library (@xmpp/client), and the framing and
// refusals a WebSocket client meets, checked with the browser's own WebSocket API.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { client, xml } from "@xmpp/client";
import { serverTest, startServer, type TestServer } from "../helpers/server.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { until } from "../helpers/until.ts";

// deno-lint-ignore no-explicit-any
type XmppClient = any;

function wsClient(t: TestServer, username: string, resource: string): XmppClient {
  return client({
    service: `ws://127.0.0.1:${t.httpPort}/xmpp-websocket`,
    domain: "localhost",
    username,
    password: "secret",
    resource,
  });
}

/** A raw WebSocket with the messages it got, in order. */
async function rawSocket(t: TestServer, protocols: string[] = ["xmpp"]) {
  const ws = new WebSocket(`ws://127.0.0.1:${t.httpPort}/xmpp-websocket`, protocols);
  const got: string[] = [];
  const closed = new Promise<CloseEvent>((r) => ws.onclose = r);
  ws.onmessage = (e) => got.push(String(e.data));
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  return { ws, got, closed };
}

serverTest("WebSocket: @xmpp/client logs in with SCRAM and chats with a TCP client", async () => {
  const t = await startServer();
  const ws = wsClient(t, "alice", "browser");
  let tcp: RawClient | undefined;
  try {
    await t.addUser("alice");
    await t.addUser("bob");
    const jid = await ws.start();
    assert.equal(jid.toString(), "alice@localhost/browser");
    tcp = await RawClient.login(t.port, "bob", "secret", { starttls: false, resource: "desk" });
    const received = new Promise<XmppClient>((resolve) => {
      ws.on("stanza", (el: XmppClient) => el.is("message") && resolve(el));
    });
    tcp.send(
      "<message to='alice@localhost/browser' type='chat'><body>hi over tcp</body></message>",
    );
    assert.equal((await received).getChildText("body"), "hi over tcp");
    await ws.send(
      xml("message", { to: "bob@localhost/desk", type: "chat" }, xml("body", {}, "hi back")),
    );
    const back = await tcp.waitFor((el) => el.name === "message", 5000, "the reply");
    assert.equal(back.childText("body"), "hi back");
    assert.equal(back.attrs.from, "alice@localhost/browser");
  } finally {
    await ws.stop().catch(() => {});
    tcp?.close();
    await t.stop();
  }
});

serverTest("WebSocket: framing of RFC 7395, and refusals with the specified errors", async () => {
  const t = await startServer();
  try {
    // The opening: <open/> answered with <open/> and features that declare the stream prefix.
    const a = await rawSocket(t);
    a.ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>");
    await until(() => a.got.length >= 2, "open and features");
    assert.match(
      a.got[0],
      /^<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'[^>]* from='localhost'/,
    );
    assert.match(a.got[1], /^<stream:features xmlns:stream='http:\/\/etherx.jabber.org\/streams'/);
    assert.ok(!a.got[1].includes("starttls"), "no STARTTLS on a WebSocket");
    // <close/> is answered with <close/>, and the WebSocket ends.
    a.ws.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");
    await a.closed;
    assert.equal(a.got.at(-1), "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");

    // Not XML: a stream error, then <close/>.
    const b = await rawSocket(t);
    b.ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>");
    b.ws.send("this is not xml <");
    await b.closed;
    assert.ok(b.got.some((m) => m.includes("<stream:error") && m.includes("xmlns:stream=")));
    assert.equal(b.got.at(-1), "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");

    // A binary frame: unsupported-encoding.
    const c = await rawSocket(t);
    c.ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>");
    c.ws.send(new Uint8Array([1, 2, 3]));
    await c.closed;
    assert.ok(c.got.some((m) => m.includes("unsupported-encoding")));

    // A message past the stanza limit before authentication (16 KiB): policy-violation.
    const big = await rawSocket(t);
    big.ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>");
    big.ws.send(`<message to='x@localhost'><body>${"a".repeat(20_000)}</body></message>`);
    await big.closed;
    assert.ok(big.got.some((m) => m.includes("policy-violation")));

    // An unknown host: host-unknown.
    const d = await rawSocket(t);
    d.ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='nowhere' version='1.0'/>");
    await d.closed;
    assert.ok(d.got.some((m) => m.includes("host-unknown")));

    // Without the subprotocol, or without an upgrade: refused over HTTP.
    const url = `http://127.0.0.1:${t.httpPort}/xmpp-websocket`;
    const plain = await fetch(url);
    assert.equal(plain.status, 426);
    await plain.body?.cancel();
    const noProtocol = new WebSocket(url.replace("http", "ws"));
    const failed = await new Promise<boolean>((resolve) => {
      noProtocol.onopen = () => resolve(false);
      noProtocol.onerror = () => resolve(true);
    });
    assert.ok(failed, "a WebSocket without the xmpp subprotocol is refused");
    const missing = await fetch(`http://127.0.0.1:${t.httpPort}/nothing`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
  } finally {
    await t.stop();
  }
});

serverTest("WebSocket: an origin not allowed is refused with 403", async () => {
  const t = await startServer({ http: { allowed_origins: ["https://chat.example"] } });
  try {
    const res = await fetch(`http://127.0.0.1:${t.httpPort}/xmpp-websocket`, {
      headers: {
        upgrade: "websocket",
        connection: "upgrade",
        origin: "https://evil.example",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
        "sec-websocket-protocol": "xmpp",
      },
    });
    assert.equal(res.status, 403);
    await res.body?.cancel();
  } finally {
    await t.stop();
  }
});

serverTest("discovery (XEP-0156): host-meta lists the WebSocket and BOSH URLs", async () => {
  const t = await startServer({ http: { public_url: "https://chat.example.org/" } });
  try {
    const base = `http://127.0.0.1:${t.httpPort}/.well-known/host-meta`;
    const xrd = await fetch(base);
    assert.equal(xrd.headers.get("access-control-allow-origin"), "*");
    const body = await xrd.text();
    assert.match(
      body,
      /rel='urn:xmpp:alt-connections:websocket' href='wss:\/\/chat.example.org\/xmpp-websocket'/,
    );
    assert.match(
      body,
      /rel='urn:xmpp:alt-connections:xbosh' href='https:\/\/chat.example.org\/http-bind'/,
    );
    const json = await (await fetch(base + ".json")).json();
    assert.deepEqual(json.links.map((l: { href: string }) => l.href), [
      "wss://chat.example.org/xmpp-websocket",
      "https://chat.example.org/http-bind",
    ]);
  } finally {
    await t.stop();
  }
});

serverTest("https: a listener with tls serves each host's certificate (SNI)", async () => {
  const t = await startServer({
    hosts: [{ domain: "localhost" }, { domain: "other.localhost" }],
    listeners: [
      { type: "c2s", bind: "127.0.0.1", port: 0 },
      { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
      { type: "http", bind: "127.0.0.1", port: 0, tls: true },
    ],
  });
  const ca = await Deno.readTextFile(`${t.dataDir}/certs/localhost.crt`);
  const httpClient = Deno.createHttpClient({ caCerts: [ca] });
  try {
    const res = await fetch(`https://localhost:${t.httpPort}/.well-known/host-meta.json`, {
      client: httpClient,
    });
    const json = await res.json();
    assert.equal(json.links[0].href, `wss://localhost:${t.httpPort}/xmpp-websocket`);
    for (const name of ["localhost", "other.localhost"]) {
      const cn = await new Promise<string | undefined>((resolve, reject) => {
        const s = tls.connect(
          { host: "127.0.0.1", port: t.httpPort, servername: name, rejectUnauthorized: false },
          () => {
            resolve(s.getPeerCertificate().subject?.CN);
            s.end();
          },
        );
        s.on("error", reject);
      });
      assert.equal(cn, name, `the certificate for ${name}`);
    }
    // A WebSocket upgrade over TLS (wss) goes through to the session.
    const status = await new Promise<string>((resolve, reject) => {
      const s = tls.connect(
        { host: "127.0.0.1", port: t.httpPort, servername: "localhost", rejectUnauthorized: false },
        () =>
          s.write(
            "GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n" +
              "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
              "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n",
          ),
      );
      s.once("data", (d) => {
        resolve(d.toString().split("\r\n")[0]);
        s.destroy();
      });
      s.on("error", reject);
    });
    assert.equal(status, "HTTP/1.1 101 Switching Protocols");
  } finally {
    httpClient.close();
    await t.stop();
  }
});

serverTest("WebSocket: a client that does not answer WebSocket pings is closed", async () => {
  const t = await startServer({ timeouts: { ping_interval: 1, handshake: 60 } });
  const socket = net.connect(t.httpPort, "127.0.0.1");
  try {
    let head = "";
    const closed = new Promise<number>((resolve) =>
      socket.once("close", () => resolve(Date.now()))
    );
    socket.on("data", (d) => head += d.toString("latin1"));
    socket.on("error", () => {});
    socket.write(
      "GET /xmpp-websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n" +
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n",
    );
    await until(() => head.startsWith("HTTP/1.1 101"), "the upgrade");
    const upgradedAt = Date.now();
    // Never answering: the server's ping (0x89) goes unanswered, and it closes the connection
    // long before the 60 s handshake timeout would.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const at = await Promise.race([
      closed,
      new Promise<number>((r) => timer = setTimeout(() => r(-1), 10_000)),
    ]);
    clearTimeout(timer);
    assert.notEqual(at, -1, "still open 10 s after the upgrade");
    assert.ok(at - upgradedAt < 10_000);
    assert.ok(head.includes("\x89"), "a ping was sent");
  } finally {
    socket.destroy();
    await t.stop();
  }
});
