// RFC 6121 behaviour between real sessions: roster, subscriptions, presence, messages, offline.
import assert from "node:assert/strict";
import { RawClient } from "../helpers/raw_client.ts";
import { serverTest, startServer, withServer } from "../helpers/server.ts";
import { NS } from "../../src/xml/ns.ts";
import type { Element } from "../../src/xml/element.ts";
import { createRoom, isMessage, isPresence, join, MUC, mucServer } from "../helpers/muc.ts";

const isPush = (e: Element) =>
  e.name === "iq" && e.attrs.type === "set" && !!e.child("query", NS.roster);
const presence = (type?: string, from?: string) => (e: Element) =>
  e.name === "presence" && e.attrs.type === type && (from === undefined || e.attrs.from === from);

withServer(
  "roster set is pushed to every interested resource; get honours versions; remove",
  {},
  async (t) => {
    await t.addUser("ann");
    const a1 = await RawClient.login(t.port, "ann", "secret", { resource: "one" });
    const a2 = await RawClient.login(t.port, "ann", "secret", { resource: "two" });
    const a3 = await RawClient.login(t.port, "ann", "secret", { resource: "uninterested" });
    const r1 = await a1.iq("get", `<query xmlns='${NS.roster}'/>`);
    const v0 = r1.child("query")!.attrs.ver!;
    await a2.iq("get", `<query xmlns='${NS.roster}'/>`);
    const set = await a1.iq(
      "set",
      `<query xmlns='${NS.roster}'><item jid='zed@example.net' name='Zed'><group>Friends</group></item></query>`,
    );
    assert.equal(set.attrs.type, "result");
    for (const c of [a1, a2]) {
      const push = await c.waitFor(isPush);
      const item = push.child("query")!.child("item")!;
      assert.equal(item.attrs.jid, "zed@example.net");
      assert.equal(item.attrs.subscription, "none");
      assert.equal(item.childText("group"), "Friends");
      assert.notEqual(push.child("query")!.attrs.ver, v0);
    }
    await assert.rejects(a3.waitFor(isPush, 300));
    // Versioning: same version gives an empty result; an old one the full roster.
    const cur = await a1.iq("get", `<query xmlns='${NS.roster}'/>`);
    const ver = cur.child("query")!.attrs.ver!;
    const same = await a1.iq("get", `<query xmlns='${NS.roster}' ver='${ver}'/>`);
    assert.equal(same.child("query"), undefined);
    const old = await a1.iq("get", `<query xmlns='${NS.roster}' ver='${v0}'/>`);
    assert.equal(old.child("query")!.elements("item").length, 1);
    // Errors: two items, duplicate groups, own JID.
    const two = await a1.iq(
      "set",
      `<query xmlns='${NS.roster}'><item jid='a@b'/><item jid='c@d'/></query>`,
    );
    assert.ok(two.child("error")!.child("bad-request"));
    const dup = await a1.iq(
      "set",
      `<query xmlns='${NS.roster}'><item jid='a@b'><group>x</group><group>x</group></item></query>`,
    );
    assert.ok(dup.child("error")!.child("bad-request"));
    const self = await a1.iq(
      "set",
      `<query xmlns='${NS.roster}'><item jid='ann@localhost'/></query>`,
    );
    assert.ok(self.child("error")!.child("not-allowed"));
    const rm = await a1.iq(
      "set",
      `<query xmlns='${NS.roster}'><item jid='zed@example.net' subscription='remove'/></query>`,
    );
    assert.equal(rm.attrs.type, "result");
    const push = await a2.waitFor((e) =>
      isPush(e) && e.child("query")!.child("item")!.attrs.subscription === "remove"
    );
    assert.equal(push.child("query")!.child("item")!.attrs.jid, "zed@example.net");
    const missing = await a1.iq(
      "set",
      `<query xmlns='${NS.roster}'><item jid='zed@example.net' subscription='remove'/></query>`,
    );
    assert.ok(missing.child("error")!.child("item-not-found"));
    for (const c of [a1, a2, a3]) c.close();
  },
);

/** a subscribes to b's presence; `before`/`after` are a's subscription states, b's mirror them. */
async function subscribe(
  a: RawClient,
  b: RawClient,
  aJid: string,
  bJid: string,
  [before, after, bAfter]: string[],
): Promise<void> {
  a.send(`<presence to='${bJid}' type='subscribe'/>`);
  const ask = await a.waitFor((e) =>
    isPush(e) && e.child("query")!.child("item")!.attrs.ask === "subscribe"
  );
  assert.equal(ask.child("query")!.child("item")!.attrs.subscription, before);
  const req = await b.waitFor(presence("subscribe", aJid));
  assert.equal(req.attrs.to, bJid);
  b.send(`<presence to='${aJid}' type='subscribed'/>`);
  const bPush = await b.waitFor((e) =>
    isPush(e) && e.child("query")!.child("item")!.attrs.jid === aJid
  );
  assert.equal(bPush.child("query")!.child("item")!.attrs.subscription, bAfter);
  const aPush = await a.waitFor((e) =>
    isPush(e) && e.child("query")!.child("item")!.attrs.subscription === after
  );
  assert.equal(aPush.child("query")!.child("item")!.attrs.ask, undefined);
  await a.waitFor(presence("subscribed", bJid));
}

withServer(
  "full subscription handshake both ways, presence broadcast and unavailable on disconnect",
  {},
  async (t) => {
    await t.addUser("romeo");
    await t.addUser("juliet");
    const r = await RawClient.login(t.port, "romeo", "secret", { resource: "r" });
    const j = await RawClient.login(t.port, "juliet", "secret", { resource: "j" });
    for (const c of [r, j]) await c.iq("get", `<query xmlns='${NS.roster}'/>`);
    r.send("<presence/>");
    j.send("<presence/>");
    await subscribe(r, j, "romeo@localhost", "juliet@localhost", ["none", "to", "from"]);
    // Juliet approved: Romeo now receives her presence.
    await r.waitFor(presence(undefined, "juliet@localhost/j"));
    await subscribe(j, r, "juliet@localhost", "romeo@localhost", ["from", "both", "both"]);
    await j.waitFor(presence(undefined, "romeo@localhost/r"));
    const roster = await r.iq("get", `<query xmlns='${NS.roster}'/>`);
    assert.equal(roster.child("query")!.child("item")!.attrs.subscription, "both");
    // A presence update is broadcast to the subscribed contact.
    r.send("<presence><show>away</show><status>out</status></presence>");
    const upd = await j.waitFor((e) => e.name === "presence" && e.childText("show") === "away");
    assert.equal(upd.attrs.from, "romeo@localhost/r");
    // A dropped TCP connection makes the contact see unavailable.
    r.drop();
    const gone = await j.waitFor(presence("unavailable", "romeo@localhost/r"));
    assert.equal(gone.attrs.to, "juliet@localhost");
    // Romeo logs in again: his probe gets Juliet's current presence.
    const r2 = await RawClient.login(t.port, "romeo", "secret", { resource: "r2" });
    r2.send("<presence/>");
    await r2.waitFor(presence(undefined, "juliet@localhost/j"));
    await j.waitFor(presence(undefined, "romeo@localhost/r2"));
    // Unsubscribing removes the subscription on both sides.
    r2.send("<presence to='juliet@localhost' type='unsubscribe'/>");
    await j.waitFor(presence("unsubscribe", "romeo@localhost"));
    const after = await j.iq("get", `<query xmlns='${NS.roster}'/>`);
    assert.equal(after.child("query")!.child("item")!.attrs.subscription, "to");
    // Logging out cleanly sends unavailable too.
    j.send("<presence type='unavailable'/>");
    await r2.waitFor(presence("unavailable", "juliet@localhost/j"));
    r2.close();
    j.close();
  },
);

serverTest("pending subscription requests are stored and redelivered at login", async () => {
  const t = await startServer();
  try {
    await t.addUser("kim");
    await t.addUser("lee");
    const k = await RawClient.login(t.port, "kim", "secret");
    k.send("<presence/>");
    await k.iq("get", `<query xmlns='${NS.roster}'/>`);
    k.send(
      "<presence to='lee@localhost' type='subscribe'><status>hi, it is Kim</status></presence>",
    );
    await k.waitFor(isPush);
    let l = await RawClient.login(t.port, "lee", "secret");
    l.send("<presence/>");
    const req = await l.waitFor(presence("subscribe", "kim@localhost"));
    assert.equal(req.childText("status"), "hi, it is Kim");
    l.close();
    // Not answered: shown again at the next login, even after a server restart.
    const t2 = await t.restart();
    try {
      l = await RawClient.login(t2.port, "lee", "secret");
      l.send("<presence/>");
      await l.waitFor(presence("subscribe", "kim@localhost"));
      l.close();
    } finally {
      await t2.stop();
    }
  } catch (e) {
    await t.stop();
    throw e;
  }
});

withServer(
  "messages: full JID, bare JID by priority, negative priority excluded, errors",
  {},
  async (t) => {
    await t.addUser("sam");
    await t.addUser("tia");
    const s = await RawClient.login(t.port, "sam", "secret", { resource: "s" });
    const hi = await RawClient.login(t.port, "tia", "secret", { resource: "high" });
    const lo = await RawClient.login(t.port, "tia", "secret", { resource: "low" });
    const neg = await RawClient.login(t.port, "tia", "secret", { resource: "neg" });
    hi.send("<presence><priority>5</priority></presence>");
    lo.send("<presence><priority>1</priority></presence>");
    neg.send("<presence><priority>-1</priority></presence>");
    await hi.waitFor(presence(undefined, "tia@localhost/neg"));
    s.send("<message to='tia@localhost' type='chat' id='m1'><body>to bare</body></message>");
    const got = await hi.waitFor((e) => e.name === "message" && e.attrs.id === "m1");
    assert.equal(got.attrs.from, "sam@localhost/s");
    assert.equal(got.childText("body"), "to bare");
    await assert.rejects(lo.waitFor((e) => e.attrs.id === "m1", 200));
    await assert.rejects(neg.waitFor((e) => e.attrs.id === "m1", 50));
    s.send("<message to='tia@localhost/neg' id='m2'><body>to full</body></message>");
    await neg.waitFor((e) => e.attrs.id === "m2");
    // A message to an account that does not exist bounces.
    s.send("<message to='nobody@localhost' type='chat' id='m3'><body>?</body></message>");
    const err = await s.waitFor((e) => e.attrs.id === "m3");
    assert.equal(err.attrs.type, "error");
    assert.ok(err.child("error")!.child("service-unavailable", NS.stanzaErrors));
    // iq to an offline full JID: service-unavailable; to a remote domain: remote-server-not-found.
    const iq = await s.iq("get", `<ping xmlns='${NS.ping}'/>`, "tia@localhost/gone");
    assert.ok(iq.child("error")!.child("service-unavailable"));
    const remote = await s.iq("get", `<ping xmlns='${NS.ping}'/>`, "example.com");
    assert.ok(remote.child("error")!.child("remote-server-not-found"));
    const bad = await s.iq("get", `<ping xmlns='${NS.ping}'/>`, "a@b@c");
    assert.ok(bad.child("error")!.child("jid-malformed"));
    // Unknown namespaces: service-unavailable; an error is never answered with an error.
    const unk = await s.iq("get", "<query xmlns='urn:example:nothing'/>", "localhost");
    assert.ok(unk.child("error")!.child("service-unavailable"));
    s.send("<message to='nobody@localhost' type='error' id='m4'/>");
    await assert.rejects(s.waitFor((e) => e.attrs.id === "m4", 300));
    for (const c of [s, hi, lo, neg]) c.close();
  },
);

serverTest(
  "offline messages are stored with a delay stamp and delivered after a restart",
  async () => {
    let t = await startServer();
    try {
      await t.addUser("uma");
      await t.addUser("vic");
      const u = await RawClient.login(t.port, "uma", "secret");
      u.send("<message to='vic@localhost' type='chat' id='o1'><body>first</body></message>");
      u.send("<message to='vic@localhost' id='o2'><body>second</body></message>");
      u.send(
        `<message to='vic@localhost' type='chat' id='o3'><active xmlns='${NS.chatStates}'/></message>`,
      );
      // The server has read all three once it answers a later iq; then wait for storage.
      await u.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
      await t.server.serial.idle();
      u.close();
      t = await t.restart();
      const v = await RawClient.login(t.port, "vic", "secret");
      v.send("<presence/>");
      const m1 = await v.waitFor((e) => e.attrs.id === "o1");
      assert.equal(m1.childText("body"), "first");
      assert.equal(m1.attrs.from, "uma@localhost/" + u.jid.split("/")[1]);
      const delay = m1.child("delay", NS.delay)!;
      assert.equal(delay.attrs.from, "localhost");
      assert.ok(!Number.isNaN(Date.parse(delay.attrs.stamp!)));
      await v.waitFor((e) => e.attrs.id === "o2");
      await assert.rejects(v.waitFor((e) => e.attrs.id === "o3", 200));
      v.close();
      // Delivered once: a second login gets nothing.
      const v2 = await RawClient.login(t.port, "vic", "secret");
      v2.send("<presence/>");
      await assert.rejects(v2.waitFor((e) => e.name === "message", 300));
      v2.close();
    } finally {
      await t.stop();
    }
  },
);

withServer(
  "directed presence reaches a non-contact, who is told when the sender goes away",
  {},
  async (t) => {
    await t.addUser("wes");
    await t.addUser("xia");
    const w = await RawClient.login(t.port, "wes", "secret", { resource: "w" });
    const x = await RawClient.login(t.port, "xia", "secret", { resource: "x" });
    w.send("<presence/>");
    x.send("<presence/>");
    w.send("<presence to='xia@localhost/x'><status>just for you</status></presence>");
    const got = await x.waitFor(presence(undefined, "wes@localhost/w"));
    assert.equal(got.childText("status"), "just for you");
    w.drop();
    await x.waitFor(presence("unavailable", "wes@localhost/w"));
    x.close();
  },
);

/** Sends a ping to the server and waits for the answer: everything sent before has been handled. */
async function sync(c: RawClient): Promise<void> {
  await c.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
}

withServer(
  "reconnecting with the same resource is no logout: contacts and rooms keep the session",
  mucServer(),
  async (t) => {
    await t.addUser("amy");
    await t.addUser("bob");
    const a = await RawClient.login(t.port, "amy", "secret", { resource: "desk" });
    const b = await RawClient.login(t.port, "bob", "secret", { resource: "phone" });
    for (const c of [a, b]) await c.iq("get", `<query xmlns='${NS.roster}'/>`);
    a.send("<presence/>");
    b.send("<presence/>");
    await subscribe(a, b, "amy@localhost", "bob@localhost", ["none", "to", "from"]);
    await a.waitFor(presence(undefined, "bob@localhost/phone"));
    await createRoom(a, "den", "amy");
    await join(b, "den", "bob");
    await a.waitFor(isPresence(`den@${MUC}/bob`));
    // Bob's phone reconnects with the same resource: the old stream gets conflict.
    const b2 = await RawClient.login(t.port, "bob", "secret", { resource: "phone" });
    assert.ok((await b.streamError()).child("conflict"));
    b2.send("<presence><status>back</status></presence>");
    const back = await a.waitFor((e) =>
      presence(undefined, "bob@localhost/phone")(e) && e.childText("status") === "back"
    );
    assert.equal(back.attrs.to, "amy@localhost");
    // Anything the replaced session sent on leaving would have arrived before that presence.
    const unavailable = (e: Element) =>
      e.name === "presence" && e.attrs.type === "unavailable" &&
      (e.attrs.from === "bob@localhost/phone" || e.attrs.from === `den@${MUC}/bob`);
    assert.deepEqual(a.received.filter(unavailable), []);
    // The room still has Bob: the new session speaks in it.
    b2.send(`<message to='den@${MUC}' type='groupchat' id='g1'><body>still here</body></message>`);
    const said = await a.waitFor(isMessage(`den@${MUC}/bob`));
    assert.equal(said.childText("body"), "still here");
    // The new session inherited what the old one owed: its end is seen by the contact and room.
    b2.drop();
    await a.waitFor(presence("unavailable", "bob@localhost/phone"));
    await a.waitFor(isPresence(`den@${MUC}/bob`, "unavailable"));
    a.close();
  },
);

withServer(
  "a session replaced before it sent presence leaves the contacts' view to the new one",
  {},
  async (t) => {
    await t.addUser("cal");
    await t.addUser("dee");
    const c = await RawClient.login(t.port, "cal", "secret", { resource: "r" });
    const d = await RawClient.login(t.port, "dee", "secret", { resource: "r" });
    for (const s of [c, d]) await s.iq("get", `<query xmlns='${NS.roster}'/>`);
    c.send("<presence/>");
    d.send("<presence/>");
    await subscribe(c, d, "cal@localhost", "dee@localhost", ["none", "to", "from"]);
    await c.waitFor(presence(undefined, "dee@localhost/r"));
    // Dee reconnects and leaves again without sending presence: Cal must still learn she left.
    const d2 = await RawClient.login(t.port, "dee", "secret", { resource: "r" });
    await d.waitClosed();
    d2.close();
    await c.waitFor(presence("unavailable", "dee@localhost/r"));
    c.close();
  },
);

withServer(
  "roster items are prepared bare JIDs: another case is the same contact, a resource is refused",
  {},
  async (t) => {
    await t.addUser("eve");
    const e = await RawClient.login(t.port, "eve", "secret");
    await e.iq("get", `<query xmlns='${NS.roster}'/>`);
    const set = await e.iq(
      "set",
      `<query xmlns='${NS.roster}'><item jid='Zed@Example.NET'/></query>`,
    );
    assert.equal(set.attrs.type, "result");
    assert.equal(
      (await e.waitFor(isPush)).child("query")!.child("item")!.attrs.jid,
      "zed@example.net",
    );
    const full = await e.iq(
      "set",
      `<query xmlns='${NS.roster}'><item jid='zed@example.net/phone' name='Phone'/></query>`,
    );
    assert.ok(full.child("error")!.child("bad-request"));
    // A subscription request to the same contact in yet another case updates that one item.
    e.send("<presence to='ZED@example.net' type='subscribe'/>");
    const ask = await e.waitFor(isPush);
    assert.equal(ask.child("query")!.child("item")!.attrs.jid, "zed@example.net");
    assert.equal(ask.child("query")!.child("item")!.attrs.ask, "subscribe");
    const roster = await e.iq("get", `<query xmlns='${NS.roster}'/>`);
    const items = roster.child("query")!.elements("item");
    assert.deepEqual(items.map((i) => i.attrs.jid), ["zed@example.net"]);
    e.close();
  },
);

withServer(
  "directed presence beyond the limit is not sent: the sender gets policy-violation",
  { limits: { max_directed_presences: 2 } },
  async (t) => {
    await t.addUser("fin");
    await t.addUser("gil");
    const f = await RawClient.login(t.port, "fin", "secret", { resource: "f" });
    const g = await RawClient.login(t.port, "gil", "secret", { resource: "g" });
    f.send("<presence to='one@localhost'/><presence to='two@localhost'/>");
    f.send("<presence to='gil@localhost/g'/>");
    const err = await f.waitFor(presence("error", "gil@localhost/g"));
    assert.ok(err.child("error")!.child("policy-violation", NS.stanzaErrors));
    assert.equal(err.child("error")!.attrs.type, "modify");
    // Presence to an entity already counted still goes out; unavailable frees a place.
    f.send("<presence to='one@localhost'><status>again</status></presence>");
    f.send("<presence to='one@localhost' type='unavailable'/><presence to='gil@localhost/g'/>");
    await g.waitFor(presence(undefined, "fin@localhost/f"));
    await sync(f);
    assert.deepEqual(f.received.filter(presence("error")), []);
    f.close();
    g.close();
  },
);
