// Push notifications (XEP-0357) on one server with an external component as the app server:
// enable with publish-options; a message for an account whose only session is detached (stream
// management) is pushed as a urn:xmpp:push:summary (body only when the options allow it), none
// while connected; a flood is coalesced within push.min_interval; an offline account is pushed
// too; disable stops it; an app server's error takes the registration away; room mentions.
import assert from "node:assert/strict";
import { componentLogin } from "../helpers/raw_client.ts";
import { type TestServer, withServer } from "../helpers/server.ts";
import { SmClient } from "../helpers/sm_client.ts";
import { befriend } from "../helpers/sm_client.ts";
import { eventually, until } from "../helpers/until.ts";
import { parseJid } from "../../src/jid/jid.ts";
import { createRoom, join, MUC } from "../helpers/muc.ts";
import { formValues } from "../../src/xml/data_form.ts";
import { NS } from "../../src/xml/ns.ts";
import type { Element } from "../../src/xml/element.ts";

const APP = "push.localhost";
const CONFIG = {
  hosts: [{
    domain: "localhost",
    muc: { domain: MUC },
    components: [{ domain: APP, secret: "s" }],
  }],
  listeners: [
    { type: "c2s", bind: "127.0.0.1", port: 0, starttls: "optional", plain_without_tls: true },
    { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
    { type: "component", bind: "127.0.0.1", port: 0 },
    { type: "http", bind: "127.0.0.1", port: 0 },
  ],
  push: { min_interval: "1s" },
};
const componentPort = (t: TestServer) => t.server.addresses[2].port;

const isPush = (e: Element) =>
  e.name === "iq" && e.attrs.type === "set" &&
  !!e.child("pubsub", NS.pubsub)?.child("publish")?.child("item")?.child("notification", NS.push);

/** The summary of a push: its fields, and the publish-options sent with it. */
function summary(iq: Element) {
  const pubsub = iq.child("pubsub", NS.pubsub)!;
  const form = pubsub.child("publish")!.child("item")!.child("notification")!.child("x")!;
  const fields = formValues(form);
  const options = pubsub.child("publish-options")?.child("x");
  return {
    node: pubsub.child("publish")!.attrs.node,
    from: iq.attrs.from,
    formType: fields.get("FORM_TYPE")?.[0],
    count: Number(fields.get("message-count")?.[0]),
    sender: fields.get("last-message-sender")?.[0],
    body: fields.get("last-message-body")?.[0],
    secret: options ? formValues(options).get("secret")?.[0] : undefined,
  };
}

function enable(c: SmClient, node: string, body: boolean): Promise<Element> {
  return c.iq(
    "set",
    `<enable xmlns='${NS.push}' jid='${APP}' node='${node}'><x xmlns='jabber:x:data' type='submit'>` +
      `<field var='FORM_TYPE'><value>${NS.pubsubPublishOptions}</value></field>` +
      `<field var='secret'><value>s-${node}</value></field>` +
      (body ? `<field var='include-body'><value>true</value></field>` : "") +
      `</x></enable>`,
  );
}

/** The app server: a component answering every push (with an error once `refuse` says so). */
async function appServer(t: TestServer) {
  const raw = await componentLogin(componentPort(t), APP, "s");
  const pushes: Element[] = [];
  const state = {
    pushes,
    refuse: () => false,
    close: () => raw.close(),
    /** The n-th push's summary, once it came (answered as it comes). */
    pushed: async (n: number) => {
      await until(() => (answer(), pushes.length >= n), `${n} pushes`);
      return summary(pushes[n - 1]);
    },
  };
  const answer = () => {
    for (let i; (i = raw.received.findIndex(isPush)) >= 0;) {
      const iq = raw.received.splice(i, 1)[0];
      pushes.push(iq);
      raw.send(
        state.refuse()
          ? `<iq type='error' id='${iq.attrs.id}' to='${iq.attrs.from}' from='${APP}'>` +
            `<error type='cancel'><item-not-found xmlns='${NS.stanzaErrors}'/></error></iq>`
          : `<iq type='result' id='${iq.attrs.id}' to='${iq.attrs.from}' from='${APP}'/>`,
      );
    }
  };
  return state;
}

withServer(
  "push: detached, offline, coalesced, disabled, refused by the app server",
  CONFIG,
  async (t) => {
    for (const u of ["ann", "bob"]) await t.addUser(u);
    const app = await appServer(t);
    const { pushed, pushes } = app;
    let refuse = false;
    app.refuse = () => refuse;
    const a = await SmClient.login(t.port, "ann", { resource: "phone" });
    await a.enableResume();
    const b = await SmClient.login(t.port, "bob", { resource: "desk" });
    a.send("<presence/>");
    b.send("<presence/>");
    await befriend(a, b);
    assert.equal((await enable(a, "n1", true)).attrs.type, "result");
    // Disco on the account: the feature.
    const info = await a.iq("get", `<query xmlns='${NS.discoInfo}'/>`);
    assert.ok(info.child("query")!.elements("feature").some((f) => f.attrs.var === NS.push));

    // Connected: no push (acknowledged, XEP-0198).
    b.message("ann@localhost", "while connected", "chat", "c1");
    await a.waitFor((e) => e.attrs.id === "c1", 5000, "c1");
    a.send(`<a xmlns='urn:xmpp:sm:3' h='${a.inbound}'/>`);
    await a.requestAck();
    // Written to the connection but never acknowledged, then the connection is gone: pushed as
    // the session detaches, with the summary, the body (allowed), the registration's options.
    b.message("ann@localhost", "never acknowledged", "chat", "c2");
    await a.waitFor((e) => e.attrs.id === "c2", 5000, "c2");
    a.drop();
    const annPhone = parseJid("ann@localhost/phone")!;
    await until(() => t.server.sessions.get(annPhone)?.detached === true, "ann detached");
    const first = await pushed(1);
    assert.deepEqual(first, {
      node: "n1",
      from: "ann@localhost",
      formType: NS.pushSummary,
      count: 1,
      sender: "bob@localhost/desk",
      body: "never acknowledged",
      secret: "s-n1",
    });
    assert.equal(pushes.filter((p) => summary(p).body === "while connected").length, 0);
    // Detached, then a flood: coalesced into one more push at the interval's end, counting all.
    b.message("ann@localhost", "are you there?");
    for (let i = 0; i < 5; i++) b.message("ann@localhost", `flood ${i}`);
    const second = await pushed(2);
    assert.equal(second.count, 6);
    assert.equal(second.body, "flood 4");
    // No session at all (stored offline): pushed too. The registration now without include-body.
    const c = await SmClient.login(t.port, "ann", { resource: "phone" }); // replaces the detached one
    assert.equal((await enable(c, "n1", false)).attrs.type, "result");
    c.close();
    await until(() => [...t.server.sessions.resources("ann@localhost")].length === 0, "ann gone");
    b.message("ann@localhost", "stored");
    const third = await pushed(3);
    assert.equal(third.body, undefined);
    assert.equal(third.sender, "bob@localhost/desk");
    // The app server refuses: the registration goes.
    refuse = true;
    b.message("ann@localhost", "refused");
    await pushed(4);
    const stored = () => t.server.store.map("push").keys("ann", "localhost");
    await eventually(async () => (await stored()).length === 0, "registration removed");
    // Enabled again, then disabled by the client: gone as well.
    const d = await SmClient.login(t.port, "ann", { resource: "tablet" });
    assert.equal((await enable(d, "n2", true)).attrs.type, "result");
    assert.equal((await stored()).length, 1);
    const off = await d.iq("set", `<disable xmlns='${NS.push}' jid='${APP}' node='n2'/>`);
    assert.equal(off.attrs.type, "result");
    assert.equal((await stored()).length, 0);
    // Without a node: every registration with that app server goes.
    for (const node of ["x1", "x2"]) {
      assert.equal((await enable(d, node, false)).attrs.type, "result");
    }
    assert.equal((await stored()).length, 2);
    const all = await d.iq("set", `<disable xmlns='${NS.push}' jid='${APP}'/>`);
    assert.equal(all.attrs.type, "result");
    assert.equal((await stored()).length, 0);
    // The app server not connected: the server's own bounce (service-unavailable) keeps the
    // registration: pushed once it is back.
    assert.equal((await enable(d, "n3", true)).attrs.type, "result");
    d.close();
    await until(() => [...t.server.sessions.resources("ann@localhost")].length === 0, "ann gone");
    app.close();
    await until(() => t.server.components.get(APP)?.instances.size === 0, "the app server gone");
    b.message("ann@localhost", "nobody there");
    await b.iq("get", `<ping xmlns='${NS.ping}'/>`); // its push tried and bounced by then
    const back = await appServer(t);
    b.message("ann@localhost", "back again");
    const after = await back.pushed(1);
    assert.equal(after.node, "n3");
    b.close();
    back.close();
  },
);

withServer(
  "push: a room message mentioning the user's nick, for its detached session",
  CONFIG,
  async (t) => {
    for (const u of ["ann", "bob"]) await t.addUser(u);
    const app = await appServer(t);
    const a = await SmClient.login(t.port, "ann", { resource: "phone" });
    await a.enableResume();
    const b = await SmClient.login(t.port, "bob", { resource: "desk" });
    await createRoom(b.raw, "lounge", "bobby");
    await join(a.raw, "lounge", "annie");
    assert.equal((await enable(a, "r", true)).attrs.type, "result");
    a.drop();
    const annPhone = parseJid("ann@localhost/phone")!;
    await until(() => t.server.sessions.get(annPhone)?.detached === true, "ann detached");
    const say = (body: string) =>
      b.send(`<message to='lounge@${MUC}' type='groupchat'><body>${body}</body></message>`);
    say("hi Annie!");
    const first = await app.pushed(1);
    assert.deepEqual([first.count, first.sender, first.body], [
      1,
      `lounge@${MUC}/bobby`,
      "hi Annie!",
    ]);
    // Not a mention: not counted; the next mention goes at the interval's end, counted alone.
    say("hello everyone");
    say("annie, are you there?");
    const second = await app.pushed(2);
    assert.deepEqual([second.count, second.body], [1, "annie, are you there?"]);
    b.close();
    app.close();
  },
);
