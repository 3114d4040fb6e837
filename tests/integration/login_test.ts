import assert from "node:assert/strict";
import { RawClient } from "../helpers/raw_client.ts";
import { withServer } from "../helpers/server.ts";
import { NS } from "../../src/xml/ns.ts";

withServer(
  "STARTTLS then SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN logins bind a resource",
  {},
  async (t) => {
    await t.addUser("alice", "pässwörd");
    for (const mech of ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] as const) {
      const c = await RawClient.login(t.port, "alice", "pässwörd", { mech, resource: mech });
      assert.equal(c.jid, `alice@localhost/${mech}`);
      c.close();
    }
  },
);

withServer("features: STARTTLS required by default hides mechanisms; PLAIN only after TLS", {
  listeners: [
    { type: "c2s", bind: "127.0.0.1", port: 0 },
    { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
  ],
}, async (t) => {
  const c = await RawClient.connect(t.port);
  const f = await c.open();
  assert.ok(f.child("starttls", NS.tls)?.child("required"));
  assert.equal(f.child("mechanisms", NS.sasl), undefined);
  // Trying to authenticate before TLS is a policy violation.
  c.send(`<auth xmlns='${NS.sasl}' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>`);
  const err = await c.streamError();
  assert.ok(err.child("policy-violation"));
  const d = await RawClient.connect(t.port);
  await d.open();
  await d.starttls();
  const f2 = await d.open();
  const mechs = f2.child("mechanisms", NS.sasl)!.elements("mechanism").map((m) => m.text());
  assert.deepEqual(mechs, ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]);
  d.close();
});

withServer("direct TLS listener (XEP-0368) offers SASL at once", {}, async (t) => {
  await t.addUser("bob");
  const c = await RawClient.connect(t.tlsPort, { tls: true });
  const f = await c.open();
  assert.equal(f.child("starttls"), undefined);
  assert.ok(await c.scram("bob", "secret"));
  await c.open();
  assert.equal(await c.bind("x"), "bob@localhost/x");
  c.close();
});

withServer("wrong password gets not-authorized, each failure slower, and the stream survives", {
  timeouts: { auth_failure_delay_ms: 100 },
}, async (t) => {
  await t.addUser("carol", "right");
  const c = await RawClient.connect(t.port);
  await c.open();
  const started = Date.now();
  assert.equal(await c.scram("carol", "wrong"), false);
  const first = Date.now() - started;
  const r1 = c.received.length;
  assert.equal(r1, 0);
  const s2 = Date.now();
  assert.equal(await c.plain("carol", "wrong"), false);
  const second = Date.now() - s2;
  assert.ok(first >= 100, `first failure after ${first} ms`);
  assert.ok(second >= 200, `second failure after ${second} ms`);
  // Unknown users look the same as wrong passwords.
  assert.equal(await c.scram("nobody", "x"), false);
  assert.ok(await c.scram("carol", "right"));
  c.close();
});

withServer(
  "SASL failure carries the not-authorized condition; bad base64 is incorrect-encoding",
  {},
  async (t) => {
    const c = await RawClient.connect(t.port);
    await c.open();
    c.send(`<auth xmlns='${NS.sasl}' mechanism='PLAIN'>${btoa("\0zed\0nope")}</auth>`);
    const f = await c.waitFor((e) => e.name === "failure");
    assert.ok(f.child("not-authorized"));
    c.send(`<auth xmlns='${NS.sasl}' mechanism='PLAIN'>!!!</auth>`);
    assert.ok((await c.waitFor((e) => e.name === "failure")).child("incorrect-encoding"));
    c.send(`<auth xmlns='${NS.sasl}' mechanism='DIGEST-MD5'/>`);
    assert.ok((await c.waitFor((e) => e.name === "failure")).child("invalid-mechanism"));
    c.close();
  },
);

withServer(
  "bind conflict: a second session with the same full JID replaces the first",
  {},
  async (t) => {
    await t.addUser("dave");
    const a = await RawClient.login(t.port, "dave", "secret", { resource: "phone" });
    const b = await RawClient.login(t.port, "dave", "secret", { resource: "phone" });
    assert.equal(b.jid, "dave@localhost/phone");
    const err = await a.streamError();
    assert.ok(err.child("conflict"));
    await a.waitClosed();
    // The new session works.
    const r = await b.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
    assert.equal(r.attrs.type, "result");
    // No resource asked: the server makes one.
    const c = await RawClient.login(t.port, "dave", "secret");
    assert.match(c.jid, /^dave@localhost\/.+/);
    b.close();
    c.close();
  },
);

withServer("stanzas before authentication or binding are refused", {}, async (t) => {
  const c = await RawClient.connect(t.port);
  await c.open();
  c.send("<message to='x@localhost'><body>hi</body></message>");
  assert.ok((await c.streamError()).child("not-authorized"));
});

withServer(
  "PLAIN on an unencrypted stream is refused with encryption-required",
  {
    listeners: [{ type: "c2s", bind: "127.0.0.1", port: 0, starttls: "optional" }, {
      type: "c2s_tls",
      bind: "127.0.0.1",
      port: 0,
    }],
  },
  async (t) => {
    await t.addUser("eve");
    const c = await RawClient.connect(t.port);
    const f = await c.open();
    const mechs = f.child("mechanisms", NS.sasl)!.elements("mechanism").map((m) => m.text());
    assert.deepEqual(mechs, ["SCRAM-SHA-256", "SCRAM-SHA-1"]);
    c.send(`<auth xmlns='${NS.sasl}' mechanism='PLAIN'>${btoa("\0eve\0secret")}</auth>`);
    const failure = await c.waitFor((e) => e.name === "failure");
    assert.ok(failure.child("encryption-required"));
    assert.ok(await c.scram("eve", "secret"), "SCRAM stays available without TLS");
    c.close();
  },
);
