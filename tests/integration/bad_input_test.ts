// Hostile or broken input gets the specified stream error on that connection only; the server
// keeps serving everyone else.
import assert from "node:assert/strict";
import { HEADER, RawClient } from "../helpers/raw_client.ts";
import { withServer } from "../helpers/server.ts";
import { NS } from "../../src/xml/ns.ts";

const CASES: [string, string, string][] = [
  ["malformed XML", HEADER() + "<message><body>x</message>", "not-well-formed"],
  [
    "a DTD",
    "<?xml version='1.0'?><!DOCTYPE foo [<!ENTITY x 'y'>]><stream:stream/>",
    "restricted-xml",
  ],
  [
    "a DTD after the stream header",
    HEADER() + "<!DOCTYPE foo [<!ENTITY x 'y'>]>",
    "restricted-xml",
  ],
  ["a processing instruction", HEADER() + "<?evil stuff?>", "restricted-xml"],
  ["a comment", HEADER() + "<!-- hi -->", "restricted-xml"],
  ["an undefined entity", HEADER() + "<message><body>&xxe;</body></message>", "restricted-xml"],
  // A character reference, not an entity reference, but to a character XML forbids.
  ["a reference to U+0000", HEADER() + "<message><body>&#0;</body></message>", "not-well-formed"],
  [
    "a wrong stream namespace",
    "<stream:stream xmlns:stream='urn:wrong' to='localhost' version='1.0'>",
    "invalid-namespace",
  ],
  [
    "a wrong content namespace",
    "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
    "invalid-namespace",
  ],
  ["an unknown host", HEADER("elsewhere.example"), "host-unknown"],
  [
    "no version",
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>",
    "unsupported-version",
  ],
  ["text between stanzas", HEADER() + "hello<presence/>", "bad-format"],
  ["invalid UTF-8", HEADER() + "<message><body>\xff\xfe</body></message>", "not-well-formed"],
  ["deep nesting", HEADER() + "<message>" + "<a>".repeat(100), "policy-violation"],
];

withServer("bad input gets the right stream error and closes only that stream", {}, async (t) => {
  await t.addUser("ok");
  const bystander = await RawClient.login(t.port, "ok");
  for (const [what, bytes, condition] of CASES) {
    const c = await RawClient.connect(t.port);
    c.send(bytes.includes("\xff") ? Uint8Array.from(bytes, (ch) => ch.charCodeAt(0)) : bytes);
    const err = await c.streamError().catch(() => null);
    assert.ok(
      err?.child(condition, NS.streamErrors),
      `${what}: expected ${condition}, got ${err}`,
    );
    await c.waitClosed();
  }
  const pong = await bystander.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
  assert.equal(pong.attrs.type, "result", "other users are not affected");
  bystander.close();
});

withServer("an oversized stanza is refused with policy-violation before it is buffered whole", {
  limits: { max_stanza_size: 4096 },
}, async (t) => {
  await t.addUser("big");
  const c = await RawClient.login(t.port, "big");
  c.send("<message to='big@localhost'><body>");
  const chunk = "x".repeat(1024);
  for (let i = 0; i < 8 && !c.closed; i++) c.send(chunk);
  const err = await c.streamError();
  assert.ok(err.child("policy-violation"));
  // A stanza just under the limit passes.
  const d = await RawClient.login(t.port, "big", "secret", { resource: "d" });
  d.send("<presence/>");
  d.send(`<message to='big@localhost/d' id='fit'><body>${"y".repeat(3000)}</body></message>`);
  await d.waitFor((e) => e.attrs.id === "fit");
  d.close();
});

withServer("after login: unsupported stanza types, invalid from and bad iqs", {}, async (t) => {
  await t.addUser("pat");
  const a = await RawClient.login(t.port, "pat");
  a.send("<foo/>");
  assert.ok((await a.streamError()).child("unsupported-stanza-type"));
  const b = await RawClient.login(t.port, "pat");
  b.send("<message from='mallory@localhost/x' to='pat@localhost'><body>spoof</body></message>");
  assert.ok((await b.streamError()).child("invalid-from"));
  const c = await RawClient.login(t.port, "pat");
  c.send(
    "<iq type='get' id='two'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>",
  );
  const two = await c.waitFor((e) => e.attrs.id === "two");
  assert.ok(two.child("error")!.child("bad-request"));
  c.send("<iq type='bogus' id='bt'/>");
  assert.ok((await c.waitFor((e) => e.attrs.id === "bt")).child("error")!.child("bad-request"));
  c.close();
});

withServer(
  "an abrupt TCP drop mid-stanza cleans up the session; others are unaffected",
  {},
  async (t) => {
    await t.addUser("q1");
    await t.addUser("q2");
    const q1 = await RawClient.login(t.port, "q1", "secret", { resource: "r" });
    const q2 = await RawClient.login(t.port, "q2");
    q1.send("<message to='q2@localhost'><body>half a st");
    q1.drop();
    // The session is gone: a message to its full JID now bounces.
    const deadline = Date.now() + 5000;
    while (t.server.sessions.size > 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(t.server.sessions.size, 1);
    const r = await q2.iq("get", `<ping xmlns='${NS.ping}'/>`, "q1@localhost/r");
    assert.ok(r.child("error")!.child("service-unavailable"));
    q2.close();
  },
);

withServer("connections per IP address are capped with policy-violation", {
  limits: { connections_per_ip: 2 },
}, async (t) => {
  const a = await RawClient.connect(t.port);
  const b = await RawClient.connect(t.port);
  const c = await RawClient.connect(t.port);
  assert.ok((await c.streamError()).child("policy-violation"));
  await a.open();
  await b.open();
  a.close();
  b.close();
});

withServer("clients over the byte rate are slowed down, not dropped", {
  limits: { rate_bytes_per_second: 20_000, rate_burst_bytes: 20_000 },
}, async (t) => {
  await t.addUser("fast");
  const c = await RawClient.login(t.port, "fast", "secret", { resource: "f" });
  c.send("<presence/>");
  const body = "z".repeat(2000);
  const started = Date.now();
  for (let i = 0; i < 30; i++) {
    c.send(`<message to='fast@localhost/f' id='m${i}'><body>${body}</body></message>`);
  }
  await c.waitFor((e) => e.attrs.id === "m29", 10000);
  const took = Date.now() - started;
  assert.ok(took >= 1500, `60 KB at 20 KB/s after a 20 KB burst took only ${took} ms`);
  assert.equal(c.closed, false);
  c.close();
});
