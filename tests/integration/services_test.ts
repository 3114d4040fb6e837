// Server services: disco, ping (both directions), version, time, vCard, private storage,
// blocking, carbons, in-band registration.
import assert from "node:assert/strict";
import { RawClient } from "../helpers/raw_client.ts";
import { serverTest, startServer, withServer } from "../helpers/server.ts";
import { createRoom, isPresence, join, MUC, mucServer } from "../helpers/muc.ts";
import { NS } from "../../src/xml/ns.ts";

withServer(
  "disco#info and #items on the server and an account; version; time; ping",
  {},
  async (t) => {
    await t.addUser("dina");
    const c = await RawClient.login(t.port, "dina");
    const info = await c.iq("get", `<query xmlns='${NS.discoInfo}'/>`, "localhost");
    const q = info.child("query", NS.discoInfo)!;
    assert.deepEqual(q.child("identity")!.attrs, {
      category: "server",
      type: "im",
      name: "Parley",
    });
    const features = q.elements("feature").map((f) => f.attrs.var);
    for (
      const f of [
        NS.discoInfo,
        NS.discoItems,
        NS.ping,
        NS.version,
        NS.time,
        NS.vcard,
        NS.blocking,
        NS.carbons,
        NS.offline,
      ]
    ) {
      assert.ok(features.includes(f), `missing feature ${f}`);
    }
    assert.ok(!features.includes(NS.register), "registration is off by default");
    const items = await c.iq("get", `<query xmlns='${NS.discoItems}'/>`, "localhost");
    assert.ok(items.child("query", NS.discoItems));
    const acct = await c.iq("get", `<query xmlns='${NS.discoInfo}'/>`, "dina@localhost");
    assert.equal(acct.child("query")!.child("identity")!.attrs.category, "account");
    const ver = await c.iq("get", `<query xmlns='${NS.version}'/>`, "localhost");
    assert.equal(ver.child("query")!.childText("name"), "Parley");
    const time = await c.iq("get", `<time xmlns='${NS.time}'/>`, "localhost");
    assert.ok(!Number.isNaN(Date.parse(time.child("time")!.childText("utc")!)));
    const ping = await c.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
    assert.equal(ping.attrs.type, "result");
    assert.equal(ping.attrs.from, "localhost");
    c.close();
  },
);

withServer("the server pings idle clients and drops the ones that do not answer", {
  timeouts: { ping_interval: 1, ping_timeout: 1 },
}, async (t) => {
  await t.addUser("ed");
  const alive = await RawClient.login(t.port, "ed", "secret", { resource: "alive" });
  const dead = await RawClient.login(t.port, "ed", "secret", { resource: "dead" });
  const ping = await alive.waitFor((e) => e.name === "iq" && !!e.child("ping", NS.ping), 5000);
  assert.equal(ping.attrs.type, "get");
  alive.send(`<iq type='result' id='${ping.attrs.id}' to='localhost'/>`);
  await dead.waitFor((e) => e.name === "iq" && !!e.child("ping", NS.ping), 5000);
  const err = await dead.streamError(5000);
  assert.ok(err.child("connection-timeout"));
  assert.equal(alive.closed, false);
  alive.close();
});

withServer("vCard set and get, by the owner and by others; private XML storage", {}, async (t) => {
  await t.addUser("fay");
  await t.addUser("gus");
  const f = await RawClient.login(t.port, "fay");
  const g = await RawClient.login(t.port, "gus");
  const set = await f.iq("set", `<vCard xmlns='${NS.vcard}'><FN>Fay &amp; Co</FN></vCard>`);
  assert.equal(set.attrs.type, "result");
  const mine = await f.iq("get", `<vCard xmlns='${NS.vcard}'/>`);
  assert.equal(mine.child("vCard")!.childText("FN"), "Fay & Co");
  const theirs = await g.iq("get", `<vCard xmlns='${NS.vcard}'/>`, "fay@localhost");
  assert.equal(theirs.child("vCard")!.childText("FN"), "Fay & Co");
  const forbidden = await g.iq("set", `<vCard xmlns='${NS.vcard}'/>`, "fay@localhost");
  assert.ok(forbidden.child("error")!.child("forbidden"));
  const store = await f.iq(
    "set",
    `<query xmlns='${NS.private}'><storage xmlns='storage:bookmarks'><conference jid='r@muc'/></storage></query>`,
  );
  assert.equal(store.attrs.type, "result");
  const back = await f.iq(
    "get",
    `<query xmlns='${NS.private}'><storage xmlns='storage:bookmarks'/></query>`,
  );
  assert.equal(back.child("query")!.child("storage")!.child("conference")!.attrs.jid, "r@muc");
  const other = await g.iq(
    "get",
    `<query xmlns='${NS.private}'><storage xmlns='storage:bookmarks'/></query>`,
    "fay@localhost",
  );
  assert.ok(other.child("error")!.child("forbidden"));
  const reserved = await f.iq(
    "set",
    `<query xmlns='${NS.private}'><x xmlns='jabber:client'/></query>`,
  );
  assert.ok(reserved.child("error")!.child("not-acceptable"));
  f.close();
  g.close();
});

withServer(
  "blocking command: list, push, inbound dropped, outbound refused, unblock",
  {},
  async (t) => {
    await t.addUser("hal");
    await t.addUser("ivy");
    const h = await RawClient.login(t.port, "hal", "secret", { resource: "a" });
    const h2 = await RawClient.login(t.port, "hal", "secret", { resource: "b" });
    const i = await RawClient.login(t.port, "ivy");
    for (const c of [h, i]) c.send("<presence/>");
    const empty = await h2.iq("get", `<blocklist xmlns='${NS.blocking}'/>`);
    assert.equal(empty.child("blocklist")!.elements().length, 0);
    const block = await h.iq(
      "set",
      `<block xmlns='${NS.blocking}'><item jid='ivy@localhost'/></block>`,
    );
    assert.equal(block.attrs.type, "result");
    const push = await h2.waitFor((e) => e.name === "iq" && !!e.child("block", NS.blocking));
    assert.equal(push.child("block")!.child("item")!.attrs.jid, "ivy@localhost");
    const list = await h.iq("get", `<blocklist xmlns='${NS.blocking}'/>`);
    assert.equal(list.child("blocklist")!.child("item")!.attrs.jid, "ivy@localhost");
    // Ivy's messages do not reach Hal; Hal's to Ivy are refused with <blocked/>.
    i.send("<message to='hal@localhost/a' type='chat' id='b1'><body>hey</body></message>");
    const bounced = await i.waitFor((e) => e.attrs.id === "b1");
    assert.equal(bounced.attrs.type, "error");
    await assert.rejects(h.waitFor((e) => e.attrs.id === "b1", 200));
    h.send("<message to='ivy@localhost' type='chat' id='b2'><body>no</body></message>");
    const refused = await h.waitFor((e) => e.attrs.id === "b2");
    assert.ok(refused.child("error")!.child("not-acceptable"));
    assert.ok(refused.child("error")!.child("blocked", NS.blockingErrors));
    // Unblock all: messages flow again.
    await h.iq("set", `<unblock xmlns='${NS.blocking}'/>`);
    i.send("<message to='hal@localhost/a' type='chat' id='b3'><body>again</body></message>");
    await h.waitFor((e) => e.attrs.id === "b3");
    for (const c of [h, h2, i]) c.close();
  },
);

withServer(
  "message carbons: sent and received copies to resources that enabled them",
  {},
  async (t) => {
    await t.addUser("jo");
    await t.addUser("kai");
    const phone = await RawClient.login(t.port, "jo", "secret", { resource: "phone" });
    const desk = await RawClient.login(t.port, "jo", "secret", { resource: "desk" });
    const old = await RawClient.login(t.port, "jo", "secret", { resource: "old" });
    const k = await RawClient.login(t.port, "kai", "secret", { resource: "k" });
    for (const c of [phone, desk, old, k]) c.send("<presence/>");
    const en = await desk.iq("set", `<enable xmlns='${NS.carbons}'/>`);
    assert.equal(en.attrs.type, "result");
    await phone.iq("set", `<enable xmlns='${NS.carbons}'/>`);
    // Received: Kai writes to Jo's phone; the desk gets a copy, "old" (no carbons) does not.
    k.send("<message to='jo@localhost/phone' type='chat' id='c1'><body>hi phone</body></message>");
    await phone.waitFor((e) => e.attrs.id === "c1");
    const rc = await desk.waitFor((e) => e.name === "message" && !!e.child("received", NS.carbons));
    assert.equal(rc.attrs.from, "jo@localhost");
    const inner = rc.child("received")!.child("forwarded", NS.forward)!.child(
      "message",
      NS.client,
    )!;
    assert.equal(inner.attrs.id, "c1");
    assert.equal(inner.childText("body"), "hi phone");
    await assert.rejects(old.waitFor((e) => e.name === "message", 200));
    // Sent: the phone writes to Kai; the desk gets a copy.
    phone.send("<message to='kai@localhost' type='chat' id='c2'><body>hi kai</body></message>");
    await k.waitFor((e) => e.attrs.id === "c2");
    const sc = await desk.waitFor((e) => e.name === "message" && !!e.child("sent", NS.carbons));
    assert.equal(sc.child("sent")!.child("forwarded")!.child("message")!.attrs.id, "c2");
    // <private/> opts out.
    phone.send(
      `<message to='kai@localhost' type='chat' id='c3'><body>p</body><private xmlns='${NS.carbons}'/></message>`,
    );
    await k.waitFor((e) => e.attrs.id === "c3");
    await assert.rejects(desk.waitFor((e) => e.name === "message", 200));
    for (const c of [phone, desk, old, k]) c.close();
  },
);

serverTest(
  "in-band registration: only when enabled; create, conflict, change password, remove",
  async () => {
    const off = await startServer();
    try {
      const c = await RawClient.connect(off.port);
      const f = await c.open();
      assert.equal(f.child("register"), undefined);
      c.send(
        `<iq type='set' id='x'><query xmlns='${NS.register}'><username>u</username><password>p</password></query></iq>`,
      );
      assert.ok((await c.streamError()).child("not-authorized"));
    } finally {
      await off.stop();
    }
    const t = await startServer({ hosts: [{ domain: "localhost", registration: true }] });
    try {
      const c = await RawClient.connect(t.port);
      const f = await c.open();
      assert.ok(f.child("register", NS.registerFeature));
      const form = await c.iq("get", `<query xmlns='${NS.register}'/>`);
      assert.ok(form.child("query")!.child("username"));
      const ok = await c.iq(
        "set",
        `<query xmlns='${NS.register}'><username>Neo</username><password>one</password></query>`,
      );
      assert.equal(ok.attrs.type, "result");
      const dup = await c.iq(
        "set",
        `<query xmlns='${NS.register}'><username>neo</username><password>x</password></query>`,
      );
      assert.ok(dup.child("error")!.child("conflict"));
      const bad = await c.iq(
        "set",
        `<query xmlns='${NS.register}'><username>a b</username><password>x</password></query>`,
      );
      assert.ok(bad.child("error")!.child("not-acceptable"));
      assert.ok(await c.scram("neo", "one"));
      await c.open();
      await c.bind();
      const ch = await c.iq(
        "set",
        `<query xmlns='${NS.register}'><username>neo</username><password>two</password></query>`,
      );
      assert.equal(ch.attrs.type, "result");
      const n = await RawClient.login(t.port, "neo", "two");
      const rm = await n.iq("set", `<query xmlns='${NS.register}'><remove/></query>`);
      assert.equal(rm.attrs.type, "result");
      await n.waitClosed();
      await c.waitClosed();
      await assert.rejects(RawClient.login(t.port, "neo", "two"));
    } finally {
      await t.stop();
    }
  },
);

withServer(
  "account removal (XEP-0077): contacts and rooms see the user go offline",
  mucServer(),
  async (t) => {
    await t.addUser("hal");
    await t.addUser("ida");
    const h = await RawClient.login(t.port, "hal", "secret", { resource: "h" });
    const i = await RawClient.login(t.port, "ida", "secret", { resource: "i" });
    for (const c of [h, i]) await c.iq("get", `<query xmlns='${NS.roster}'/>`);
    h.send("<presence/>");
    i.send("<presence/>");
    // Ida subscribes to Hal's presence and Hal approves.
    i.send("<presence to='hal@localhost' type='subscribe'/>");
    await h.waitFor((e) => e.name === "presence" && e.attrs.type === "subscribe");
    h.send("<presence to='ida@localhost' type='subscribed'/>");
    await i.waitFor((e) => e.name === "presence" && e.attrs.from === "hal@localhost/h");
    await createRoom(i, "hall", "ida");
    await join(h, "hall", "hal");
    const rm = await h.iq("set", `<query xmlns='${NS.register}'><remove/></query>`);
    assert.equal(rm.attrs.type, "result");
    await i.waitFor((e) =>
      e.name === "presence" && e.attrs.type === "unavailable" && e.attrs.from === "hal@localhost/h"
    );
    await i.waitFor(isPresence(`hall@${MUC}/hal`, "unavailable"));
    await h.waitClosed();
    i.close();
  },
);

withServer(
  "private XML storage: at most limits.max_private_keys namespaces per account",
  { limits: { max_private_keys: 2 } },
  async (t) => {
    await t.addUser("jon");
    const j = await RawClient.login(t.port, "jon", "secret");
    const put = (ns: string, v: string) =>
      j.iq("set", `<query xmlns='${NS.private}'><data xmlns='${ns}'>${v}</data></query>`);
    assert.equal((await put("urn:a", "1")).attrs.type, "result");
    assert.equal((await put("urn:b", "1")).attrs.type, "result");
    const over = await put("urn:c", "1");
    assert.ok(over.child("error")!.child("not-acceptable", NS.stanzaErrors));
    // Replacing a stored namespace is not a new one.
    assert.equal((await put("urn:a", "2")).attrs.type, "result");
    const back = await j.iq("get", `<query xmlns='${NS.private}'><data xmlns='urn:a'/></query>`);
    assert.equal(back.child("query")!.childText("data"), "2");
    const none = await j.iq("get", `<query xmlns='${NS.private}'><data xmlns='urn:c'/></query>`);
    assert.equal(none.child("query")!.childText("data"), "");
    j.close();
  },
);
