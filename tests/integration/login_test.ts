import assert from "node:assert/strict";
import { RawClient } from "../helpers/raw_client.ts";
import { serverTest, startServer, withServer } from "../helpers/server.ts";
import { MAX_PAYLOAD_CHARS } from "../../src/c2s/sasl_negotiation.ts";
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

const plainAuth = (user: string, password: string) =>
  `<auth xmlns='${NS.sasl}' mechanism='PLAIN'>${btoa(`\0${user}\0${password}`)}</auth>`;

withServer(
  "pipelined <auth/> elements are each answered, or the stream is closed",
  {},
  async (t) => {
    await t.addUser("frank", "right");
    const c = await RawClient.connect(t.port);
    await c.open();
    c.send(plainAuth("frank", "wrong").repeat(3));
    for (let i = 0; i < 3; i++) {
      assert.ok((await c.waitFor((e) => e.name === "failure")).child("not-authorized"));
    }
    assert.ok(await c.plain("frank", "right"), "the stream is still usable");
    c.close();
    // Fifty at once: more than a client may have waiting; the stream is closed, not left hanging.
    const d = await RawClient.connect(t.port);
    await d.open();
    d.send(plainAuth("frank", "wrong").repeat(50));
    assert.ok((await d.streamError()).child("policy-violation"));
    await d.waitClosed();
  },
);

withServer("a store failure during login is a temporary-auth-failure; the server serves on", {
  timeouts: { auth_failure_delay_ms: 0 },
}, async (t) => {
  await t.addUser("gina");
  await t.addUser("hugo");
  const other = await RawClient.login(t.port, "hugo");
  const store = t.server.store;
  const getCredentials = store.getCredentials;
  store.getCredentials = () => Promise.reject(new Error("database is locked"));
  try {
    const c = await RawClient.connect(t.port);
    await c.open();
    for (const mech of ["PLAIN", "SCRAM-SHA-256"]) {
      const first = mech === "PLAIN" ? btoa("\0gina\0secret") : btoa("n,,n=gina,r=abc");
      c.send(`<auth xmlns='${NS.sasl}' mechanism='${mech}'>${first}</auth>`);
      const f = await c.waitFor((e) => e.name === "failure");
      assert.ok(f.child("temporary-auth-failure"), String(f));
    }
    const pong = await other.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
    assert.equal(pong.attrs.type, "result");
    store.getCredentials = getCredentials;
    assert.ok(await c.plain("gina", "secret"), "the same stream logs in once the store is back");
    c.close();
  } finally {
    store.getCredentials = getCredentials;
    other.close();
  }
});

/** Opens a stream and tries PLAIN once; the <success/> or <failure/> element. */
async function plainOnce(port: number, user: string, password: string) {
  const c = await RawClient.connect(port);
  await c.open();
  c.send(plainAuth(user, password));
  const r = await c.waitFor((e) => e.attrs.xmlns === NS.sasl);
  c.close();
  return r;
}

withServer("failed logins from one address are limited: then temporary-auth-failure", {
  auth: { failures_per_address: 3, failures_per_account: 1000 },
  timeouts: { auth_failure_delay_ms: 0 },
}, async (t) => {
  await t.addUser("ivy");
  // Successful logins, even many at once, are not failures.
  const logins = await Promise.all(
    Array.from({ length: 10 }, () => plainOnce(t.port, "ivy", "secret")),
  );
  assert.deepEqual(new Set(logins.map((r) => r.name)), new Set(["success"]));
  for (let i = 0; i < 3; i++) {
    assert.ok((await plainOnce(t.port, `guess${i}`, "x")).child("not-authorized"));
  }
  // Over the limit even the right password is refused, before any work, with a reason.
  const r = await plainOnce(t.port, "ivy", "secret");
  assert.ok(r.child("temporary-auth-failure"), String(r));
  assert.match(r.childText("text") ?? "", /address/);
});

withServer("an exchange abandoned after its challenge, or malformed, is a failure", {
  auth: { failures_per_address: 4, failures_per_account: 1000 },
  timeouts: { auth_failure_delay_ms: 0 },
}, async (t) => {
  await t.addUser("olga");
  const c = await RawClient.connect(t.port);
  await c.open();
  const first = `<auth xmlns='${NS.sasl}' mechanism='SCRAM-SHA-256'>${
    btoa("n,,n=olga,r=abc")
  }</auth>`;
  for (let i = 0; i < 2; i++) {
    c.send(first);
    await c.waitFor((e) => e.name === "challenge");
    c.send(`<abort xmlns='${NS.sasl}'/>`);
    assert.ok((await c.waitFor((e) => e.name === "failure")).child("aborted"));
  }
  // A payload over the bound is refused before it is decoded, and counts too.
  c.send(`<auth xmlns='${NS.sasl}' mechanism='PLAIN'>${"A".repeat(MAX_PAYLOAD_CHARS + 4)}</auth>`);
  const big = await c.waitFor((e) => e.name === "failure");
  assert.ok(big.child("malformed-request"), String(big));
  c.send(`<response xmlns='${NS.sasl}'>=</response>`); // no exchange to respond to
  assert.ok((await c.waitFor((e) => e.name === "failure")).child("malformed-request"));
  c.close();
  // Four failures from this address: even the right password waits now.
  const r = await plainOnce(t.port, "olga", "secret");
  assert.ok(r.child("temporary-auth-failure"), String(r));
});

withServer("failed logins on one account are limited whatever the address", {
  auth: { failures_per_address: 0, failures_per_account: 2 },
  timeouts: { auth_failure_delay_ms: 0 },
}, async (t) => {
  await t.addUser("jack");
  await t.addUser("kate");
  for (let i = 0; i < 2; i++) {
    assert.ok((await plainOnce(t.port, "jack", "wrong")).child("not-authorized"));
  }
  const r = await plainOnce(t.port, "jack", "secret");
  assert.ok(r.child("temporary-auth-failure"));
  assert.match(r.childText("text") ?? "", /account/);
  const c = await RawClient.connect(t.port);
  await c.open();
  assert.equal(await c.scram("jack", "secret"), false, "SCRAM is refused too");
  c.close();
  assert.equal((await plainOnce(t.port, "kate", "secret")).name, "success");
});

/** The salt and iteration count SCRAM-SHA-256 offers for `user`. */
async function scramOffer(port: number, user: string): Promise<{ s: string; i: string }> {
  const c = await RawClient.connect(port);
  await c.open();
  c.send(`<auth xmlns='${NS.sasl}' mechanism='SCRAM-SHA-256'>${btoa(`n,,n=${user},r=abc`)}</auth>`);
  const ch = await c.waitFor((e) => e.name === "challenge");
  c.close();
  const a = Object.fromEntries(atob(ch.text()).split(",").map((p) => [p[0], p.slice(2)]));
  return { s: a.s, i: a.i };
}

serverTest(
  "an unknown user's SCRAM salt and iterations look real and survive a restart",
  async () => {
    let t = await startServer();
    try {
      await t.addUser("liam");
      const real = await scramOffer(t.port, "liam");
      const unknown = await scramOffer(t.port, "nobody");
      assert.equal(unknown.i, real.i);
      assert.equal(atob(unknown.s).length, atob(real.s).length);
      assert.deepEqual(await scramOffer(t.port, "nobody"), unknown);
      t = await t.restart();
      assert.deepEqual(await scramOffer(t.port, "nobody"), unknown);
    } finally {
      await t.stop();
    }
  },
);
