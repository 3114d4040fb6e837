// PEP (XEP-0163) on one server, between raw clients: what an account advertises; publish with
// auto-create, item ids, replacement and max_items; publish-options preconditions; the access
// models (presence, open with OMEMO's nodes, roster, whitelist with affiliations); notifications
// by interest through entity capabilities (XEP-0115: queried once per verified ver, a ver that
// does not verify asked again and never notified), in publish order, and the last items on coming
// online; the per-account limits; explicit subscriptions with retract, purge and delete events;
// the owner's configuration; bookmarks (XEP-0402 with #compat and #compat-pep, XEP-0048/0049);
// vCard photos ↔ avatars (XEP-0398, XEP-0084, XEP-0153 hashes in presence); account removal.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import { RawClient } from "../helpers/raw_client.ts";
import { serverTest, startServer, withServer } from "../helpers/server.ts";
import { eventually } from "../helpers/until.ts";
import {
  befriend,
  Caps,
  capsVer,
  eventOf,
  type Fields,
  form,
  idsOf,
  isEventOn,
  isItemsEvent,
  isPublished,
  items,
  itemsOf,
  marker,
  NICK,
  NODE_CONFIG,
  ownerIq,
  payloadOf,
  pendingEvents,
  publish,
  published,
  publishXml,
  PUBSUB,
  PUBSUB_OWNER,
  pubsubError,
  retract,
  rosterHas,
  subscribeTo,
  textsOf,
} from "../helpers/pep.ts";
import { NS } from "../../src/xml/ns.ts";
import type { Element } from "../../src/xml/element.ts";

const ANN = "ann@localhost";
const nick = (s: string) => `<nick xmlns='${NICK}'>${s}</nick>`;
const entry = (ns: string, s: string) => `<entry xmlns='${ns}'>${s}</entry>`;
const login = (t: { port: number }, user: string, resource: string) =>
  RawClient.login(t.port, user, "secret", { resource });

/** Owner, contact (mutual subscription) and stranger, all available. */
async function trio(t: { addUser(u: string): Promise<void>; port: number }) {
  for (const u of ["ann", "bob", "eve"]) await t.addUser(u);
  const a = await login(t, "ann", "a");
  const b = await login(t, "bob", "b");
  const e = await login(t, "eve", "e");
  for (const c of [a, b, e]) c.send("<presence/>");
  await befriend(a, b);
  return { a, b, e };
}

const PRECONDITION = {
  type: "error",
  errorType: "cancel",
  condition: "conflict",
  pubsub: "precondition-not-met",
};

Deno.test("the test's XEP-0115 verification string matches the XEP's example (§5.2)", () => {
  assert.equal(
    capsVer([{ category: "client", type: "pc", name: "Exodus 0.9.1" }], [
      "http://jabber.org/protocol/caps",
      "http://jabber.org/protocol/disco#info",
      "http://jabber.org/protocol/disco#items",
      "http://jabber.org/protocol/muc",
    ]),
    "QgayPKawpkPSDYmwT/WM94uAlu0=",
  );
});

withServer(
  "disco#info on the account: identity pubsub/pep and the pubsub features",
  {},
  async (t) => {
    await t.addUser("ann");
    const a = await login(t, "ann", "a");
    const info = await a.iq("get", `<query xmlns='${NS.discoInfo}'/>`, ANN);
    assert.equal(info.attrs.type, "result", `${info}`);
    const q = info.child("query", NS.discoInfo)!;
    const identities = q.elements("identity").map((i) => `${i.attrs.category}/${i.attrs.type}`);
    assert.ok(identities.includes("pubsub/pep"), `no pubsub/pep identity in ${info}`);
    const features = q.elements("feature").map((f) => f.attrs.var);
    const expected = [
      ...[
        "publish",
        "publish-options",
        "auto-create",
        "persistent-items",
        "last-published",
        "retrieve-items",
        "retract-items",
        "purge-nodes",
        "delete-nodes",
        "config-node",
        "subscribe",
        "access-presence",
        "access-open",
        "access-roster",
        "access-whitelist",
        "member-affiliation",
        "outcast-affiliation",
        "multi-items",
        "item-ids",
        "filtered-notifications",
      ].map((f) => `${PUBSUB}#${f}`),
      "urn:xmpp:bookmarks:1#compat",
      "urn:xmpp:bookmarks:1#compat-pep",
      "urn:xmpp:pep-vcard-conversion:0",
    ];
    const missing = expected.filter((f) => !features.includes(f));
    assert.deepEqual(missing, [], `missing from ${features}`);
    a.close();
  },
);

withServer(
  "publish auto-creates; items; generated ids; replacement; max_items; bad payloads; disco",
  {},
  async (t) => {
    await t.addUser("ann");
    const a = await login(t, "ann", "a");
    // Auto-created with PEP's default of one item: the second publish replaces the first.
    const one = "urn:example:one";
    assert.equal(await published(a, one, entry(one, "first"), { id: "i1" }), "i1");
    const first = itemsOf(await items(a, one));
    assert.deepEqual(first.map((i) => i.attrs.id), ["i1"]);
    assert.equal(payloadOf(first[0]).attrs.xmlns, one);
    assert.equal(payloadOf(first[0]).text(), "first");
    await published(a, one, entry(one, "second"), { id: "i2", to: ANN });
    assert.deepEqual(idsOf(await items(a, one, { to: ANN })), ["i2"], "default max_items is 1");
    // No id: the server makes one and answers with it.
    const gen = "urn:example:generated";
    const id = await published(a, gen, entry(gen, "x"));
    assert.ok(id.length > 0);
    assert.deepEqual(idsOf(await items(a, gen)), [id]);
    // Publishing an item id again replaces it and makes it the newest.
    const list = "urn:example:list";
    const ten = { "pubsub#max_items": "10" };
    await published(a, list, entry(list, "A1"), { id: "a", options: ten });
    await published(a, list, entry(list, "B"), { id: "b", options: ten });
    await published(a, list, entry(list, "C"), { id: "c", options: ten });
    await published(a, list, entry(list, "A2"), { id: "a", options: ten });
    const all = await items(a, list);
    assert.deepEqual(idsOf(all), ["b", "c", "a"], "oldest first, the replaced one newest");
    assert.deepEqual(textsOf(all), ["B", "C", "A2"]);
    assert.deepEqual(idsOf(await items(a, list, { max: 1 })), ["a"], "max_items='1': newest");
    assert.deepEqual(idsOf(await items(a, list, { max: 2 })), ["c", "a"]);
    const some = await items(a, list, { ids: ["b"] });
    assert.deepEqual(idsOf(some), ["b"]);
    assert.deepEqual(textsOf(some), ["B"]);
    // A node keeping two: the third publish trims the oldest.
    const two = "urn:example:two";
    for (const i of ["x1", "x2", "x3"]) {
      await published(a, two, entry(two, i), { id: i, options: { "pubsub#max_items": "2" } });
    }
    assert.deepEqual(idsOf(await items(a, two)), ["x2", "x3"]);
    // Malformed publishes, nothing stored (XEP-0060 §7.1.3.5–6): two payloads are an invalid
    // payload; an item without one lacks its payload (payload-required in XEP-0060,
    // invalid-payload in the design: either, but not item-required); no <item/> at all lacks the
    // item (item-required).
    const malformed = async (inner: string) => {
      const r = await a.iq(
        "set",
        `<pubsub xmlns='${PUBSUB}'><publish node='${two}'>${inner}</publish></pubsub>`,
      );
      const err = pubsubError(r);
      assert.equal(err.type, "error", `${r}`);
      assert.equal(err.condition, "bad-request", `${r}`);
      return { r, app: err.pubsub };
    };
    const twoPayloads = await malformed(
      `<item id='bad'>${entry(two, "p")}${entry(two, "q")}</item>`,
    );
    assert.equal(twoPayloads.app, "invalid-payload", `${twoPayloads.r}`);
    const empty = await malformed("<item id='bad'/>");
    assert.ok(
      empty.app === "payload-required" || empty.app === "invalid-payload",
      `an item without payload: ${empty.r}`,
    );
    const noItem = await malformed("");
    assert.equal(noItem.app, "item-required", `a publish without <item/>: ${noItem.r}`);
    assert.deepEqual(idsOf(await items(a, two)), ["x2", "x3"]);
    // disco#items on the account lists its nodes; disco#info on a node: pubsub/leaf.
    const disco = await a.iq("get", `<query xmlns='${NS.discoItems}'/>`, ANN);
    assert.equal(disco.attrs.type, "result", `${disco}`);
    const nodes = disco.child("query")!.elements("item").map((i) => {
      assert.equal(i.attrs.jid, ANN);
      return i.attrs.node;
    });
    assert.deepEqual(nodes.sort(), [gen, list, one, two].sort());
    const leaf = await a.iq("get", `<query xmlns='${NS.discoInfo}' node='${list}'/>`, ANN);
    assert.equal(leaf.attrs.type, "result", `${leaf}`);
    const ident = leaf.child("query")!.child("identity")!;
    assert.equal(`${ident.attrs.category}/${ident.attrs.type}`, "pubsub/leaf");
    a.close();
  },
);

withServer(
  "publish-options: a precondition that differs from the node's is refused",
  {},
  async (t) => {
    await t.addUser("ann");
    const a = await login(t, "ann", "a");
    const node = "urn:example:pre";
    const open = { "pubsub#access_model": "open" };
    await published(a, node, entry(node, "p1"), { id: "p1", options: open });
    const r = await publish(a, node, entry(node, "p2"), {
      id: "p2",
      options: { "pubsub#access_model": "presence" },
    });
    assert.deepEqual(pubsubError(r), PRECONDITION, `${r}`);
    assert.deepEqual(idsOf(await items(a, node)), ["p1"], "nothing published");
    // The same options pass.
    await published(a, node, entry(node, "p3"), { id: "p3", options: open });
    assert.deepEqual(idsOf(await items(a, node)), ["p3"]);
    // An unknown field or a bad value: precondition-not-met as well (as Prosody).
    for (
      const options of [
        { "pubsub#no_such_option": "1" },
        { "pubsub#access_model": "bogus" },
        { "pubsub#max_items": "many" },
      ] as Fields[]
    ) {
      const bad = await publish(a, node, entry(node, "p4"), { id: "p4", options });
      assert.deepEqual(pubsubError(bad), PRECONDITION, `${JSON.stringify(options)}: ${bad}`);
    }
    assert.deepEqual(idsOf(await items(a, node)), ["p3"]);
    // On a new node the refusal creates nothing.
    const fresh = "urn:example:never-created";
    const r2 = await publish(a, fresh, entry(fresh, "x"), {
      options: { "pubsub#access_model": "bogus" },
    });
    assert.deepEqual(pubsubError(r2), PRECONDITION, `${r2}`);
    assert.equal(pubsubError(await items(a, fresh)).condition, "item-not-found");
    a.close();
  },
);

withServer(
  "access models: presence, open (OMEMO's nodes), roster groups, whitelist with affiliations",
  {},
  async (t) => {
    const { a, b, e } = await trio(t);
    // presence (the default): a contact with a subscription reads, a stranger does not.
    const pres = "urn:example:presence";
    await published(a, pres, entry(pres, "for contacts"), { id: "p" });
    const refused = await items(e, pres, { to: ANN });
    assert.deepEqual(pubsubError(refused), {
      type: "error",
      errorType: "auth",
      condition: "not-authorized",
      pubsub: "presence-subscription-required",
    }, `${refused}`);
    assert.deepEqual(textsOf(await items(b, pres, { to: ANN })), ["for contacts"]);
    // Ann subscribed to Cat's presence, not Cat to Ann's ("to" in Ann's roster): not enough.
    await t.addUser("cat");
    const cat = await login(t, "cat", "c");
    cat.send("<presence/>");
    await a.iq("get", `<query xmlns='${NS.roster}'/>`);
    await subscribeTo(a, cat);
    await rosterHas(a, "cat@localhost", "to");
    const oneWay = await items(cat, pres, { to: ANN });
    assert.equal(pubsubError(oneWay).pubsub, "presence-subscription-required", `${oneWay}`);
    cat.close();
    // open: OMEMO's device list and bundle, read by someone with no roster relation at all.
    const open = { "pubsub#access_model": "open" };
    const devicelist = "eu.siacs.conversations.axolotl.devicelist";
    const bundle = "eu.siacs.conversations.axolotl.bundles:1234";
    const AXOLOTL = "eu.siacs.conversations.axolotl";
    await published(
      a,
      devicelist,
      `<list xmlns='${AXOLOTL}'><device id='1234'/><device id='5678'/></list>`,
      { id: "current", options: open },
    );
    await published(
      a,
      bundle,
      `<bundle xmlns='${AXOLOTL}'><signedPreKeyPublic signedPreKeyId='1'>U1BL</signedPreKeyPublic>` +
        `<signedPreKeySignature>U0lH</signedPreKeySignature><identityKey>SUs=</identityKey>` +
        `<prekeys><preKeyPublic preKeyId='1'>UEsx</preKeyPublic>` +
        `<preKeyPublic preKeyId='2'>UEsy</preKeyPublic></prekeys></bundle>`,
      { id: "current", options: open },
    );
    const list = itemsOf(await items(e, devicelist, { to: ANN }));
    assert.deepEqual(list.map((i) => i.attrs.id), ["current"]);
    assert.deepEqual(
      payloadOf(list[0]).elements("device").map((d) => d.attrs.id),
      ["1234", "5678"],
    );
    const keys = payloadOf(itemsOf(await items(e, bundle, { to: ANN }))[0]);
    assert.equal(keys.attrs.xmlns, AXOLOTL);
    assert.equal(keys.childText("identityKey"), "SUs=");
    assert.equal(keys.child("prekeys")!.elements("preKeyPublic").length, 2);
    // OMEMO 2: one item per device on a node keeping "max".
    const v2 = "urn:xmpp:omemo:2:bundles";
    const v2opts = { "pubsub#access_model": "open", "pubsub#max_items": "max" };
    for (const dev of ["1234", "5678"]) {
      await published(
        a,
        v2,
        `<bundle xmlns='urn:xmpp:omemo:2'><ik>${dev}</ik></bundle>`,
        { id: dev, options: v2opts },
      );
    }
    assert.deepEqual(idsOf(await items(e, v2, { to: ANN })), ["1234", "5678"]);
    const one = itemsOf(await items(e, v2, { to: ANN, ids: ["5678"] }));
    assert.deepEqual(one.map((i) => payloadOf(i).childText("ik")), ["5678"]);
    // disco#items shows each one the nodes it may read.
    const listed = async (c: RawClient) => {
      const r = await c.iq("get", `<query xmlns='${NS.discoItems}'/>`, ANN);
      assert.equal(r.attrs.type, "result", `${r}`);
      return r.child("query")!.elements("item").map((i) => i.attrs.node).sort();
    };
    assert.deepEqual(await listed(e), [bundle, devicelist, v2].sort());
    assert.deepEqual(await listed(b), [bundle, devicelist, pres, v2].sort());
    // roster: contacts in an allowed group only.
    const set = await a.iq(
      "set",
      `<query xmlns='${NS.roster}'><item jid='bob@localhost'><group>Friends</group></item></query>`,
    );
    assert.equal(set.attrs.type, "result", `${set}`);
    const rost = "urn:example:roster";
    await published(a, rost, entry(rost, "friends only"), {
      options: { "pubsub#access_model": "roster", "pubsub#roster_groups_allowed": ["Friends"] },
    });
    assert.deepEqual(textsOf(await items(b, rost, { to: ANN })), ["friends only"]);
    const notInGroup = await items(e, rost, { to: ANN });
    assert.deepEqual(pubsubError(notInGroup), {
      type: "error",
      errorType: "auth",
      condition: "not-authorized",
      pubsub: "not-in-roster-group",
    }, `${notInGroup}`);
    // whitelist: the owner and members only, whatever the roster says.
    const wl = "urn:example:whitelist";
    await published(a, wl, entry(wl, "members only"), {
      id: "w",
      options: { "pubsub#access_model": "whitelist" },
    });
    const closed = {
      type: "error",
      errorType: "cancel",
      condition: "not-allowed",
      pubsub: "closed-node",
    };
    for (const c of [e, b]) {
      const r = await items(c, wl, { to: ANN });
      assert.deepEqual(pubsubError(r), closed, `${c.jid}: ${r}`);
    }
    assert.deepEqual(textsOf(await items(a, wl)), ["members only"]);
    const affiliate = (aff: string) =>
      ownerIq(
        a,
        "set",
        `<affiliations node='${wl}'><affiliation jid='eve@localhost' affiliation='${aff}'/></affiliations>`,
      );
    assert.equal((await affiliate("member")).attrs.type, "result");
    assert.deepEqual(textsOf(await items(e, wl, { to: ANN })), ["members only"]);
    const affs = await ownerIq(a, "get", `<affiliations node='${wl}'/>`);
    assert.equal(affs.attrs.type, "result", `${affs}`);
    const listedAffs = affs.child("pubsub", PUBSUB_OWNER)!.child("affiliations")!
      .elements("affiliation").map((x) => `${x.attrs.jid} ${x.attrs.affiliation}`);
    assert.ok(listedAffs.includes("eve@localhost member"), `${affs}`);
    // Only the owner sets affiliations.
    const foreign = await ownerIq(
      e,
      "set",
      `<affiliations node='${wl}'><affiliation jid='eve@localhost' affiliation='publisher'/></affiliations>`,
      ANN,
    );
    assert.equal(pubsubError(foreign).condition, "forbidden", `${foreign}`);
    assert.equal((await affiliate("none")).attrs.type, "result");
    assert.deepEqual(pubsubError(await items(e, wl, { to: ANN })), closed);
    for (const c of [a, b, e]) c.close();
  },
);

withServer(
  "notifications by interest (+notify in caps): to interested resources only, in order, once",
  {},
  async (t) => {
    const { a, b, e } = await trio(t);
    const other = "urn:example:other";
    await published(a, NICK, nick("Ann 1"));
    await published(a, other, entry(other, "o1"));
    // Bob's resource, available without caps, now advertises nick+notify: the server asks its
    // disco#info once (from the domain, node#ver), verifies it and sends the last nick.
    const notifyCaps = Caps.of([`${NICK}+notify`, "urn:xmpp:ping"]);
    b.send(notifyCaps.presence());
    await notifyCaps.answer(b);
    const last = await b.waitFor(isPublished(NICK, "Ann 1"), 5000, "last nick");
    assert.equal(last.attrs.from, ANN);
    assert.equal(last.attrs.to, b.jid);
    assert.equal(last.attrs.type, "headline");
    // A second resource of Bob interested in another node only (its initial presence).
    const quiet = await login(t, "bob", "quiet");
    const otherCaps = Caps.of([`${other}+notify`]);
    quiet.send(otherCaps.presence());
    await otherCaps.answer(quiet);
    await quiet.waitFor(isPublished(other, "o1"), 5000, "last item of the other node");
    // Ann's own second resource with nick+notify gets her own items.
    const own = await login(t, "ann", "own");
    const ownCaps = Caps.of([`${NICK}+notify`], "Ann's other client");
    own.send(ownCaps.presence());
    await ownCaps.answer(own);
    await own.waitFor(isPublished(NICK, "Ann 1"), 5000, "own last nick");
    // Eve advertises nick+notify but is not a contact: the presence model keeps her out.
    const eveCaps = Caps.of([`${NICK}+notify`], "Eve's client");
    e.send(eveCaps.presence());
    await eveCaps.answer(e);
    await e.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
    // Three publishes sent back to back: each interested resource gets each, in order.
    const ids = ["n2", "n3", "n4"].map((id) => {
      a.send(`<iq type='set' id='${id}'>${publishXml(NICK, nick(`Ann ${id}`), { id })}</iq>`);
      return id;
    });
    for (const id of ids) {
      const r = await a.waitFor((x) => x.name === "iq" && x.attrs.id === id);
      assert.equal(r.attrs.type, "result", `${r}`);
    }
    for (const c of [b, own]) {
      const got: string[] = [];
      for (const id of ids) {
        const n = await c.waitFor(isItemsEvent(NICK, ANN), 5000, `${c.jid} nick ${id}`);
        assert.equal(n.attrs.type, "headline");
        assert.equal(n.attrs.to, c.jid);
        const item = eventOf(n)!.child("items")!.elements("item");
        assert.equal(item.length, 1, `${n}`);
        got.push(`${item[0].attrs.id} ${payloadOf(item[0]).text()}`);
      }
      assert.deepEqual(got, ids.map((id) => `${id} Ann ${id}`), `order at ${c.jid}`);
    }
    // Everything sent before a later message has arrived with it: nothing more at Bob's
    // interested resource (once each), no nick at the quiet one, nothing at Eve's, and no other
    // node's item where it was not asked for.
    for (const c of [b, quiet, own, e]) await marker(a, c);
    assert.deepEqual(pendingEvents(b, NICK).map(String), [], "one notification per publish");
    assert.deepEqual(pendingEvents(quiet, NICK).map(String), [], "no +notify, no nick");
    assert.deepEqual(pendingEvents(e, NICK).map(String), [], "not a contact");
    assert.deepEqual(pendingEvents(b, other).map(String), [], "other node not asked for");
    for (const c of [a, b, quiet, own, e]) c.close();
  },
);

withServer(
  "last items on coming online; a verified ver is cached, one that does not verify is not",
  {},
  async (t) => {
    for (const u of ["ann", "bob"]) await t.addUser(u);
    const a = await login(t, "ann", "a");
    const setup = await login(t, "bob", "setup");
    for (const c of [a, setup]) c.send("<presence/>");
    await befriend(a, setup);
    setup.close();
    const silent = "urn:example:silent";
    await published(a, NICK, nick("Ann"));
    await published(a, silent, entry(silent, "s"), {
      options: { "pubsub#send_last_published_item": "never" },
    });
    const caps = Caps.of([`${NICK}+notify`, `${silent}+notify`]);
    // First resource: unknown ver, so the server asks, then sends the last nick.
    const one = await login(t, "bob", "one");
    one.send(caps.presence());
    await caps.answer(one);
    const last = await one.waitFor(isPublished(NICK, "Ann"), 5000, "last nick at one");
    assert.equal(last.attrs.from, ANN);
    assert.equal(last.attrs.to, one.jid);
    // Second resource, same ver: no query, the last nick straight away.
    const two = await login(t, "bob", "two");
    two.send(caps.presence());
    await two.waitFor(isPublished(NICK, "Ann"), 5000, "last nick at two");
    await two.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
    assert.equal(two.received.filter(caps.isQuery).length, 0, "the ver was cached");
    // A ver that does not match the features answered: asked again for each resource, and the
    // resources claiming nick+notify through it get nothing.
    const liarCaps = Caps.of([`${NICK}+notify`], "liar", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    const liars: RawClient[] = [];
    for (const r of ["liar1", "liar2"]) {
      const l = await login(t, "bob", r);
      l.send(liarCaps.presence());
      await liarCaps.answer(l);
      await l.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
      liars.push(l);
    }
    await published(a, NICK, nick("Ann again"));
    for (const c of [one, two]) await c.waitFor(isPublished(NICK, "Ann again"), 5000, c.jid);
    for (const c of [one, two, ...liars]) await marker(a, c);
    for (const l of liars) {
      assert.deepEqual(pendingEvents(l, NICK).map(String), [], `${l.jid}: unverified ver`);
    }
    // send_last_published_item=never: no last item of that node on coming online.
    for (const c of [one, two]) {
      assert.deepEqual(pendingEvents(c, silent).map(String), [], "never sent as last item");
      assert.deepEqual(pendingEvents(c, NICK).map(String), [], "each nick once");
    }
    for (const c of [a, one, two, ...liars]) c.close();
  },
);

withServer(
  "what one client adds to the shared caps store is bounded: 8 new vers a session, no giant sets",
  {},
  async (t) => {
    await t.addUser("ann");
    const c = await login(t, "ann", "many");
    // A client cycling through new (valid) vers is asked about the first 8 only (checked at the
    // end, after the round trips below).
    const unasked: Caps[] = [];
    for (let i = 0; i < 10; i++) {
      const caps = Caps.of([`urn:example:f${i}+notify`], `cycle ${i}`);
      c.send(caps.presence());
      if (i < 8) await caps.answer(c);
      else unasked.push(caps);
    }
    // A feature set beyond what a client has (600 features) verifies but is not kept: a second
    // resource presenting it is asked again.
    const giant = Caps.of(Array.from({ length: 600 }, (_, i) => `urn:example:g${i}`), "giant");
    for (const r of ["g1", "g2"]) {
      const g = await login(t, "ann", r);
      g.send(giant.presence());
      await giant.answer(g);
      await g.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
      g.close();
    }
    await c.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
    for (const caps of unasked) {
      assert.equal(c.received.filter(caps.isQuery).length, 0, `${caps.ver} was asked about`);
    }
    c.close();
  },
);

withServer("limits: nodes per account, item size, items per node", {
  pep: { max_nodes: 3, max_items: 5, max_item_size: 1024 },
}, async (t) => {
  await t.addUser("ann");
  const a = await login(t, "ann", "a");
  // max_items asked beyond the limit, as a number or "max": capped at 5.
  const hundred = "urn:example:hundred";
  const max = "urn:example:max";
  await published(a, hundred, entry(hundred, "0"), {
    id: "0",
    options: { "pubsub#max_items": "100" },
  });
  await published(a, max, entry(max, "0"), { id: "0", options: { "pubsub#max_items": "max" } });
  for (let i = 1; i < 7; i++) {
    await published(a, hundred, entry(hundred, `${i}`), { id: `${i}` });
    await published(a, max, entry(max, `${i}`), { id: `${i}` });
  }
  for (const node of [hundred, max]) {
    assert.deepEqual(idsOf(await items(a, node)), ["2", "3", "4", "5", "6"], node);
  }
  // An item's payload beyond 1024 bytes is refused; one well under passes.
  const big = "urn:example:big";
  await published(a, big, entry(big, "x".repeat(500)), { id: "small" });
  const tooBig = await publish(a, big, entry(big, "x".repeat(2000)), { id: "large" });
  const err = pubsubError(tooBig);
  assert.equal(err.type, "error", `${tooBig}`);
  assert.equal(err.condition, "not-acceptable", `${tooBig}`);
  assert.equal(err.pubsub, "payload-too-big", `${tooBig}`);
  assert.deepEqual(idsOf(await items(a, big)), ["small"]);
  // A fourth node is refused, and not created.
  const fourth = "urn:example:fourth";
  const over = await publish(a, fourth, entry(fourth, "x"));
  assert.deepEqual(pubsubError(over), {
    type: "error",
    errorType: "cancel",
    condition: "not-allowed",
    pubsub: "max-nodes-exceeded",
  }, `${over}`);
  assert.equal(pubsubError(await items(a, fourth)).condition, "item-not-found");
  // Once one is deleted, there is room again.
  const del = await ownerIq(a, "set", `<delete node='${big}'/>`);
  assert.equal(del.attrs.type, "result", `${del}`);
  await published(a, fourth, entry(fourth, "x"));
  a.close();
});

withServer(
  "explicit subscriptions: items, retract with notify, purge and delete events; errors",
  {},
  async (t) => {
    for (const u of ["ann", "eve"]) await t.addUser(u);
    const a = await login(t, "ann", "a");
    const e = await login(t, "eve", "e");
    for (const c of [a, e]) c.send("<presence/>");
    const feed = "urn:example:feed";
    const opts = { "pubsub#access_model": "open", "pubsub#max_items": "10" };
    await published(a, feed, entry(feed, "one"), { id: "i1", options: opts });
    // Eve (no roster relation) subscribes her full JID to the open node.
    const sub = await e.iq(
      "set",
      `<pubsub xmlns='${PUBSUB}'><subscribe node='${feed}' jid='${e.jid}'/></pubsub>`,
      ANN,
    );
    assert.equal(sub.attrs.type, "result", `${sub}`);
    const s = sub.child("pubsub", PUBSUB)!.child("subscription")!;
    assert.equal(s.attrs.node, feed);
    assert.equal(s.attrs.jid, e.jid);
    assert.equal(s.attrs.subscription, "subscribed");
    // on_sub_and_presence (the default): the last item on subscribing.
    await e.waitFor(isPublished(feed, "one", ANN), 5000, "last item on subscription");
    // Someone else's JID cannot be subscribed.
    const forOther = await e.iq(
      "set",
      `<pubsub xmlns='${PUBSUB}'><subscribe node='${feed}' jid='bob@localhost'/></pubsub>`,
      ANN,
    );
    assert.equal(forOther.attrs.type, "error", `${forOther}`);
    // The owner lists the subscriptions.
    const subs = await ownerIq(a, "get", `<subscriptions node='${feed}'/>`);
    assert.equal(subs.attrs.type, "result", `${subs}`);
    assert.deepEqual(
      subs.child("pubsub", PUBSUB_OWNER)!.child("subscriptions")!.elements("subscription")
        .map((x) => `${x.attrs.jid} ${x.attrs.subscription}`),
      [`${e.jid} subscribed`],
    );
    await published(a, feed, entry(feed, "two"), { id: "i2", options: opts });
    const n = await e.waitFor(isPublished(feed, "two", ANN), 5000, "item i2");
    assert.equal(n.attrs.to, e.jid);
    assert.equal(eventOf(n)!.child("items")!.child("item")!.attrs.id, "i2");
    // Retract with notify: the subscriber gets <retract id/>.
    const r = await retract(a, feed, "i1", { notify: true });
    assert.equal(r.attrs.type, "result", `${r}`);
    const rn = await e.waitFor(
      (x) => isItemsEvent(feed, ANN)(x) && !!eventOf(x)!.child("items")!.child("retract"),
      5000,
      "retract event",
    );
    assert.equal(eventOf(rn)!.child("items")!.child("retract")!.attrs.id, "i1");
    assert.deepEqual(idsOf(await items(a, feed)), ["i2"]);
    // Only the owner publishes, retracts, purges, deletes.
    const forbidden = [
      await publish(e, feed, entry(feed, "intruder"), { id: "x", to: ANN }),
      await retract(e, feed, "i2", { to: ANN }),
      await ownerIq(e, "set", `<purge node='${feed}'/>`, ANN),
      await ownerIq(e, "set", `<delete node='${feed}'/>`, ANN),
    ];
    for (const f of forbidden) assert.equal(pubsubError(f).condition, "forbidden", `${f}`);
    assert.deepEqual(idsOf(await items(e, feed, { to: ANN })), ["i2"]);
    // Purge: every item gone, the subscriber told.
    const purge = await ownerIq(a, "set", `<purge node='${feed}'/>`);
    assert.equal(purge.attrs.type, "result", `${purge}`);
    const pn = await e.waitFor((x) => !!eventOf(x)?.child("purge"), 5000, "purge event");
    assert.equal(eventOf(pn)!.child("purge")!.attrs.node, feed);
    assert.deepEqual(idsOf(await items(a, feed)), []);
    // Delete: the subscriber told, the node gone.
    const del = await ownerIq(a, "set", `<delete node='${feed}'/>`);
    assert.equal(del.attrs.type, "result", `${del}`);
    const dn = await e.waitFor((x) => !!eventOf(x)?.child("delete"), 5000, "delete event");
    assert.equal(eventOf(dn)!.child("delete")!.attrs.node, feed);
    assert.equal(pubsubError(await items(a, feed)).condition, "item-not-found");
    assert.equal(
      pubsubError(await items(e, "urn:example:nothing", { to: ANN })).condition,
      "item-not-found",
    );
    // pubsub#notify_retract on: retractions are notified without notify='true'.
    const feed3 = "urn:example:feed3";
    const retracting = { ...opts, "pubsub#notify_retract": "true" };
    await published(a, feed3, entry(feed3, "r1"), { id: "r1", options: retracting });
    await published(a, feed3, entry(feed3, "r2"), { id: "r2", options: retracting });
    const sub3 = await e.iq(
      "set",
      `<pubsub xmlns='${PUBSUB}'><subscribe node='${feed3}' jid='${e.jid}'/></pubsub>`,
      ANN,
    );
    assert.equal(sub3.attrs.type, "result", `${sub3}`);
    assert.equal((await retract(a, feed3, "r1")).attrs.type, "result");
    await e.waitFor(isEventOn(feed3, "retract", "r1"), 5000, "retract by configuration");
    // Unsubscribe: no more notifications.
    const feed2 = "urn:example:feed2";
    await published(a, feed2, entry(feed2, "first"), { options: opts });
    const sub2 = await e.iq(
      "set",
      `<pubsub xmlns='${PUBSUB}'><subscribe node='${feed2}' jid='${e.jid}'/></pubsub>`,
      ANN,
    );
    assert.equal(sub2.attrs.type, "result", `${sub2}`);
    const unsub = await e.iq(
      "set",
      `<pubsub xmlns='${PUBSUB}'><unsubscribe node='${feed2}' jid='${e.jid}'/></pubsub>`,
      ANN,
    );
    assert.equal(unsub.attrs.type, "result", `${unsub}`);
    await published(a, feed2, entry(feed2, "second"), { options: opts });
    await marker(a, e);
    assert.ok(
      !e.received.some(isPublished(feed2, "second")),
      "no notification after unsubscribing",
    );
    a.close();
    e.close();
  },
);

withServer("owner configuration: default, configure get and set", {}, async (t) => {
  for (const u of ["ann", "eve"]) await t.addUser(u);
  const a = await login(t, "ann", "a");
  const e = await login(t, "eve", "e");
  const fieldValue = (answer: Element, where: string, v: string) => {
    assert.equal(answer.attrs.type, "result", `${answer}`);
    const x = answer.child("pubsub", PUBSUB_OWNER)!.child(where)!.child("x", NS.dataForms)!;
    const fields = x.elements("field");
    assert.equal(fields.find((f) => f.attrs.var === "FORM_TYPE")?.childText("value"), NODE_CONFIG);
    return fields.find((f) => f.attrs.var === v)?.childText("value");
  };
  const def = await ownerIq(a, "get", "<default/>");
  assert.equal(fieldValue(def, "default", "pubsub#access_model"), "presence");
  const node = "urn:example:configured";
  await published(a, node, entry(node, "c"));
  const conf = await ownerIq(a, "get", `<configure node='${node}'/>`);
  assert.equal(fieldValue(conf, "configure", "pubsub#access_model"), "presence");
  assert.equal(pubsubError(await items(e, node, { to: ANN })).condition, "not-authorized");
  const set = await ownerIq(
    a,
    "set",
    `<configure node='${node}'>${form(NODE_CONFIG, { "pubsub#access_model": "open" })}</configure>`,
  );
  assert.equal(set.attrs.type, "result", `${set}`);
  const after = await ownerIq(a, "get", `<configure node='${node}'/>`);
  assert.equal(fieldValue(after, "configure", "pubsub#access_model"), "open");
  assert.deepEqual(textsOf(await items(e, node, { to: ANN })), ["c"]);
  // The new configuration is what publish-options are checked against now.
  await published(a, node, entry(node, "d"), { options: { "pubsub#access_model": "open" } });
  const foreign = await ownerIq(e, "get", `<configure node='${node}'/>`, ANN);
  assert.equal(pubsubError(foreign).condition, "forbidden", `${foreign}`);
  a.close();
  e.close();
});

const BOOKMARKS = "urn:xmpp:bookmarks:1";
const BM_OPTIONS = {
  "pubsub#persist_items": "true",
  "pubsub#max_items": "max",
  "pubsub#send_last_published_item": "never",
  "pubsub#access_model": "whitelist",
};
const truthy = (v: string | undefined) => v === "true" || v === "1";

/** The conferences of a private XML get of storage:bookmarks, by JID. */
async function privateBookmarks(c: RawClient) {
  const r = await c.iq(
    "get",
    `<query xmlns='${NS.private}'><storage xmlns='storage:bookmarks'/></query>`,
  );
  assert.equal(r.attrs.type, "result", `${r}`);
  const storage = r.child("query", NS.private)!.child("storage", "storage:bookmarks")!;
  return confs(storage);
}

function confs(storage: Element) {
  return Object.fromEntries(
    storage.elements("conference").map((c) => [c.attrs.jid, {
      name: c.attrs.name,
      autojoin: truthy(c.attrs.autojoin),
      nick: c.childText("nick"),
      password: c.childText("password"),
    }]),
  );
}

withServer(
  "bookmarks: private XML, XEP-0402 and XEP-0048 over PEP share one list",
  {},
  async (t) => {
    await t.addUser("ann");
    const a = await login(t, "ann", "a");
    a.send("<presence/>");
    // A second client of Ann's interested in bookmarks (and nicks, so it knows its caps are in).
    await published(a, NICK, nick("Ann"));
    const watcher = await login(t, "ann", "watcher");
    const caps = Caps.of([`${BOOKMARKS}+notify`, `${NICK}+notify`]);
    watcher.send(caps.presence());
    await caps.answer(watcher);
    await watcher.waitFor(isPublished(NICK, "Ann"), 5000, "last nick");
    // XEP-0049: a private set of storage:bookmarks becomes XEP-0402 items.
    const room = "room@conference.example";
    const set = await a.iq(
      "set",
      `<query xmlns='${NS.private}'><storage xmlns='storage:bookmarks'>` +
        `<conference jid='${room}' name='R' autojoin='true'><nick>n</nick></conference>` +
        `</storage></query>`,
    );
    assert.equal(set.attrs.type, "result", `${set}`);
    const bm = itemsOf(await items(a, BOOKMARKS));
    assert.deepEqual(bm.map((i) => i.attrs.id), [room]);
    const conf = payloadOf(bm[0]);
    assert.equal(conf.name, "conference");
    assert.equal(conf.attrs.xmlns, BOOKMARKS);
    assert.equal(conf.attrs.name, "R");
    assert.ok(truthy(conf.attrs.autojoin), `${conf}`);
    assert.equal(conf.childText("nick"), "n");
    await watcher.waitFor(
      isEventOn(BOOKMARKS, "item", room),
      5000,
      "bookmark notification",
    );
    // XEP-0402: a client publishes one; private XML and the legacy PEP node show both.
    const two = "two@conference.example";
    await published(
      a,
      BOOKMARKS,
      `<conference xmlns='${BOOKMARKS}' name='Two' autojoin='false'><nick>m</nick>` +
        `<password>pw</password></conference>`,
      { id: two, options: BM_OPTIONS },
    );
    const both = {
      [room]: { name: "R", autojoin: true, nick: "n", password: undefined },
      [two]: { name: "Two", autojoin: false, nick: "m", password: "pw" },
    };
    assert.deepEqual(await privateBookmarks(a), both);
    const legacy = itemsOf(await items(a, "storage:bookmarks"));
    assert.equal(legacy.length, 1, `${legacy}`);
    assert.equal(legacy[0].attrs.id, "current");
    const storage = payloadOf(legacy[0]);
    assert.equal(storage.attrs.xmlns, "storage:bookmarks");
    assert.deepEqual(confs(storage), both);
    // Bookmarks are private: the whitelist model keeps others out of both nodes.
    await t.addUser("eve");
    const e = await login(t, "eve", "e");
    for (const node of [BOOKMARKS, "storage:bookmarks"]) {
      const r = await items(e, node, { to: ANN });
      assert.equal(r.attrs.type, "error", `${node} read by another: ${r}`);
      assert.equal(pubsubError(r).pubsub, "closed-node", `${r}`);
    }
    e.close();
    // XEP-0048 over PEP: publishing the legacy node replaces the list.
    const three = "three@conference.example";
    await published(
      a,
      "storage:bookmarks",
      `<storage xmlns='storage:bookmarks'><conference jid='${three}' name='Three' autojoin='true'>` +
        `<nick>t</nick></conference></storage>`,
      {
        id: "current",
        options: { "pubsub#persist_items": "true", "pubsub#access_model": "whitelist" },
      },
    );
    assert.deepEqual(idsOf(await items(a, BOOKMARKS)), [three]);
    assert.deepEqual(await privateBookmarks(a), {
      [three]: { name: "Three", autojoin: true, nick: "t", password: undefined },
    });
    // A private set replaces the list again: a new bookmark published, a gone one retracted, both
    // notified.
    const four = "four@conference.example";
    const again = await a.iq(
      "set",
      `<query xmlns='${NS.private}'><storage xmlns='storage:bookmarks'>` +
        `<conference jid='${room}' name='R' autojoin='true'><nick>n</nick></conference>` +
        `<conference jid='${four}' name='Four'/></storage></query>`,
    );
    assert.equal(again.attrs.type, "result", `${again}`);
    assert.deepEqual(idsOf(await items(a, BOOKMARKS)).sort(), [four, room].sort());
    await watcher.waitFor(
      isEventOn(BOOKMARKS, "item", four),
      5000,
      "notification of the new bookmark",
    );
    await watcher.waitFor(
      isEventOn(BOOKMARKS, "retract", three),
      5000,
      "retraction of the removed bookmark",
    );
    a.close();
    watcher.close();
  },
);

const sha1hex = (b: Uint8Array) => createHash("sha1").update(b).digest("hex");
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
const photoOf = (p: Element) => p.child("x", "vcard-temp:x:update")?.childText("photo");
const noSpace = (s: string | undefined) => (s ?? "").replace(/\s+/g, "");

function image(): Uint8Array {
  const bytes = crypto.getRandomValues(new Uint8Array(300));
  bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]); // a PNG signature, for looks
  return bytes;
}

withServer("vCard photo ↔ XEP-0084 avatar, and XEP-0153 hashes in presence", {}, async (t) => {
  for (const u of ["ann", "bob"]) await t.addUser(u);
  const a = await login(t, "ann", "a");
  const b = await login(t, "bob", "b");
  for (const c of [a, b]) c.send("<presence/>");
  await befriend(a, b);
  const META = "urn:xmpp:avatar:metadata";
  const DATA = "urn:xmpp:avatar:data";
  // A vCard with a photo publishes the avatar's data and metadata.
  const img1 = image();
  const [id1, data1] = [sha1hex(img1), b64(img1)];
  const vset = await a.iq(
    "set",
    `<vCard xmlns='${NS.vcard}'><FN>Ann</FN><PHOTO><TYPE>image/png</TYPE>` +
      `<BINVAL>${data1}</BINVAL></PHOTO></vCard>`,
  );
  assert.equal(vset.attrs.type, "result", `${vset}`);
  let meta: Element[] = [];
  await eventually(async () => {
    const r = await items(a, META);
    meta = r.attrs.type === "result" ? itemsOf(r) : [];
    return meta.some((i) => i.attrs.id === id1);
  }, "the metadata of the vCard's photo");
  const info = payloadOf(meta.find((i) => i.attrs.id === id1)!).child("info")!;
  assert.equal(info.attrs.id, id1);
  assert.equal(info.attrs.bytes, `${img1.length}`);
  assert.equal(info.attrs.type, "image/png");
  const data = itemsOf(await items(a, DATA, { ids: [id1] }));
  assert.equal(data.length, 1);
  assert.equal(payloadOf(data[0]).attrs.xmlns, DATA);
  assert.equal(noSpace(payloadOf(data[0]).text()), data1);
  // Ann's presence carries the photo's hash (XEP-0153), stamped by the server; the contact's
  // view of the metadata is the same.
  a.send("<presence><status>with photo</status></presence>");
  const p1 = await b.waitFor(
    (x) =>
      x.name === "presence" && x.attrs.from === a.jid && x.childText("status") === "with photo",
  );
  assert.equal(photoOf(p1), id1, `${p1}`);
  assert.ok(idsOf(await items(b, META, { to: ANN })).includes(id1));
  // A new avatar published the XEP-0084 way becomes the vCard's photo (the rest kept).
  const img2 = image();
  const [id2, data2] = [sha1hex(img2), b64(img2)];
  await published(a, DATA, `<data xmlns='${DATA}'>${data2}</data>`, { id: id2 });
  await published(
    a,
    META,
    `<metadata xmlns='${META}'><info id='${id2}' bytes='${img2.length}' type='image/png' ` +
      `width='16' height='16'/></metadata>`,
    { id: id2 },
  );
  let vcard: Element | undefined;
  await eventually(async () => {
    vcard = (await a.iq("get", `<vCard xmlns='${NS.vcard}'/>`)).child("vCard");
    return noSpace(vcard?.child("PHOTO")?.childText("BINVAL")) === data2;
  }, "the vCard's photo replaced by the avatar");
  assert.equal(vcard!.child("PHOTO")!.childText("TYPE"), "image/png");
  assert.equal(vcard!.childText("FN"), "Ann");
  const seen = (await b.iq("get", `<vCard xmlns='${NS.vcard}'/>`, ANN)).child("vCard")!;
  assert.equal(noSpace(seen.child("PHOTO")?.childText("BINVAL")), data2);
  a.send("<presence><status>new photo</status></presence>");
  const p2 = await b.waitFor(
    (x) => x.name === "presence" && x.attrs.from === a.jid && x.childText("status") === "new photo",
  );
  assert.equal(photoOf(p2), id2, `${p2}`);
  // A hash the client put itself is left as it is, once.
  a.send(
    `<presence><status>mine</status><x xmlns='vcard-temp:x:update'><photo/></x></presence>`,
  );
  const p3 = await b.waitFor(
    (x) => x.name === "presence" && x.attrs.from === a.jid && x.childText("status") === "mine",
  );
  assert.equal(p3.elements("x").filter((x) => x.attrs.xmlns === "vcard-temp:x:update").length, 1);
  assert.equal(photoOf(p3), "", `${p3}`);
  a.close();
  b.close();
});

withServer("account removal removes the account's nodes and items", {
  hosts: [{ domain: "localhost", registration: true }],
  limits: { registrations_per_address: 10 },
}, async (t) => {
  for (const u of ["zoe", "eve"]) await t.addUser(u);
  const z = await login(t, "zoe", "z");
  const e = await login(t, "eve", "e");
  const open = "urn:example:public";
  await published(z, NICK, nick("Zoe"));
  await published(z, open, entry(open, "z"), { options: { "pubsub#access_model": "open" } });
  assert.deepEqual(textsOf(await items(e, open, { to: "zoe@localhost" })), ["z"]);
  const rm = await z.iq("set", `<query xmlns='${NS.register}'><remove/></query>`);
  assert.equal(rm.attrs.type, "result", `${rm}`);
  await z.waitClosed();
  // The same name registered again starts with no nodes.
  const c = await RawClient.connect(t.port);
  await c.open();
  const reg = await c.iq(
    "set",
    `<query xmlns='${NS.register}'><username>zoe</username><password>secret</password></query>`,
  );
  assert.equal(reg.attrs.type, "result", `${reg}`);
  c.close();
  const z2 = await login(t, "zoe", "z2");
  for (const node of [NICK, open]) {
    const r = await items(z2, node);
    assert.equal(pubsubError(r).condition, "item-not-found", `${node}: ${r}`);
  }
  assert.equal(
    pubsubError(await items(e, open, { to: "zoe@localhost" })).condition,
    "item-not-found",
  );
  const disco = await z2.iq("get", `<query xmlns='${NS.discoItems}'/>`, "zoe@localhost");
  assert.equal(disco.attrs.type, "result", `${disco}`);
  assert.deepEqual(disco.child("query")!.elements("item"), []);
  z2.close();
  e.close();
});

serverTest("nodes, items, subscriptions and verified capabilities survive a restart", async () => {
  let t = await startServer();
  try {
    for (const u of ["ann", "bob", "eve"]) await t.addUser(u);
    const a = await login(t, "ann", "a");
    const b = await login(t, "bob", "b");
    const e = await login(t, "eve", "e");
    for (const c of [a, b, e]) c.send("<presence/>");
    await befriend(a, b);
    const feed = "urn:example:kept";
    const opts = { "pubsub#access_model": "open", "pubsub#max_items": "10" };
    await published(a, NICK, nick("Ann"));
    await published(a, feed, entry(feed, "k1"), { id: "k1", options: opts });
    await published(a, feed, entry(feed, "k2"), { id: "k2", options: opts });
    const sub = await e.iq(
      "set",
      `<pubsub xmlns='${PUBSUB}'><subscribe node='${feed}' jid='${e.jid}'/></pubsub>`,
      ANN,
    );
    assert.equal(sub.attrs.type, "result", `${sub}`);
    const caps = Caps.of([`${NICK}+notify`]);
    b.send(caps.presence());
    await caps.answer(b);
    await b.waitFor(isPublished(NICK, "Ann"), 5000, "last nick");
    for (const c of [a, b, e]) c.close();
    t = await t.restart();
    const a2 = await login(t, "ann", "a");
    const e2 = await login(t, "eve", "e");
    for (const c of [a2, e2]) c.send("<presence/>");
    assert.deepEqual(textsOf(await items(e2, feed, { to: ANN })), ["k1", "k2"]);
    assert.deepEqual(textsOf(await items(a2, NICK)), ["Ann"]);
    // The ver learned before the restart is known: no query, the last nick straight away.
    const b2 = await login(t, "bob", "b2");
    b2.send(caps.presence());
    await b2.waitFor(isPublished(NICK, "Ann"), 5000, "last nick after the restart");
    await b2.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
    assert.equal(b2.received.filter(caps.isQuery).length, 0, "the ver was kept in the store");
    // Eve's subscription is kept.
    await published(a2, feed, entry(feed, "k3"), { id: "k3", options: opts });
    await e2.waitFor(isPublished(feed, "k3", ANN), 5000, "notification after the restart");
    for (const c of [a2, b2, e2]) c.close();
  } finally {
    await t.stop();
  }
});

withServer(
  "what clients send and expect: Conversations' options, lost access, blocking, transient nodes",
  {},
  async (t) => {
    const { a, b, e } = await trio(t);
    // Conversations publishes OMEMO with access open and notify_delete, and bookmarks with
    // XEP-0402's options plus notify_delete and notify_retract: accepted, on a new node and again.
    const open = { "pubsub#access_model": "open", "pubsub#notify_delete": "true" };
    const devices = "eu.siacs.conversations.axolotl.devicelist";
    for (let i = 0; i < 2; i++) {
      await published(a, devices, `<list xmlns='eu.siacs.conversations.axolotl'/>`, {
        id: "current",
        options: open,
      });
    }
    const conversationsBookmarks = {
      "pubsub#persist_items": "true",
      "pubsub#max_items": "max",
      "pubsub#send_last_published_item": "never",
      "pubsub#access_model": "whitelist",
      "pubsub#notify_delete": "true",
      "pubsub#notify_retract": "true",
      "pubsub#deliver_payloads": "true",
    };
    await published(
      a,
      "urn:xmpp:bookmarks:1",
      `<conference xmlns='urn:xmpp:bookmarks:1' name='R'><extensions><x xmlns='urn:example'/>` +
        `</extensions></conference>`,
      { id: "r@conference.example", options: conversationsBookmarks },
    );
    // A fixed field with a value this service does not have is a precondition that fails.
    const bad = await publish(a, devices, `<list xmlns='eu.siacs.conversations.axolotl'/>`, {
      id: "current",
      options: { "pubsub#deliver_payloads": "false" },
    });
    assert.equal(pubsubError(bad).pubsub, "precondition-not-met", `${bad}`);
    // A private-storage client rewriting the same list keeps the XEP-0402 client's extensions.
    const storage = `<storage xmlns='storage:bookmarks'><conference jid='r@conference.example' ` +
      `name='R' autojoin='false'/></storage>`;
    const set = await a.iq("set", `<query xmlns='${NS.private}'>${storage}</query>`);
    assert.equal(set.attrs.type, "result", `${set}`);
    const [kept] = itemsOf(await items(a, "urn:xmpp:bookmarks:1"));
    assert.ok(payloadOf(kept).child("extensions")?.child("x", "urn:example"), `${kept}`);

    // An explicit subscriber who can no longer read gets nothing: bob subscribes to a
    // presence-model node, then ann drops him from her roster.
    const feed = "urn:example:feed";
    await published(a, feed, entry(feed, "one"));
    const sub = await b.iq(
      "set",
      `<pubsub xmlns='${PUBSUB}'><subscribe node='${feed}' jid='${b.jid}'/></pubsub>`,
      ANN,
    );
    assert.equal(sub.attrs.type, "result", `${sub}`);
    await published(a, feed, entry(feed, "two"));
    await b.waitFor(isPublished(feed, "two"), 5000, "bob subscribed");
    const removed = await a.iq(
      "set",
      `<query xmlns='${NS.roster}'><item jid='bob@localhost' subscription='remove'/></query>`,
    );
    assert.equal(removed.attrs.type, "result", `${removed}`);
    await published(a, feed, entry(feed, "three"));
    await marker(a, b);
    assert.equal(b.received.filter(isPublished(feed, "three")).length, 0, "bob lost access");
    // Unsubscribing what one is not subscribed to: unexpected-request, not-subscribed.
    const un = await e.iq(
      "set",
      `<pubsub xmlns='${PUBSUB}'><unsubscribe node='${devices}' jid='${e.jid}'/></pubsub>`,
      ANN,
    );
    assert.deepEqual([pubsubError(un).condition, pubsubError(un).pubsub], [
      "unexpected-request",
      "not-subscribed",
    ]);

    // A subscriber that blocks the owner (XEP-0191) is not notified, and the owner gets no error.
    const eSub = await e.iq(
      "set",
      `<pubsub xmlns='${PUBSUB}'><subscribe node='${devices}' jid='${e.jid}'/></pubsub>`,
      ANN,
    );
    assert.equal(eSub.attrs.type, "result", `${eSub}`);
    const blocked = await e.iq(
      "set",
      `<block xmlns='${NS.blocking}'><item jid='ann@localhost'/></block>`,
    );
    assert.equal(blocked.attrs.type, "result", `${blocked}`);
    await published(
      a,
      devices,
      `<list xmlns='eu.siacs.conversations.axolotl'><device id='7'/></list>`,
      {
        id: "current",
      },
    );
    await marker(b, e);
    assert.equal(pendingEvents(e, devices).length, 1, "only the last item sent on subscribing");
    await marker(b, a);
    assert.equal(a.received.filter((s) => s.attrs.type === "error").length, 0, "no bounce");

    // A node that does not persist items keeps its newest only (the last published item).
    const transient = "urn:example:transient";
    for (const i of ["t1", "t2"]) {
      await published(a, transient, entry(transient, i), {
        id: i,
        options: { "pubsub#persist_items": "false", "pubsub#max_items": "10" },
      });
    }
    assert.deepEqual(idsOf(await items(a, transient)), ["t2"]);
    for (const c of [a, b, e]) c.close();
  },
);

withServer(
  "a presence sent with the bind, before the avatar hash is loaded, goes out stamped",
  {},
  async (t) => {
    for (const u of ["ann", "bob"]) await t.addUser(u);
    const a = await login(t, "ann", "a");
    const b = await login(t, "bob", "b");
    for (const c of [a, b]) c.send("<presence/>");
    await befriend(a, b);
    const png = Buffer.from("not really a png").toString("base64");
    const set = await a.iq(
      "set",
      `<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>${png}</BINVAL></PHOTO>` +
        `</vCard>`,
    );
    assert.equal(set.attrs.type, "result", `${set}`);
    a.close();
    // A new connection binds and sends its presence in one write: the hash is not cached for it
    // yet (the restart below drops every cache), so the presence waits for it, then goes.
    const r = await t.restart();
    const b2 = await login(r, "bob", "b2");
    b2.send("<presence/>");
    const c = await RawClient.connect(r.port);
    await c.open();
    assert.ok(await c.plain("ann", "secret"));
    await c.open();
    c.send(
      `<iq type='set' id='b1'><bind xmlns='${NS.bind}'><resource>quick</resource></bind></iq>` +
        "<presence/>",
    );
    const sha1 = createHash("sha1").update(Buffer.from(png, "base64")).digest("hex");
    const p = await b2.waitFor(
      (e) => e.name === "presence" && e.attrs.from === "ann@localhost/quick",
      5000,
      "ann's presence",
    );
    assert.equal(p.child("x", NS.vcardUpdate)?.childText("photo"), sha1, `${p}`);
    for (const x of [b, b2, c]) x.close();
  },
);
