// BOSH (XEP-0124, XEP-0206) at /http-bind, driven with raw HTTP: a session that logs in with
// SCRAM and chats with a TCP client, the rid rules, wait and hold, polling, inactivity,
// termination, the stream's end kept for a later request, stalled and broken-off requests, and
// the refusals with the conditions XEP-0124 §17 specifies.
import assert from "node:assert/strict";
import type { LogRecord } from "@logtape/logtape";
import { captureLogs } from "../helpers/logs.ts";
import type { Element } from "../../src/xml/element.ts";
import { NS } from "../../src/xml/ns.ts";
import { parseStanza } from "../../src/xml/parse_string.ts";
import { BoshTransport } from "../../src/http/bosh_transport.ts";
import { HttpListener } from "../../src/http/listener.ts";
import { setupLogging } from "../../src/log/logger.ts";
import { serverTest, startServer, type TestServer, withServer } from "../helpers/server.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { until } from "../helpers/until.ts";
import {
  BoshClient,
  boshUrl,
  creation,
  NS_HTTPBIND,
  post,
  StalledPost,
  wrap,
  XBOSH,
} from "../helpers/bosh_client.ts";

/** The server side of the BOSH sessions. */
function boshSessions(t: TestServer): BoshTransport[] {
  return t.server.listeners.flatMap((l) =>
    [...l.streams].flatMap((s) => s.transport instanceof BoshTransport ? [s.transport] : [])
  );
}

function transportOf(t: TestServer, sid: string): BoshTransport | undefined {
  return boshSessions(t).find((b) => b.sid === sid);
}

/** The condition of a terminal binding error ("" for a plain terminate, undefined: none). */
function condition(body: Element | null): string | undefined {
  if (body?.attrs.type !== "terminate") return undefined;
  return body.attrs.condition ?? "";
}

/** bob over TCP, alice over BOSH: she sent him presence, so he sees her go offline. */
async function aliceAndBob(t: TestServer, attrs?: string) {
  await t.addUser("alice");
  await t.addUser("bob");
  const bob = await RawClient.login(t.port, "bob", "secret", { starttls: false, resource: "desk" });
  const alice = await BoshClient.login(t, "alice", { attrs });
  await alice.send("<presence to='bob@localhost/desk' xmlns='jabber:client'/>");
  await bob.waitFor((e) => e.name === "presence" && !e.attrs.type, 5000, "alice's presence");
  return { alice, bob };
}

const offline = (e: Element) => e.name === "presence" && e.attrs.type === "unavailable";

const ping = (id: string) =>
  `<iq type='get' id='${id}' to='localhost' xmlns='jabber:client'><ping xmlns='${NS.ping}'/></iq>`;

serverTest("BOSH: a session logs in with SCRAM, restarts, binds and chats with TCP", async () => {
  const t = await startServer();
  let bob: RawClient | undefined;
  try {
    await t.addUser("alice");
    await t.addUser("bob");
    // The session creation response: the server's header as attributes, and the features.
    const rid = 4242;
    const created = await post(t.httpPort, wrap(creation(rid, "wait='30' hold='1'")));
    assert.equal(created.status, 200);
    assert.equal(created.headers.get("content-type"), "text/xml; charset=utf-8");
    assert.equal(created.headers.get("access-control-allow-origin"), "*");
    const a = created.body!.attrs;
    assert.equal(a.xmlns, NS_HTTPBIND);
    assert.ok(a.sid && a.sid.length >= 16, "an unpredictable sid");
    assert.equal(a.wait, "30");
    assert.equal(a.hold, "1");
    assert.equal(a.requests, "2");
    assert.equal(a.inactivity, "60");
    assert.ok(Number(a.polling) > 0);
    assert.equal(a.ver, "1.6", "the lower of the client's version and ours");
    assert.equal(a.from, "localhost");
    assert.ok(a.authid, "the stream id");
    assert.equal(a["xmpp:version"], "1.0");
    assert.equal(a["xmlns:xmpp"], "urn:xmpp:xbosh");
    assert.equal(a["xmpp:restartlogic"], "true");
    assert.equal(a.type, undefined);
    const features = created.body!.child("features", NS.streams)!;
    const mechanisms = features.child("mechanisms")!.elements().map((m) => m.text());
    assert.ok(mechanisms.includes("SCRAM-SHA-1"), String(mechanisms));
    assert.ok(!mechanisms.includes("PLAIN"), "no PLAIN over plain http");
    assert.ok(!features.child("starttls"), "no STARTTLS over http");
    await post(t.httpPort, wrap(` sid='${a.sid}' rid='${rid + 1}' type='terminate'`));

    // A whole login, then a chat with a TCP client.
    const alice = await BoshClient.login(t, "alice", { resource: "web" });
    assert.equal(alice.jid, "alice@localhost/web");
    bob = await RawClient.login(t.port, "bob", "secret", { starttls: false, resource: "desk" });
    await alice.send(
      "<message to='bob@localhost/desk' type='chat' xmlns='jabber:client'><body>hi from bosh</body></message>",
    );
    const got = await bob.waitFor((e) => e.name === "message", 5000, "alice's message");
    assert.equal(got.attrs.from, "alice@localhost/web");
    assert.equal(got.childText("body"), "hi from bosh");
    bob.send("<message to='alice@localhost/web' type='chat'><body>hi back</body></message>");
    const reply = await alice.waitFor((e) => e.name === "message", "bob's reply");
    assert.equal(reply.attrs.xmlns, "jabber:client", "a payload names jabber:client");
    assert.equal(reply.attrs.from, "bob@localhost/desk");
    assert.equal(reply.childText("body"), "hi back");
    await alice.send("", " type='terminate'");
    await alice.settled();
  } finally {
    bob?.close();
    await t.stop();
  }
});

withServer("BOSH: rids are processed in order, repeated and out of the window", {}, async (t) => {
  await t.addUser("alice");
  const alice = await BoshClient.login(t, "alice", { attrs: "wait='1' hold='1'" });
  await alice.settled();
  const transport = transportOf(t, alice.sid)!;
  const r = alice.rid;
  // rid+2 comes first: it waits for rid+1, whose payload goes to the stream before its own.
  const second = post(t.httpPort, alice.body(ping("p2"), "", r + 2));
  await until(() => transport.pending === 1, "the early request kept");
  const first = await post(t.httpPort, alice.body(ping("p1"), "", r + 1));
  const later = await second;
  assert.equal(condition(later.body), undefined);
  const ids = [first, later].flatMap((res) => res.body!.elements("iq").map((iq) => iq.attrs.id));
  assert.deepEqual(ids, ["p1", "p2"], first.text + later.text);

  // A repeated rid gets the same response again.
  const again = await post(t.httpPort, alice.body(ping("ignored"), "", r + 1));
  assert.equal(again.text, first.text);

  // One no longer kept, or beyond the window (requests = 2), ends the session: item-not-found.
  const old = await post(t.httpPort, alice.body("", "", r - 3));
  assert.equal(condition(old.body), "item-not-found");
  await until(() => transport.destroyed, "the session ended");
  const next = await post(t.httpPort, alice.body("", "", r + 3));
  assert.equal(condition(next.body), "item-not-found");

  const other = await BoshClient.login(t, "alice", { attrs: "wait='1' hold='1'" });
  await other.settled();
  const far = await post(t.httpPort, other.body("", "", other.rid + 3));
  assert.equal(condition(far.body), "item-not-found");
  assert.equal(transportOf(t, other.sid), undefined, "gone");
});

withServer(
  "BOSH: a flood of unknown sids is answered cheaply while TCP logins go on",
  {},
  async (t) => {
    await t.addUser("bob");
    const started = Date.now();
    let answered = 0;
    const flood = async () => {
      for (let i = 0; i < 100; i++) {
        const sid = crypto.randomUUID();
        const r = await post(t.httpPort, wrap(` sid='${sid}' rid='${1000 + i}'`, ping("x")));
        assert.equal(r.status, 404);
        assert.equal(condition(r.body), "item-not-found");
        answered++;
      }
    };
    const login = (async () => {
      const c = await RawClient.login(t.port, "bob", "secret", { starttls: false });
      const at = Date.now() - started;
      c.close();
      return at;
    })();
    await Promise.all([...Array.from({ length: 20 }, flood), login]);
    assert.equal(answered, 2000);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 30_000, `2000 unknown sids took ${elapsed} ms`);
    assert.ok((await login) < 10_000, "the TCP login went through meanwhile");
    assert.equal(boshSessions(t).length, 0, "no session made");
  },
);

withServer("BOSH: inactivity ends a session and its user goes offline", {
  bosh: { inactivity: 5 },
}, async (t) => {
  const { alice, bob } = await aliceAndBob(t, "wait='1' hold='1'");
  assert.equal(alice.created.attrs.inactivity, "5");
  await alice.settled();
  const silent = Date.now();
  const gone = await bob.waitFor(offline, 15_000, "alice gone");
  assert.equal(gone.attrs.from, alice.jid);
  assert.ok(Date.now() - silent >= 4500, "not before the inactivity period");
  const late = await post(t.httpPort, alice.body());
  assert.equal(condition(late.body), "item-not-found");
  bob.close();
});

withServer("BOSH: terminate forwards its payloads and ends the session", {}, async (t) => {
  const { alice, bob } = await aliceAndBob(t);
  await alice.send(
    "<message to='bob@localhost/desk' xmlns='jabber:client'><body>bye</body></message>",
    " type='terminate'",
  );
  await until(() => alice.terminated !== undefined, "the terminate response");
  assert.equal(condition(alice.terminated!), "");
  const bye = await bob.waitFor((e) => e.name === "message", 5000, "the last message");
  assert.equal(bye.childText("body"), "bye");
  await bob.waitFor(offline, 5000, "alice gone");
  await alice.settled();
  const late = await post(t.httpPort, alice.body());
  assert.equal(condition(late.body), "item-not-found");
  bob.close();
});

withServer("BOSH: wait, hold, polling, and held requests answered at shutdown", {}, async (t) => {
  await t.addUser("alice");
  const c = await BoshClient.create(t.httpPort, "wait='1' hold='1'");
  assert.equal(c.created.attrs.wait, "1");
  // Nothing to send: an empty response once `wait` is over.
  let at = Date.now();
  const empty = await post(t.httpPort, c.body("", "", ++c.rid));
  const waited = Date.now() - at;
  assert.ok(waited >= 900 && waited < 5000, `answered after ${waited} ms`);
  assert.equal(empty.text, `<body xmlns='${NS_HTTPBIND}'/>`);
  // hold = 1: a second request makes the server answer the one it holds at once.
  at = Date.now();
  const held = post(t.httpPort, c.body("", "", ++c.rid));
  await until(() => transportOf(t, c.sid)?.pending === 1, "the request held");
  const auth = `<auth xmlns='${NS.sasl}' mechanism='SCRAM-SHA-1'>${
    btoa("n,,n=alice,r=abc")
  }</auth>`;
  const second = post(t.httpPort, c.body(auth, "", ++c.rid));
  assert.equal((await held).body!.elements().length, 0);
  assert.ok(Date.now() - at < 900, "the held request was answered before its wait was over");
  assert.ok((await second).body!.child("challenge", NS.sasl), "the next held one gets the data");

  // A polling session (hold 0): answered at once; two empty polls in a row are too frequent.
  const poller = await BoshClient.create(t.httpPort, "wait='10' hold='0'");
  assert.equal(poller.created.attrs.requests, "1");
  at = Date.now();
  const poll = await post(t.httpPort, poller.body("", "", ++poller.rid));
  assert.ok(Date.now() - at < 900 && condition(poll.body) === undefined, poll.text);
  const tooSoon = await post(t.httpPort, poller.body("", "", ++poller.rid));
  assert.equal(condition(tooSoon.body), "policy-violation");

  // A request held when the server stops gets the stream's end.
  const last = post(t.httpPort, c.body("", "", ++c.rid));
  await until(() => transportOf(t, c.sid)?.pending === 1, "the request held");
  const stopping = t.stop();
  const end = (await last).body!;
  await stopping;
  assert.equal(condition(end), "remote-stream-error");
  assert.ok(end.child("error", NS.streams)?.child("system-shutdown"), String(end));
});

withServer("BOSH: refusals with the conditions of XEP-0124 §17", {
  http: { allowed_origins: ["https://chat.example"] },
}, async (t) => {
  const url = boshUrl(t.httpPort);
  const page = { origin: "https://chat.example" };
  // CORS for the pages allowed; others get 403 like the WebSocket.
  const preflight = await fetch(url, {
    method: "OPTIONS",
    headers: { ...page, "access-control-request-method": "POST" },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get("access-control-allow-origin"), "https://chat.example");
  assert.match(preflight.headers.get("access-control-allow-methods")!, /POST/);
  await preflight.body?.cancel();
  const evil = await post(t.httpPort, wrap(creation(1)), { origin: "https://evil.example" });
  assert.equal(evil.status, 403);
  const info = await fetch(url);
  assert.equal(info.status, 200);
  await info.body?.cancel();
  const put = await fetch(url, { method: "PUT", body: "x" });
  assert.equal(put.status, 405);
  await put.body?.cancel();

  const refused = async (body: string, expected: string, status = 200) => {
    const r = await post(t.httpPort, body, page);
    assert.equal(r.status, status, body);
    assert.equal(r.headers.get("access-control-allow-origin"), "https://chat.example");
    assert.equal(condition(r.body), expected, `${body}: ${r.text}`);
  };
  await refused("this is not xml", "bad-request");
  await refused(`<body rid='1' to='localhost' wait='5' xmlns='urn:wrong'/>`, "bad-request");
  await refused(wrap(" to='localhost' wait='5'"), "bad-request");
  await refused(wrap(" rid='1' to='localhost'"), "bad-request");
  await refused(`<body xmlns='${NS_HTTPBIND}' rid='1' to='localhost' wait='5'>`, "bad-request");
  await refused(wrap(creation(1, "wait='10'", "nowhere.example")), "host-unknown");
  await refused(wrap(` rid='1' wait='10' ${XBOSH}`), "improper-addressing");
  await refused(wrap(` sid='nope' rid='2'`), "item-not-found", 404);
  await refused(wrap(creation(1), "x".repeat(262_144 + 16_385)), "policy-violation");

  // A stream error ends the session: remote-stream-error with the <stream:error/> inside.
  const c = await BoshClient.create(t.httpPort);
  const early = await post(t.httpPort, c.body("<message to='bob@localhost'/>", "", ++c.rid));
  assert.equal(condition(early.body), "remote-stream-error");
  assert.ok(early.body!.child("error", NS.streams)?.child("not-authorized"), early.text);
  // A malformed wrapper naming a session ends it: bad-request.
  const d = await BoshClient.create(t.httpPort);
  const cut = await post(t.httpPort, c.body().replace("</body>", "").replace(c.sid, d.sid));
  assert.equal(condition(cut.body), "bad-request");
  const after = await post(t.httpPort, d.body("", "", ++d.rid));
  assert.equal(condition(after.body), "item-not-found");
});

withServer("BOSH: limits per session: requests per second, output not fetched", {
  bosh: { max_requests_per_second: 20 },
  limits: { max_outbound_buffer: 65_536 },
}, async (t) => {
  // Beyond max_requests_per_second: policy-violation (repeats of a rid count too).
  const c = await BoshClient.create(t.httpPort);
  const conditions: (string | undefined)[] = [];
  for (let i = 0; i < 60 && conditions.at(-1) === undefined; i++) {
    conditions.push(condition((await post(t.httpPort, c.body("", "", c.rid))).body));
  }
  assert.equal(conditions.at(-1), "policy-violation", String(conditions));
  assert.ok(conditions.length >= 10, "a burst is allowed");

  // Output the client does not fetch is bounded: past max_outbound_buffer the session ends.
  const { alice, bob } = await aliceAndBob(t, "wait='1' hold='1'");
  await alice.settled();
  const text = "x".repeat(1024);
  for (let i = 0; i < 100; i++) {
    bob.send(`<message to='${alice.jid}' type='chat'><body>${text}</body></message>`);
  }
  await bob.waitFor(offline, 10_000, "alice gone");
  assert.equal(transportOf(t, alice.sid), undefined);
  bob.close();
});

withServer("BOSH: the stream's end waits for the next request when none is held", {
  bosh: { inactivity: 5 },
}, async (t) => {
  await t.addUser("alice");
  const attrs = "wait='1' hold='1'";
  const web = await BoshClient.login(t, "alice", { attrs, resource: "web" });
  const phone = await BoshClient.login(t, "alice", { attrs, resource: "phone" });
  await Promise.all([web.settled(), phone.settled()]);
  // TCP logins with the same resources replace both: a conflict stream error, no request held.
  const tcp = await Promise.all(
    ["web", "phone"].map((resource) =>
      RawClient.login(t.port, "alice", "secret", { starttls: false, resource })
    ),
  );
  await until(() => !transportOf(t, web.sid) && !transportOf(t, phone.sid), "sessions gone");
  const gone = Date.now();
  const end = await post(t.httpPort, web.body("", "", ++web.rid));
  assert.equal(condition(end.body), "remote-stream-error", end.text);
  assert.ok(end.body!.child("error", NS.streams)?.child("conflict"), end.text);
  // Once: then the sid is unknown.
  const again = await post(t.httpPort, web.body("", "", ++web.rid));
  assert.equal(condition(again.body), "item-not-found");
  // Kept at most `inactivity` seconds.
  await new Promise((r) => setTimeout(r, gone + 5500 - Date.now()));
  const late = await post(t.httpPort, phone.body("", "", ++phone.rid));
  assert.equal(condition(late.body), "item-not-found", late.text);
  for (const c of tcp) c.close();
});

Deno.test("BOSH: the stream's end kept for a later request is bounded", () => {
  const settings = {
    wait: 10,
    hold: 1,
    inactivity: 60,
    polling: 5,
    maxRate: 10,
    maxHeld: 65_536,
    highWater: 65_536,
    created: "",
    maxKept: 1024,
  };
  const error = `<stream:error><conflict xmlns='${NS.streams}'/></stream:error>`;
  const ended = (text: string) => {
    const b = new BoshTransport("sid", "127.0.0.1:1", settings, "text/xml");
    b.attach({ data() {}, drain() {}, close() {}, refuse() {} });
    b.write([`<message to='a@b'><body>${text}</body></message>`, error, b.closing]);
    b.destroy();
    return parseStanza(b.unsent!)!;
  };
  const small = ended("hi");
  assert.equal(condition(small), "remote-stream-error");
  assert.equal(small.child("message")?.childText("body"), "hi", "what is left goes along");
  const large = ended("x".repeat(2000));
  assert.equal(condition(large), "remote-stream-error");
  assert.equal(large.elements().length, 1, String(large));
  assert.ok(large.child("error", NS.streams)?.child("conflict"), String(large));
});

withServer("BOSH: a stalled request is answered bad-request; a broken-off one is no error", {
  timeouts: { handshake: 3 },
}, async (t) => {
  await t.addUser("alice");
  const alice = await BoshClient.login(t, "alice", { attrs: "wait='1' hold='1'" });
  await alice.settled();
  // Headers and the start of a body, then nothing: answered once timeouts.handshake is over.
  const started = Date.now();
  const stalled = await Promise.all([
    StalledPost.start(t.httpPort, wrap(creation(1)).slice(0, -7), 400),
    StalledPost.start(t.httpPort, alice.body(ping("s"), "", ++alice.rid).slice(0, -7), 400),
  ]);
  for (const s of stalled) {
    const r = await s.response(10_000);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("access-control-allow-origin"), "*");
    assert.equal(condition(r.body), "bad-request", r.text);
  }
  const waited = Date.now() - started;
  assert.ok(waited >= 2900 && waited < 9000, `answered after ${waited} ms`);
  assert.equal(transportOf(t, alice.sid), undefined, "the session it named is over");

  // A client that goes away mid-body: logged at debug, no error.
  const { records, release } = captureLogs(
    "debug",
    () => setupLogging((Deno.env.get("PARLEY_TEST_LOG") as "debug" | undefined) ?? "error"),
  );
  try {
    const gone = await StalledPost.start(t.httpPort, wrap(creation(1)).slice(0, -7), 400);
    await new Promise((r) => setTimeout(r, 500));
    gone.close();
    const brokenOff = (r: LogRecord) =>
      r.category.join(".") === "parley.bosh" && String(r.rawMessage).includes("broken off");
    const error = (r: LogRecord) => r.level === "error" || r.level === "fatal";
    await until(() => records.some((r) => brokenOff(r) || error(r)), "the request logged");
    assert.deepEqual(records.filter(error).map((r) => r.message.join("")), []);
    assert.equal(records.find(brokenOff)?.level, "debug");
  } finally {
    release();
  }
});

withServer("BOSH: a session the listener refuses gets a <body/> a page can read", {
  http: { allowed_origins: ["https://chat.example"] },
  limits: { connections_per_ip: 1 },
  // Behind a proxy: streams are counted per forwarded address, connections are not.
  listeners: [
    { type: "c2s", bind: "127.0.0.1", port: 0 },
    { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
    { type: "http", bind: "127.0.0.1", port: 0, trusted_proxies: ["127.0.0.1/32"] },
  ],
}, async (t) => {
  const client = { origin: "https://chat.example", "x-forwarded-for": "203.0.113.7" };
  const refusal = async (expected: string) => {
    const r = await post(t.httpPort, wrap(creation(1)), client);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get("access-control-allow-origin"), "https://chat.example");
    assert.equal(r.headers.get("content-type"), "text/xml; charset=utf-8");
    assert.equal(condition(r.body), expected, r.text);
  };
  // Over the cap per address: the client broke a rule.
  const first = await post(t.httpPort, wrap(creation(1)), client);
  assert.ok(first.body?.attrs.sid, first.text);
  await refusal("policy-violation");
  // The server stopping: no new sessions.
  const http = t.server.listeners.find((l) => l instanceof HttpListener)!;
  http.drain();
  await refusal("system-shutdown");
});
