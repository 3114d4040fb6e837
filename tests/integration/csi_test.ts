// Client State Indication (XEP-0352) over raw sockets: the stream feature after authentication;
// while <inactive/>, contacts' presence is held (only the newest per sender), chat states alone
// are dropped, a message with a body first flushes what is held, in order; <active/> flushes the
// rest; nothing is held for an active client; and /metrics counts it.
import assert from "node:assert/strict";
import { RawClient } from "../helpers/raw_client.ts";
import { withServer } from "../helpers/server.ts";
import { scrape } from "../helpers/metrics.ts";
import { eventually, until } from "../helpers/until.ts";
import { befriend, marker } from "../helpers/pep.ts";
import { befriend as smBefriend, SmClient } from "../helpers/sm_client.ts";
import { NS } from "../../src/xml/ns.ts";
import type { Element } from "../../src/xml/element.ts";

const login = (t: { port: number }, user: string, resource: string) =>
  RawClient.login(t.port, user, "secret", { resource });

const status = (c: RawClient, from: string) =>
  c.received.filter((e) => e.name === "presence" && e.attrs.from === from).map((e) =>
    e.childText("status")
  );

withServer("CSI: held presence, dropped chat states, flushed in order", {}, async (t) => {
  for (const u of ["ann", "bob"]) await t.addUser(u);
  // The feature, after authentication only.
  const raw = await RawClient.connect(t.port);
  const before = await raw.open();
  assert.equal(before.child("csi", NS.csi), undefined);
  assert.ok(await raw.plain("ann", "secret"));
  const after = await raw.open();
  assert.ok(after.child("csi", NS.csi), `${after}`);
  raw.close();

  const a = await login(t, "ann", "phone");
  const b = await login(t, "bob", "desk");
  for (const c of [a, b]) c.send("<presence/>");
  await befriend(a, b);
  await marker(b, a);
  const bob = b.jid;
  const metric = async (k: string) =>
    (await scrape(`http://127.0.0.1:${t.httpPort}`)).samples.get(k) ?? 0;
  const counted = (outcome: string, n: number) =>
    eventually(
      async () => await metric(`parley_csi_stanzas_total{outcome="${outcome}"}`) === n,
      `${n} ${outcome}`,
    );
  a.received.length = 0;
  a.send(`<inactive xmlns='${NS.csi}'/>`);
  // Three presence updates and two chat states: nothing reaches the inactive client.
  for (const s of ["one", "two", "three"]) b.send(`<presence><status>${s}</status></presence>`);
  for (const state of ["composing", "paused"]) {
    b.send(
      `<message to='ann@localhost' type='chat'><${state} xmlns='${NS.chatStates}'/></message>`,
    );
  }
  // Presence goes out once the sender's roster is read: waited for here, as held.
  await counted("held", 3);
  await counted("dropped", 2);
  // A message with a body: the newest presence comes first, then the message.
  b.send(`<message to='ann@localhost' type='chat' id='m1'><body>hello</body></message>`);
  await until(() => a.received.some((e) => e.attrs.id === "m1"), "m1");
  const names = a.received.map((e: Element) =>
    `${e.name}:${e.childText("status") ?? e.attrs.id ?? ""}`
  );
  assert.deepEqual(names, ["presence:three", "message:m1"], `got ${names}`);
  assert.deepEqual(status(a, bob), ["three"]);
  // Held again, then <active/> sends it.
  b.send(`<presence><status>four</status></presence>`);
  b.send(`<presence><status>five</status></presence>`);
  // Both held (a message as a marker would flush them): counted by /metrics.
  await counted("held", 5);
  a.received.length = 0;
  a.send(`<active xmlns='${NS.csi}'/>`);
  await until(() => a.received.length > 0, "what was held");
  await marker(b, a);
  assert.deepEqual(status(a, bob), ["five"]);
  // Active: everything goes at once, chat states too.
  b.send(`<message to='ann@localhost' type='chat'><composing xmlns='${NS.chatStates}'/></message>`);
  await a.waitFor((e) => e.name === "message" && !!e.child("composing", NS.chatStates), 5000);
  assert.equal(await metric('parley_csi_stanzas_total{outcome="held"}'), 5);
  assert.equal(await metric('parley_csi_stanzas_total{outcome="superseded"}'), 3);
  assert.equal(await metric('parley_csi_stanzas_total{outcome="dropped"}'), 2);
  assert.equal(await metric("parley_csi_flushes_total"), 2);
  a.close();
  b.close();
});

withServer(
  "CSI: a resumed stream is active again; what was held comes after the resent",
  {},
  async (t) => {
    for (const u of ["ann", "bob"]) await t.addUser(u);
    const a = await SmClient.login(t.port, "ann", { resource: "phone" });
    const previd = await a.enableResume();
    const b = await SmClient.login(t.port, "bob", { resource: "desk" });
    for (const c of [a, b]) c.send("<presence/>");
    await smBefriend(a, b);
    a.send(`<inactive xmlns='${NS.csi}'/>`);
    const metric = async (k: string) =>
      (await scrape(`http://127.0.0.1:${t.httpPort}`)).samples.get(k) ?? 0;
    b.send(`<presence><status>away for a bit</status></presence>`);
    await eventually(
      async () => await metric('parley_csi_stanzas_total{outcome="held"}') === 1,
      "held",
    );
    const h = a.inbound;
    a.drop();
    const again = await SmClient.auth(t.port, "ann");
    const resumed = await again.resume(previd, h);
    assert.equal(resumed.name, "resumed", `${resumed}`);
    // Held before: sent now, the stream being active.
    await again.waitFor((e) => e.name === "presence" && e.childText("status") === "away for a bit");
    // And what comes next is not held.
    b.send(`<presence><status>back</status></presence>`);
    await again.waitFor((e) => e.name === "presence" && e.childText("status") === "back");
    again.close();
    b.close();
  },
);
