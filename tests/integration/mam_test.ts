// The message archive of accounts (XEP-0313) with stable stanza ids (XEP-0359) between raw
// clients and a real server: both ends archived with one id, stamped live, on carbons and
// offline; paging both ways, filters, ids, flip-page, metadata, full-text, preferences and hints,
// the errors, forged ids, and an account's removal.
import assert from "node:assert/strict";
import { withServer } from "../helpers/server.ts";
import { componentLogin, RawClient } from "../helpers/raw_client.ts";
import { archivedCount, bodiesOf, mamQuery, stanzaIdOf } from "../helpers/mam.ts";
import { errorOf } from "../helpers/stanza_errors.ts";
import { NS } from "../../src/xml/ns.ts";
import type { Element } from "../../src/xml/element.ts";
import { until } from "../helpers/until.ts";
import { SmClient } from "../helpers/sm_client.ts";

const chat = (to: string, body: string, extra = "") =>
  `<message to='${to}' type='chat' id='${crypto.randomUUID()}'><body>${body}</body>${extra}</message>`;
const withBody = (body: string) => (e: Element) =>
  e.name === "message" && e.childText("body") === body;

async function pair(t: { addUser(u: string): Promise<void>; port: number }) {
  await t.addUser("alice");
  await t.addUser("bob");
  const a = await RawClient.login(t.port, "alice", "secret", { resource: "phone" });
  const b = await RawClient.login(t.port, "bob", "secret", { resource: "desk" });
  b.send("<presence/>");
  a.send("<presence/>");
  return { a, b };
}

withServer(
  "a chat message is archived at both ends with the id stamped on its delivery",
  {},
  async (t) => {
    const { a, b } = await pair(t);
    const info = await a.iq("get", `<query xmlns='${NS.discoInfo}'/>`, "alice@localhost");
    const features = info.child("query")!.elements("feature").map((f) => f.attrs.var);
    for (const f of [NS.mam, NS.mamExtended, NS.sid, NS.fulltext]) {
      assert.ok(features.includes(f), `${f} not in ${features}`);
    }
    const form = await a.iq("get", `<query xmlns='${NS.mam}'/>`);
    assert.ok(`${form}`.includes(`{${NS.fulltext}}fulltext`), `${form}`);
    a.send(chat("bob@localhost", "hello"));
    const got = await b.waitFor(withBody("hello"));
    const id = stanzaIdOf(got, "bob@localhost");
    assert.ok(id, `no stanza-id by bob in ${got}`);
    await archivedCount(b, 1);
    const bobs = await mamQuery(b);
    assert.equal(bobs.results[0].id, id);
    assert.equal(bobs.results[0].message.childText("body"), "hello");
    assert.equal(bobs.results[0].message.attrs.from, "alice@localhost/phone");
    assert.equal(stanzaIdOf(bobs.results[0].message, "bob@localhost"), id);
    const alices = await mamQuery(a);
    assert.deepEqual(bodiesOf(alices), ["hello"]);
    assert.equal(alices.results[0].id, id, "one id for both archives");
    assert.equal(alices.count, 1);
    assert.ok(alices.complete);
    a.close();
    b.close();
  },
);

withServer(
  "paging forward and backward in pages, count, first and last, flip-page",
  {},
  async (t) => {
    const { a, b } = await pair(t);
    for (let i = 0; i < 25; i++) a.send(chat("bob@localhost", `m${i}`));
    await b.waitFor(withBody("m24"));
    await archivedCount(b, 25);
    const forward: string[] = [];
    let after: string | undefined;
    for (let pages = 0;; pages++) {
      const p = await mamQuery(b, { max: 10, after });
      forward.push(...bodiesOf(p) as string[]);
      assert.equal(p.count, 25);
      if (p.complete) {
        assert.equal(pages, 2);
        break;
      }
      after = p.last;
    }
    assert.deepEqual(forward, Array.from({ length: 25 }, (_, i) => `m${i}`));
    const last = await mamQuery(b, { max: 10, before: "" });
    assert.deepEqual(bodiesOf(last), Array.from({ length: 10 }, (_, i) => `m${i + 15}`));
    assert.equal(last.complete, false);
    const earlier = await mamQuery(b, { max: 10, before: last.first });
    assert.deepEqual(bodiesOf(earlier)[0], "m5");
    const flipped = await mamQuery(b, { max: 10, before: "", flip: true });
    assert.deepEqual(bodiesOf(flipped), bodiesOf(last).reverse());
    // after-id / before-id / ids (#extended), and with.
    const ids = (await mamQuery(b)).results.map((r) => r.id);
    const between = await mamQuery(b, { afterId: ids[2], beforeId: ids[6] });
    assert.deepEqual(bodiesOf(between), ["m3", "m4", "m5"]);
    const some = await mamQuery(b, { ids: [ids[7], ids[1]] });
    assert.deepEqual(bodiesOf(some), ["m1", "m7"]);
    assert.equal((await mamQuery(b, { with: "alice@localhost" })).count, 25);
    assert.equal((await mamQuery(b, { with: "alice@localhost/phone" })).count, 25);
    assert.equal((await mamQuery(b, { with: "alice@localhost/other" })).count, 0);
    assert.equal((await mamQuery(b, { with: "carol@localhost" })).count, 0);
    // Metadata: first and last.
    const meta = await b.iq("get", `<metadata xmlns='${NS.mam}'/>`);
    assert.equal(meta.child("metadata")!.child("start")!.attrs.id, ids[0]);
    assert.equal(meta.child("metadata")!.child("end")!.attrs.id, ids[24]);
    a.close();
    b.close();
  },
);

withServer("errors: a bad form, an unknown id, another's archive; pages are capped", {
  mam: { max_page: 5 },
}, async (t) => {
  const { a, b } = await pair(t);
  for (let i = 0; i < 7; i++) a.send(chat("bob@localhost", `m${i}`));
  await b.waitFor(withBody("m6"));
  await archivedCount(b, 7);
  assert.equal(
    errorOf((await mamQuery(b, { start: "yesterday" })).answer).condition,
    "bad-request",
  );
  assert.equal(
    errorOf((await mamQuery(b, { extra: "<field var='nope'><value/></field>" })).answer).condition,
    "bad-request",
  );
  assert.equal(
    errorOf((await mamQuery(b, { after: "no-such-id" })).answer).condition,
    "item-not-found",
  );
  assert.equal(
    errorOf((await mamQuery(b, { beforeId: "no-such-id" })).answer).condition,
    "item-not-found",
  );
  assert.equal(errorOf((await mamQuery(a, { to: "bob@localhost" })).answer).condition, "forbidden");
  const capped = await mamQuery(b, { max: 100 });
  assert.equal(capped.results.length, 5);
  assert.equal(capped.complete, false);
  a.close();
  b.close();
});

withServer("full-text search finds messages by their words", {}, async (t) => {
  const { a, b } = await pair(t);
  a.send(chat("bob@localhost", "the quick brown fox"));
  a.send(chat("bob@localhost", "a lazy dog"));
  a.send(chat("bob@localhost", 'Quick thinking, "fox"!'));
  await b.waitFor(withBody('Quick thinking, "fox"!'));
  await archivedCount(b, 3);
  assert.deepEqual(bodiesOf(await mamQuery(b, { text: "quick fox" })), [
    "the quick brown fox",
    'Quick thinking, "fox"!',
  ]);
  assert.deepEqual(bodiesOf(await mamQuery(b, { text: "dog" })), ["a lazy dog"]);
  assert.deepEqual(bodiesOf(await mamQuery(b, { text: '" OR *' })), []);
  a.close();
  b.close();
});

withServer("preferences, no-store hints, what is not archived, forged ids", {}, async (t) => {
  const { a, b } = await pair(t);
  await t.addUser("carol");
  const prefs = await b.iq("get", `<prefs xmlns='${NS.mam}'/>`);
  assert.equal(prefs.child("prefs")!.attrs.default, "always");
  const set = await b.iq(
    "set",
    `<prefs xmlns='${NS.mam}' default='always'><always/><never><jid>carol@localhost</jid></never></prefs>`,
  );
  assert.equal(set.attrs.type, "result", `${set}`);
  const c = await RawClient.login(t.port, "carol", "secret", { resource: "x" });
  c.send(chat("bob@localhost", "from carol"));
  a.send(chat("bob@localhost", "kept"));
  a.send(chat("bob@localhost", "hinted", "<no-store xmlns='urn:xmpp:hints'/>"));
  a.send(`<message to='bob@localhost' type='chat'><composing xmlns='${NS.chatStates}'/></message>`);
  a.send(`<message to='bob@localhost' type='headline'><body>news</body></message>`);
  a.send(
    chat("bob@localhost", "forged", `<stanza-id xmlns='${NS.sid}' by='bob@localhost' id='fake'/>`),
  );
  const forged = await b.waitFor(withBody("forged"));
  const ids = forged.elements("stanza-id");
  assert.equal(ids.length, 1, `${forged}`);
  assert.notEqual(ids[0].attrs.id, "fake");
  const fromCarol = await b.waitFor(withBody("from carol"));
  assert.equal(stanzaIdOf(fromCarol, "bob@localhost"), undefined, "carol is never archived");
  await archivedCount(b, 2);
  assert.deepEqual(bodiesOf(await mamQuery(b)), ["kept", "forged"]);
  // Alice's own archive has what she sent, the hint honoured there too.
  assert.deepEqual(bodiesOf(await mamQuery(a)), ["kept", "forged"]);
  const bad = await b.iq("set", `<prefs xmlns='${NS.mam}' default='sometimes'/>`);
  assert.equal(errorOf(bad).condition, "bad-request");
  a.close();
  b.close();
  c.close();
});

withServer("carbons and offline delivery carry the archive's id", {}, async (t) => {
  const { a, b } = await pair(t);
  const a2 = await RawClient.login(t.port, "alice", "secret", { resource: "laptop" });
  a2.send("<presence/>");
  const enabled = await a2.iq("set", `<enable xmlns='${NS.carbons}'/>`);
  assert.equal(enabled.attrs.type, "result");
  a.send(chat("bob@localhost", "carbon"));
  const copy = await a2.waitFor((e) => e.child("sent", NS.carbons) !== undefined);
  const inner = copy.child("sent")!.child("forwarded")!.child("message")!;
  const got = await b.waitFor(withBody("carbon"));
  assert.equal(stanzaIdOf(inner, "alice@localhost"), stanzaIdOf(got, "bob@localhost"));
  b.close();
  await until(() => b.closed, "bob gone");
  await new Promise((r) => setTimeout(r, 100));
  a.send(chat("bob@localhost", "while away"));
  await archivedCount(a, 2);
  const b2 = await RawClient.login(t.port, "bob", "secret", { resource: "again" });
  b2.send("<presence/>");
  const offline = await b2.waitFor(withBody("while away"));
  await archivedCount(b2, 2);
  const archived = await mamQuery(b2, { max: 1, before: "" });
  assert.equal(stanzaIdOf(offline, "bob@localhost"), archived.results[0].id);
  a.close();
  a2.close();
  b2.close();
});

withServer("retention removes what is older, in batches, and keeps the rest", {
  mam: { retention: "1s" },
}, async (t) => {
  const { a, b } = await pair(t);
  for (let i = 0; i < 3; i++) a.send(chat("bob@localhost", `old${i}`));
  await archivedCount(b, 3);
  const oldest = Date.now();
  await until(() => Date.now() > oldest + 1000, "the messages to age");
  a.send(chat("bob@localhost", "new"));
  await archivedCount(b, 4);
  // Once a second old (the background run comes 30–60 s after start: run here at once).
  assert.equal(await t.server.retention.expireOnce(), 6, "3 in each archive");
  assert.deepEqual(bodiesOf(await mamQuery(b)), ["new"]);
  assert.deepEqual(bodiesOf(await mamQuery(a)), ["new"]);
  assert.deepEqual(bodiesOf(await mamQuery(b, { text: "old0" })), []);
  a.close();
  b.close();
});

withServer("a resumption's resent messages are archived once, with the ids they had", {
  stream_management: { resume_timeout: "30s" },
}, async (t) => {
  await t.addUser("alice");
  await t.addUser("bob");
  const b = await RawClient.login(t.port, "bob", "secret", { resource: "desk" });
  b.send("<presence/>");
  const a = await SmClient.login(t.port, "alice", { resource: "phone" });
  const previd = await a.enableResume();
  const ids = Array.from({ length: 20 }, (_, i) => `m${i}`);
  const send = (c: SmClient, i: number) =>
    c.send(
      `<message to='bob@localhost' type='chat' id='${ids[i]}'><body>${ids[i]}</body>` +
        `<origin-id xmlns='${NS.sid}' id='o-${ids[i]}'/></message>`,
    );
  for (let i = 0; i < 20; i++) send(a, i);
  await b.waitFor(withBody("m19"));
  await archivedCount(b, 20);
  const h = await a.requestAck();
  assert.equal(h, 20, "counted once stored");
  // The connection dies; the client thinks it has no acknowledgement for the last 8 and resends
  // them after resuming (as a client whose <a/> was lost would).
  a.drop();
  const a2 = await SmClient.auth(t.port, "alice");
  const resumed = await a2.resume(previd, 0);
  assert.equal(resumed.name, "resumed", `${resumed}`);
  assert.equal(resumed.attrs.h, "20");
  for (let i = 12; i < 20; i++) send(a2, i);
  a2.message("bob@localhost", "after");
  await b.waitFor(withBody("after"));
  await archivedCount(b, 21);
  const got = await mamQuery(b);
  assert.deepEqual(bodiesOf(got), [...ids, "after"]);
  assert.equal(new Set(got.results.map((r) => r.id)).size, 21);
  assert.deepEqual(bodiesOf(await mamQuery(b, { with: "alice@localhost" })), [...ids, "after"]);
  a2.close();
  b.close();
});

withServer("what is refused is not archived: a full offline store, an unknown account", {
  limits: { max_offline_messages: 1 },
}, async (t) => {
  const { a, b } = await pair(t);
  b.close();
  await until(() => b.closed, "bob gone");
  a.send(`<message to='bob@localhost' type='chat' id='s'><body>stored</body></message>`);
  a.send(`<message to='bob@localhost' type='chat' id='r'><body>refused</body></message>`);
  a.send(`<message to='nobody@localhost' type='chat' id='n'><body>lost</body></message>`);
  const errors = [];
  for (let i = 0; i < 2; i++) {
    errors.push(await a.waitFor((e) => e.name === "message" && e.attrs.type === "error"));
  }
  assert.deepEqual(errors.map((e) => e.attrs.id).sort(), ["n", "r"]);
  const b2 = await RawClient.login(t.port, "bob", "secret", { resource: "back" });
  await archivedCount(b2, 1);
  assert.deepEqual(bodiesOf(await mamQuery(b2)), ["stored"]);
  assert.equal(await t.server.store.archive("mam").deleteOwner("nobody", "localhost"), 0);
  a.close();
  b2.close();
});

withServer("a component's stanza-id claiming this server is removed; the message is archived", {
  hosts: [{ domain: "localhost", components: [{ domain: "bot.localhost", secret: "s" }] }],
  listeners: [
    { type: "c2s", bind: "127.0.0.1", port: 0, starttls: "optional", plain_without_tls: true },
    { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
    { type: "component", bind: "127.0.0.1", port: 0 },
  ],
}, async (t) => {
  await t.addUser("bob");
  const b = await RawClient.login(t.port, "bob", "secret", { resource: "desk" });
  b.send("<presence/>");
  const bot = await componentLogin(t.server.addresses[2].port, "bot.localhost", "s");
  bot.send(
    `<message from='x@bot.localhost' to='bob@localhost' type='chat'><body>from a bot</body>` +
      `<stanza-id xmlns='${NS.sid}' by='bob@localhost' id='FAKE'/></message>`,
  );
  const got = await b.waitFor(withBody("from a bot"));
  const id = stanzaIdOf(got, "bob@localhost");
  assert.ok(id && id !== "FAKE", `${got}`);
  assert.equal(got.elements("stanza-id").length, 1);
  await archivedCount(b, 1);
  assert.equal((await mamQuery(b)).results[0].id, id);
  bot.close();
  b.close();
});
