// XEP-0198 Stream Management between raw clients and a real server: the feature, enabling,
// acknowledgements both ways, resumption after a dropped connection (and every way it is refused),
// the resumption timeout, the limit on unacknowledged stanzas, a clean close, and a new login
// replacing a detached session.
import assert from "node:assert/strict";
import { type TestServer, type Tree, withServer } from "../helpers/server.ts";
import {
  befriend,
  bodies,
  failedCondition,
  isSm,
  messageWithBody,
  presence,
  SM,
  SmClient,
} from "../helpers/sm_client.ts";
import { errorOf } from "../helpers/stanza_errors.ts";
import type { Element } from "../../src/xml/element.ts";
import { NS } from "../../src/xml/ns.ts";

/** The test configuration with stream management's settings (short timeouts). */
const sm = (over: Tree = {}): Tree => ({ stream_management: { resume_timeout: "2s", ...over } });

const ROSTER = `<query xmlns='${NS.roster}'/>`;
const bounced = (e: Element) => e.name === "message" && e.attrs.type === "error";
/** alice/phone and bob/desk, logged in, available and subscribed to each other. */
async function friends(t: TestServer): Promise<{ a1: SmClient; b: SmClient }> {
  await t.addUser("alice");
  await t.addUser("bob");
  const a1 = await SmClient.login(t.port, "alice", { resource: "phone" });
  const b = await SmClient.login(t.port, "bob", { resource: "desk" });
  await befriend(a1, b);
  return { a1, b };
}

const presenceFrom = (from: string) => (e: Element) =>
  e.name === "presence" && e.attrs.from === from;

withServer("sm is offered next to bind once authenticated, never before", sm(), async (t) => {
  await t.addUser("alice");
  for (const starttls of [false, true]) {
    const a = await SmClient.auth(t.port, "alice", { starttls });
    assert.equal(a.featuresBeforeAuth!.child("sm", SM), undefined, `${a.featuresBeforeAuth}`);
    assert.ok(a.features!.child("bind", NS.bind), `${a.features}`);
    assert.ok(a.features!.child("sm", SM), `no <sm/> in ${a.features}`);
    a.close();
  }
});

withServer(
  "enable before binding, or a second time, fails with unexpected-request; the stream goes on",
  sm(),
  async (t) => {
    await t.addUser("alice");
    const a = await SmClient.auth(t.port, "alice");
    assert.equal(failedCondition(await a.enable({ resume: "true" })), "unexpected-request");
    assert.equal(await a.bind("phone"), "alice@localhost/phone");
    const enabled = await a.enable({ resume: "true" });
    assert.equal(enabled.name, "enabled", `${enabled}`);
    assert.equal(failedCondition(await a.enable()), "unexpected-request");
    assert.equal(failedCondition(await a.enable({ resume: "true" })), "unexpected-request");
    // Still enabled as the first time, counting: the ping is the one stanza handled since.
    await a.sync();
    assert.equal(await a.requestAck(), 1);
    assert.deepEqual(a.streamErrors(), []);
    assert.ok(!a.closed);
    a.close();
  },
);

withServer("enabled carries max='300' with the default resume_timeout", {}, async (t) => {
  await t.addUser("alice");
  const a = await SmClient.login(t.port, "alice");
  const enabled = await a.enable({ resume: "true" });
  assert.equal(enabled.name, "enabled", `${enabled}`);
  assert.equal(enabled.attrs.max, "300");
  a.close();
});

withServer(
  "enabled: an id, resume, and max from resume_timeout, the client's max, or the cap",
  sm({ resume_timeout: "2s", max_resume_timeout: "90s" }),
  async (t) => {
    await t.addUser("alice");
    const ids: string[] = [];
    const cases: [asked: string | undefined, max: string][] = [
      [undefined, "2"],
      ["60", "60"],
      ["100000", "90"],
    ];
    for (const [asked, max] of cases) {
      const a = await SmClient.login(t.port, "alice", { resource: `r${ids.length}` });
      const enabled = await a.enable(asked ? { resume: "true", max: asked } : { resume: "true" });
      assert.equal(enabled.name, "enabled", `${enabled}`);
      assert.ok(["true", "1"].includes(enabled.attrs.resume ?? ""), `${enabled}`);
      assert.equal(enabled.attrs.max, max, `asked ${asked}: ${enabled}`);
      assert.ok(enabled.attrs.id, `${enabled}`);
      ids.push(enabled.attrs.id!);
      a.close();
    }
    assert.equal(new Set(ids).size, ids.length, `ids ${ids}`);
  },
);

withServer(
  "enable without resume: no resume in <enabled/>, and a dropped connection ends the session",
  sm({ resume_timeout: "30s" }),
  async (t) => {
    await t.addUser("alice");
    await t.addUser("bob");
    const a = await SmClient.login(t.port, "alice", { resource: "phone" });
    const b = await SmClient.login(t.port, "bob", { resource: "desk" });
    await befriend(a, b);
    const enabled = await a.enable();
    assert.equal(enabled.name, "enabled", `${enabled}`);
    assert.equal(enabled.attrs.resume, undefined, `${enabled}`);
    a.drop();
    // Long before resume_timeout: nothing waits for a resumption.
    await b.waitFor(presence("unavailable", a.jid), 5000, "alice's unavailable presence");
    if (enabled.attrs.id) {
      const a2 = await SmClient.auth(t.port, "alice");
      assert.equal(failedCondition(await a2.resume(enabled.attrs.id, 0)), "item-not-found");
      a2.close();
    }
    b.close();
  },
);

withServer("<r/> is answered with the count of stanzas handled since enable", sm(), async (t) => {
  await t.addUser("alice");
  await t.addUser("bob");
  const a = await SmClient.login(t.port, "alice", { resource: "phone" });
  const b = await SmClient.login(t.port, "bob", { resource: "desk" });
  // Before enable: not counted.
  await a.iq("get", ROSTER);
  await a.sync();
  const enabled = await a.enable();
  assert.equal(enabled.name, "enabled", `${enabled}`);
  assert.equal(await a.requestAck(), 0);
  // A message, a presence and an iq, each seen handled before asking.
  a.message(b.jid, "one");
  await b.waitFor(messageWithBody("one"));
  a.send(`<presence to='${b.jid}'/>`);
  await b.waitFor(presence(undefined, a.jid));
  await a.sync();
  // <r/> itself is no stanza: 3, not 4.
  assert.equal(await a.requestAck(), 3);
  a.message(b.jid, "two");
  await b.waitFor(messageWithBody("two"));
  assert.equal(await a.requestAck(), 4);
  assert.deepEqual(a.streamErrors(), []);
  a.close();
  b.close();
});

withServer(
  "the server asks for acknowledgement after sending stanzas, one request at a time",
  sm(),
  async (t) => {
    await t.addUser("alice");
    await t.addUser("bob");
    const a = await SmClient.login(t.port, "alice", { resource: "phone" });
    const b = await SmClient.login(t.port, "bob", { resource: "desk" });
    assert.equal((await a.enable()).name, "enabled");
    const requests = () => a.log.filter(isSm("r"));
    for (const m of ["m1", "m2", "m3"]) b.message(a.jid, m);
    await a.waitFor(messageWithBody("m3"));
    const r1 = await a.waitFor(isSm("r"), 5000, "the server's <r/>");
    assert.ok(a.log.indexOf(r1) > a.log.findIndex(messageWithBody("m1")), "<r/> after a stanza");
    // The ping's result is sent while the request is outstanding: no second <r/>.
    await a.sync();
    assert.equal(requests().length, 1, `requests: ${requests().join(" ")}`);
    assert.equal(a.inbound, 4); // m1–m3 and the ping's result; <enabled/> not counted
    a.send(`<a xmlns='${SM}' h='${a.inbound}'/>`);
    // Answered: the next stanza brings a new request.
    b.message(a.jid, "m4");
    const m4 = await a.waitFor(messageWithBody("m4"));
    const r2 = await a.waitFor(isSm("r"), 5000, "a second <r/>");
    assert.ok(a.log.indexOf(r2) > a.log.indexOf(m4), "the second <r/> follows m4");
    await a.sync();
    assert.equal(requests().length, 2, `requests: ${requests().join(" ")}`);
    // A correct answer is accepted.
    a.send(`<a xmlns='${SM}' h='${a.inbound}'/>`);
    await a.sync();
    assert.deepEqual(a.streamErrors(), []);
    assert.ok(!a.closed);
    a.close();
    b.close();
  },
);

withServer(
  "acknowledging more than was sent: undefined-condition with handled-count-too-high",
  sm(),
  async (t) => {
    await t.addUser("alice");
    const a = await SmClient.login(t.port, "alice");
    assert.equal((await a.enable({ resume: "true" })).name, "enabled");
    await a.sync(); // one stanza sent since enable: the ping's result
    a.send(`<a xmlns='${SM}' h='3'/>`);
    const err = await a.streamError();
    assert.ok(err.child("undefined-condition", NS.streamErrors), `${err}`);
    const high = err.child("handled-count-too-high", SM);
    assert.ok(high, `${err}`);
    assert.equal(high.attrs.h, "3");
    assert.equal(high.attrs["send-count"], "1");
    await a.waitClosed();
  },
);

withServer(
  "a dropped connection detaches the session; <resume/> resends what was not acknowledged, in order",
  sm({ resume_timeout: "5s" }),
  async (t) => {
    const { a1, b } = await friends(t);
    const id = await a1.enableResume();
    b.message(a1.jid, "m1");
    await a1.waitFor(messageWithBody("m1"));
    await a1.waitFor(isSm("r"), 5000, "the server's <r/>");
    a1.send(`<a xmlns='${SM}' h='1'/>`);
    b.message(a1.jid, "m2");
    b.message(a1.jid, "m3");
    await a1.waitFor(messageWithBody("m3"));
    // One stanza from Alice since enable; once Bob has it, her <a/> before it was handled too.
    a1.message(b.jid, "from the phone");
    await b.waitFor(messageWithBody("from the phone"));
    const mark = b.log.length;
    a1.drop();
    b.message(a1.jid, "m4");
    b.message(a1.jid, "m5");
    await b.sync();
    // The client knows of m1 and m2 only (m3 was lost with the connection): it resumes from 2,
    // on a new connection over STARTTLS, without binding.
    const a2 = await SmClient.auth(t.port, "alice", { starttls: true });
    const resumed = await a2.resume(id, 2);
    assert.equal(resumed.name, "resumed", `${resumed}`);
    assert.equal(resumed.attrs.previd, id);
    assert.equal(resumed.attrs.h, "1");
    a2.jid = a1.jid;
    a2.autoAck = true;
    await a2.waitFor(messageWithBody("m5"));
    b.message(a1.jid, "m6");
    await a2.waitFor(messageWithBody("m6"));
    // m3 again, then what waited, then what is new; m1 and m2 were acknowledged.
    assert.deepEqual(bodies(a2.log), ["m3", "m4", "m5", "m6"]);
    assert.ok(a2.log.indexOf(resumed) < a2.log.findIndex(messageWithBody("m3")));
    // Same full JID, still available: its messages come from it, the bare JID reaches it.
    a2.message(b.jid, "from the resumed stream");
    const got = await b.waitFor(messageWithBody("from the resumed stream"));
    assert.equal(got.attrs.from, "alice@localhost/phone");
    b.message("alice@localhost", "to the bare JID");
    await a2.waitFor(messageWithBody("to the bare JID"));
    // Bob never saw Alice go (nor come back), and nothing bounced.
    await b.sync();
    assert.deepEqual(b.log.slice(mark).filter(presenceFrom(a1.jid)).map(String), []);
    assert.deepEqual(b.log.filter(bounced).map(String), []);
    // The counts agree across the resumption: Alice's <a/>s (h from 2) raised no error.
    await a2.sync();
    assert.deepEqual(a2.streamErrors().map(String), []);
    assert.ok(!a2.closed);
    a2.close();
    b.close();
  },
);

withServer(
  "resume with an unknown id or another user's id fails with item-not-found; the stream can bind",
  sm({ resume_timeout: "5s" }),
  async (t) => {
    await t.addUser("alice");
    await t.addUser("bob");
    const b1 = await SmClient.login(t.port, "bob", { resource: "desk" });
    const bobId = await b1.enableResume();
    b1.drop();
    const a = await SmClient.auth(t.port, "alice");
    assert.equal(failedCondition(await a.resume("no-such-session", 0)), "item-not-found");
    assert.equal(failedCondition(await a.resume(bobId, 0)), "item-not-found");
    assert.equal(await a.bind("phone"), "alice@localhost/phone");
    await a.sync();
    // Bob's session was left alone: Bob resumes it.
    const b2 = await SmClient.auth(t.port, "bob");
    const resumed = await b2.resume(bobId, 0);
    assert.equal(resumed.name, "resumed", `${resumed}`);
    assert.equal(resumed.attrs.h, "0");
    a.message("bob@localhost/desk", "hi bob");
    await b2.waitFor(messageWithBody("hi bob"));
    assert.deepEqual(a.streamErrors(), []);
    a.close();
    b2.close();
  },
);

withServer(
  "a session is resumed once: of two resumes at once only one succeeds, and none after it",
  sm({ resume_timeout: "5s" }),
  async (t) => {
    await t.addUser("alice");
    await t.addUser("bob");
    const a1 = await SmClient.login(t.port, "alice", { resource: "phone" });
    const b = await SmClient.login(t.port, "bob", { resource: "desk" });
    const id = await a1.enableResume();
    a1.drop();
    // Three connections, all authenticated before any resumption.
    const [x, y, z] = await Promise.all(
      [1, 2, 3].map(() => SmClient.auth(t.port, "alice")),
    );
    const [rx, ry] = await Promise.all([x.resume(id, 0), y.resume(id, 0)]);
    assert.deepEqual([rx.name, ry.name].sort(), ["failed", "resumed"], `${rx} ${ry}`);
    const [winner, loser, lost] = rx.name === "resumed" ? [x, y, ry] : [y, x, rx];
    assert.equal(failedCondition(lost), "item-not-found");
    assert.equal(await loser.bind("laptop"), "alice@localhost/laptop");
    // Once resumed, the id resumes nothing more for them.
    assert.equal(failedCondition(await z.resume(id, 0)), "item-not-found");
    // The winner keeps the session.
    b.message("alice@localhost/phone", "still yours");
    await winner.waitFor(messageWithBody("still yours"));
    await winner.sync();
    assert.deepEqual(winner.streamErrors(), []);
    assert.ok(!winner.closed);
    for (const c of [winner, loser, z, b]) c.close();
  },
);

withServer(
  "resume after binding is an unexpected request",
  sm({ resume_timeout: "5s" }),
  async (t) => {
    await t.addUser("alice");
    const a1 = await SmClient.login(t.port, "alice", { resource: "phone" });
    const id = await a1.enableResume();
    a1.drop();
    const a2 = await SmClient.login(t.port, "alice", { resource: "laptop" });
    assert.equal(failedCondition(await a2.resume(id, 0)), "unexpected-request");
    await a2.sync();
    assert.deepEqual(a2.streamErrors(), []);
    // The detached session is still there for a proper resumption.
    const a3 = await SmClient.auth(t.port, "alice");
    const resumed = await a3.resume(id, 0);
    assert.equal(resumed.name, "resumed", `${resumed}`);
    a2.close();
    a3.close();
  },
);

withServer(
  "after resume_timeout: unavailable to contacts, messages kept offline, a queued iq bounced",
  sm({ resume_timeout: "1s" }),
  async (t) => {
    const { a1, b } = await friends(t);
    const id = await a1.enableResume();
    b.message(a1.jid, "m1");
    await a1.waitFor(messageWithBody("m1")); // received, never acknowledged
    const dropped = performance.now();
    a1.drop();
    b.message(a1.jid, "m2"); // chat
    b.message(a1.jid, "m3", undefined); // normal
    b.send(`<iq type='get' id='q1' to='${a1.jid}'><ping xmlns='${NS.ping}'/></iq>`);
    const gone = await b.waitFor(presence("unavailable", a1.jid), 5000, "unavailable");
    const waited = performance.now() - dropped;
    assert.ok(waited >= 900, `unavailable ${waited.toFixed(0)} ms after the drop`);
    assert.equal(gone.attrs.to, "bob@localhost");
    const iqError = await b.waitFor((e) => e.name === "iq" && e.attrs.id === "q1");
    assert.equal(iqError.attrs.type, "error", `${iqError}`);
    assert.equal(errorOf(iqError).condition, "recipient-unavailable", `${iqError}`);
    // Too late to resume; the stream binds instead, and gets the messages after initial presence.
    const a2 = await SmClient.auth(t.port, "alice");
    assert.equal(failedCondition(await a2.resume(id, 1)), "item-not-found");
    await a2.bind("desk");
    await a2.iq("get", ROSTER);
    await a2.sync();
    assert.deepEqual(bodies(a2.log), [], "nothing before initial presence");
    a2.send("<presence/>");
    await a2.waitFor(messageWithBody("m3"));
    assert.deepEqual(bodies(a2.log), ["m1", "m2", "m3"]);
    await a2.sync();
    assert.ok(!a2.log.some((e) => e.name === "iq" && e.attrs.id === "q1"), "the iq is not kept");
    assert.deepEqual(b.log.filter(bounced).map(String), []);
    a2.close();
    b.close();
  },
);

withServer(
  "more unacknowledged stanzas than max_unacked: policy-violation, and the session can be resumed",
  sm({ resume_timeout: "5s", max_unacked: 3 }),
  async (t) => {
    const { a1, b } = await friends(t);
    const id = await a1.enableResume();
    const mark = b.log.length;
    for (const m of ["m1", "m2", "m3", "m4"]) b.message(a1.jid, m);
    const err = await a1.streamError();
    assert.ok(err.child("policy-violation", NS.streamErrors), `${err}`);
    await a1.waitClosed();
    await b.sync();
    const a2 = await SmClient.auth(t.port, "alice");
    const resumed = await a2.resume(id, 1);
    assert.equal(resumed.name, "resumed", `${resumed}`);
    await a2.waitFor(messageWithBody("m4"));
    assert.deepEqual(bodies(a2.log), ["m2", "m3", "m4"]);
    // Acknowledged, the stream goes on.
    a2.send(`<a xmlns='${SM}' h='${a2.inbound}'/>`);
    await a2.sync();
    b.message(a1.jid, "m5");
    await a2.waitFor(messageWithBody("m5"));
    await a2.sync();
    assert.deepEqual(a2.streamErrors().map(String), []);
    await b.sync();
    assert.deepEqual(b.log.slice(mark).filter(presenceFrom(a1.jid)).map(String), []);
    assert.deepEqual(b.log.filter(bounced).map(String), []);
    a2.close();
    b.close();
  },
);

withServer(
  "</stream:stream> is answered with <a/> and ends the session: contacts told, no resumption",
  sm({ resume_timeout: "30s" }),
  async (t) => {
    const { a1, b } = await friends(t);
    const id = await a1.enableResume();
    a1.message(b.jid, "bye");
    await b.waitFor(messageWithBody("bye"));
    a1.endStream();
    const ack = await a1.waitFor(isSm("a"), 5000, "<a/> before </stream:stream>");
    assert.equal(ack.attrs.h, "1");
    await a1.waitClosed();
    a1.close();
    // Long before resume_timeout.
    await b.waitFor(presence("unavailable", a1.jid), 5000, "alice's unavailable presence");
    const a2 = await SmClient.auth(t.port, "alice");
    assert.equal(failedCondition(await a2.resume(id, 0)), "item-not-found");
    a2.close();
    b.close();
  },
);

withServer(
  "binding the full JID of a detached session replaces it; its messages come after initial presence",
  sm({ resume_timeout: "30s" }),
  async (t) => {
    await t.addUser("alice");
    await t.addUser("bob");
    const a1 = await SmClient.login(t.port, "alice", { resource: "phone" });
    const b = await SmClient.login(t.port, "bob", { resource: "desk" });
    const id = await a1.enableResume();
    b.message(a1.jid, "m1");
    await a1.waitFor(messageWithBody("m1")); // never acknowledged
    a1.drop();
    b.message(a1.jid, "m2");
    await b.sync();
    const a2 = await SmClient.login(t.port, "alice", { resource: "phone" });
    await a2.iq("get", ROSTER);
    await a2.sync();
    assert.deepEqual(bodies(a2.log), [], "nothing before initial presence");
    a2.send("<presence/>");
    await a2.waitFor(messageWithBody("m2"));
    assert.deepEqual(bodies(a2.log), ["m1", "m2"]);
    // The replaced session is gone for good.
    const a3 = await SmClient.auth(t.port, "alice");
    assert.equal(failedCondition(await a3.resume(id, 0)), "item-not-found");
    await b.sync();
    assert.deepEqual(b.log.filter(bounced).map(String), []);
    for (const c of [a2, a3, b]) c.close();
  },
);

withServer(
  "one account keeps at most 16 detached sessions: beyond, the oldest ends",
  sm({ resume_timeout: "60s" }),
  async (t) => {
    await t.addUser("alice");
    await t.addUser("bob");
    const b = await SmClient.login(t.port, "bob", { resource: "desk" });
    const first = await SmClient.login(t.port, "alice", { resource: "r0" });
    await befriend(first, b);
    const ids = [await first.enableResume()];
    const clients = [first];
    for (let i = 1; i <= 16; i++) {
      const a = await SmClient.login(t.port, "alice", { resource: `r${i}` });
      a.send("<presence/>");
      await b.waitFor(presence(undefined, a.jid));
      ids.push(await a.enableResume());
      clients.push(a);
    }
    // One at a time, each seen by the server (a round trip on another stream) before the next.
    for (const a of clients.slice(0, 16)) {
      a.drop();
      await b.sync();
    }
    // Sixteen detached: nobody is told anything yet. The seventeenth ends the oldest.
    const mark = b.log.length;
    clients[16].drop();
    await b.waitFor(presence("unavailable", clients[0].jid), 5000, "r0's unavailable");
    const again = await SmClient.auth(t.port, "alice");
    assert.equal(failedCondition(await again.resume(ids[0], 0)), "item-not-found");
    assert.equal((await again.resume(ids[16], 0)).name, "resumed");
    const told = b.log.slice(mark).filter((e) => e.name === "presence" && e.attrs.type);
    assert.deepEqual(told.map((e) => e.attrs.from), [clients[0].jid]);
    again.close();
    b.close();
  },
);
