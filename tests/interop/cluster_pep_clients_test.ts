// The Personal Eventing Protocol (XEP-0163) with real clients across a cluster of three `parley
// serve` processes sharing one PostgreSQL (tests/helpers/cluster.ts): slixmpp clients
// (tests/interop/pep_client.py: xep_0060, xep_0163, xep_0115, xep_0084, xep_0172, xep_0048 over
// xep_0049, xep_0054; Debian's slixmpp has no xep_0402, whose items go through xep_0060) and
// @xmpp/client over WebSocket and over TCP. alice's contacts are bob, dave and frank (subscribed
// both ways); carol and erin are strangers to her.
// - the account's disco#info advertises what PEP clients look for;
// - OMEMO: alice (n1) publishes her device list and a bundle, legacy and urn:xmpp:omemo:2, with
//   pubsub#access_model=open; carol (slixmpp, n3) and erin (@xmpp/client over WebSocket, n2)
//   read them;
// - bob (n2) advertises the device list's +notify in his caps and gets alice's new device list
//   within 100 ms of her publish result; dave (n3), without it, does not (a message sent after
//   arrives with no notification before it), though he gets her nickname's (his +notify);
// - bob logging in again, on n3, gets the current device list after his initial presence, his
//   caps known without a query (n3 never met his ver: the store's cache is shared);
// - the presence access model refuses carol (not-authorized, presence-subscription-required);
// - publish-options that differ from the node's: conflict, precondition-not-met, nothing
//   published;
// - bookmarks: private XML storage (XEP-0049/0048) on n1 read as urn:xmpp:bookmarks:1 on n2;
//   XEP-0402 published on n2 read through private storage and the storage:bookmarks node on n3;
// - avatars: a vCard photo set on n1 is XEP-0084 data and metadata for frank (@xmpp/client, TCP,
//   n2); an XEP-0084 avatar published on n2 is the vCard photo on n3 and the XEP-0153 hash in
//   alice's next presence;
// - everything is still there after a full restart of the three nodes, read on each, and bob's
//   caps are not asked again.
// One cluster for all (steps of one test, which stops it).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { TestCluster } from "../helpers/cluster.ts";
import { eventually } from "../helpers/until.ts";
import {
  canon,
  DOMAIN,
  type Item,
  JsPep,
  pepCluster,
  PUBSUB,
  PUBSUB_ERRORS,
  type PyError,
  PyPep,
  tcpService,
  wsService,
} from "../helpers/cluster_pep.ts";

const ALICE = `alice@${DOMAIN}`;
const AXOLOTL = "eu.siacs.conversations.axolotl";
const DEVICELIST = `${AXOLOTL}.devicelist`;
const bundleNode = (id: number) => `${AXOLOTL}.bundles:${id}`;
const OMEMO2 = "urn:xmpp:omemo:2";
const OMEMO2_DEVICES = `${OMEMO2}:devices`;
const OMEMO2_BUNDLES = `${OMEMO2}:bundles`;
const NICK = "http://jabber.org/protocol/nick";
const BOOKMARKS = "urn:xmpp:bookmarks:1";
const AVATAR_DATA = "urn:xmpp:avatar:data";
const AVATAR_METADATA = "urn:xmpp:avatar:metadata";
const OPEN = { "pubsub#access_model": "open" };

/** A deterministic base64 key of `n` bytes. */
const key = (seed: number, n = 33) =>
  btoa(String.fromCharCode(...Array.from({ length: n }, (_, i) => (seed * 31 + i * 7) & 0xff)));

const deviceList = (ids: number[]) =>
  `<list xmlns='${AXOLOTL}'>${ids.map((id) => `<device id='${id}'/>`).join("")}</list>`;

const bundle = (id: number) =>
  `<bundle xmlns='${AXOLOTL}'><signedPreKeyPublic signedPreKeyId='1'>${key(id)}` +
  `</signedPreKeyPublic><signedPreKeySignature>${key(id + 1, 64)}</signedPreKeySignature>` +
  `<identityKey>${key(id + 2)}</identityKey><prekeys>` +
  [1, 2, 3].map((k) => `<preKeyPublic preKeyId='${k}'>${key(id + 10 + k)}</preKeyPublic>`)
    .join("") +
  `</prekeys></bundle>`;

const omemo2Devices = (id: number) =>
  `<devices xmlns='${OMEMO2}'><device id='${id}' label='phone'/></devices>`;

const omemo2Bundle = (id: number) =>
  `<bundle xmlns='${OMEMO2}'><spk id='1'>${key(id)}</spk><spks>${key(id + 1, 64)}</spks>` +
  `<ik>${key(id + 2)}</ik><prekeys>` +
  [1, 2, 3].map((k) => `<pk id='${k}'>${key(id + 10 + k)}</pk>`).join("") +
  `</prekeys></bundle>`;

const DEVICE = 1_234_567;
const NEW_DEVICE = 7_654_321;
const DEVICE2 = 424_242;

// Two 1×1 PNG images.
const PNG1 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";
const PNG2 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
const sha1 = (b64: string) =>
  createHash("sha1").update(Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0))).digest("hex");
const bytesOf = (b64: string) => atob(b64).length;

/** What each step leaves for the next ones. */
interface Ctx {
  c: TestCluster;
  py: PyPep[];
  js: JsPep[];
  alice?: PyPep;
  carol?: PyPep;
  bob?: PyPep;
  dave?: PyPep;
  alice2?: PyPep;
  /** bob's caps ver (the same features every login). */
  bobVer?: string;
  /** alice's device list as it is now. */
  devices: number[];
  timings: string[];
}

/** Starts a slixmpp client and keeps it for the cleanup. */
async function py(
  ctx: Ctx,
  i: number,
  user: string,
  resource: string,
  opts: { notify?: string[]; presence?: boolean } = {},
): Promise<PyPep> {
  const p = await PyPep.start(ctx.c, i, user, resource, opts);
  ctx.py.push(p);
  return p;
}

async function js(ctx: Ctx, service: string, user: string, resource: string): Promise<JsPep> {
  const j = await JsPep.connect(service, user, resource);
  ctx.js.push(j);
  return j;
}

/** Stops these clients and forgets them. */
async function stopAll(ctx: Ctx, clients: (PyPep | JsPep | undefined)[]): Promise<void> {
  await Promise.all(clients.map((x) => x?.stop()));
  ctx.py = ctx.py.filter((x) => !clients.includes(x));
  ctx.js = ctx.js.filter((x) => !clients.includes(x));
}

/** One item `id` whose payload is `payload` (XML text), as `items` must be. */
function assertItems(items: Item[] | { error: PyError }, want: [string, string][], what: string) {
  assert.ok(Array.isArray(items), `${what}: refused: ${JSON.stringify(items)}`);
  assert.deepEqual(
    items,
    want.map(([id, payload]) => ({ id, payload: canon(payload) })),
    what,
  );
}

/** The error as XEP-0060 words it: condition, type, and one pubsub#errors child. */
function assertError(e: PyError, condition: string, type: string, app: string, what: string) {
  assert.equal(e.condition, condition, `${what}: ${JSON.stringify(e)}`);
  assert.equal(e.type, type, `${what}: ${JSON.stringify(e)}`);
  assert.deepEqual(e.app, [`{${PUBSUB_ERRORS}}${app}`], `${what}: ${JSON.stringify(e)}`);
}

Deno.test({
  name: "PEP across a 3-node cluster with slixmpp and @xmpp/client",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const started = performance.now();
    const c = await pepCluster(
      ["alice", "bob", "carol", "dave", "erin", "frank"],
      [["alice", "bob"], ["alice", "dave"], ["alice", "frank"]],
    );
    const ctx: Ctx = { c, py: [], js: [], devices: [], timings: [] };
    ctx.timings.push(`cluster formed in ${(performance.now() - started).toFixed(0)} ms`);
    // Each step builds on the ones before: after a failure the rest are not run.
    let failed = false;
    const step = (name: string, fn: () => Promise<void>) =>
      t.step({
        name,
        ignore: failed,
        sanitizeOps: false,
        sanitizeResources: false,
        fn: async () => {
          const t0 = performance.now();
          try {
            await fn();
          } catch (e) {
            failed = true;
            throw new Error(`${(e as Error).message}\n${serverLogs(c)}`, { cause: e });
          } finally {
            ctx.timings.push(`${name.slice(0, 50)}…: ${(performance.now() - t0).toFixed(0)} ms`);
          }
        },
      });
    try {
      await step(
        "the account's disco#info advertises PEP, publish-options, bookmarks compat and vCard conversion",
        () => discoInfo(ctx),
      );
      await step(
        "OMEMO: a device list and bundles published with access_model=open on n1 are read by non-contacts on n3 (slixmpp) and n2 (@xmpp/client over WebSocket)",
        () => omemo(ctx),
      );
      await step(
        "a contact on n2 with devicelist+notify gets a publish within 100 ms; one on n3 without it does not",
        () => notify(ctx),
      );
      await step(
        "a contact logging in again on another node gets the last item after initial presence, caps known cluster-wide",
        () => lastItem(ctx),
      );
      await step(
        "the presence access model refuses a non-contact with presence-subscription-required",
        () => presenceAccess(ctx),
      );
      await step(
        "publish-options differing from the node's configuration: conflict, precondition-not-met, nothing published",
        () => precondition(ctx),
      );
      await step(
        "bookmarks: private XML storage on n1 read as XEP-0402 on n2; XEP-0402 on n2 read through private storage and storage:bookmarks on n3",
        () => bookmarks(ctx),
      );
      await step(
        "avatars: a vCard photo set on n1 is XEP-0084 on n2; an XEP-0084 avatar published on n2 is the vCard photo on n3 and the presence hash",
        () => avatars(ctx),
      );
      await step(
        "after a full cluster restart every item is read on every node, and bob's caps are not asked again",
        () => restart(ctx),
      );
    } finally {
      await stopAll(ctx, [...ctx.py, ...ctx.js]);
      await c.stop();
      console.log(
        `  ${ctx.timings.join("\n  ")}\n  total ${(performance.now() - started).toFixed(0)} ms`,
      );
    }
  },
});

/** The nodes' log records worth seeing when a step fails: warnings and errors, PEP's. */
function serverLogs(c: TestCluster): string {
  const out: string[] = [];
  for (const [i, n] of c.nodes.entries()) {
    const records: Record<string, unknown>[] = n.process?.logs ??
      c.logs(i).map((message) => ({ message }));
    const lines = records
      .filter((r) =>
        /warn|error|fatal/i.test(String(r.level)) || /pep|pubsub|caps/i.test(String(r.message))
      )
      .slice(-15)
      .map((r) =>
        `${r.level ?? ""} ${r.message ?? r.raw} ${
          r.properties ? JSON.stringify(r.properties).slice(0, 1500) : ""
        }`
      );
    if (lines.length) out.push(`${n.name}:\n    ${lines.join("\n    ")}`);
  }
  return out.join("\n");
}

async function discoInfo(ctx: Ctx): Promise<void> {
  ctx.alice = await py(ctx, 0, "alice", "phone");
  const info = await ctx.alice.ok("disco_info", { jid: ALICE });
  const features = info.features as string[];
  const want = [
    `${PUBSUB}#publish`,
    `${PUBSUB}#publish-options`,
    `${PUBSUB}#auto-create`,
    `${PUBSUB}#persistent-items`,
    `${PUBSUB}#last-published`,
    `${PUBSUB}#retrieve-items`,
    `${PUBSUB}#access-open`,
    `${PUBSUB}#access-presence`,
    "urn:xmpp:bookmarks:1#compat",
    "urn:xmpp:pep-vcard-conversion:0",
  ];
  assert.deepEqual(want.filter((f) => !features.includes(f)), [], `missing in ${features}`);
  const identities = info.identities as string[][];
  assert.ok(
    identities.some(([category, type]) => category === "pubsub" && type === "pep"),
    `no pubsub/pep identity: ${JSON.stringify(identities)}`,
  );
}

async function omemo(ctx: Ctx): Promise<void> {
  const { c } = ctx;
  const alice = ctx.alice!;
  const [carol, erin] = await Promise.all([
    py(ctx, 2, "carol", "pc"),
    js(ctx, wsService(c, 1), "erin", "browser"),
  ]);
  ctx.carol = carol;
  // As Conversations does: the device list, then the bundle, each with access_model=open.
  ctx.devices = [DEVICE];
  const published = [
    await alice.ok("publish", {
      node: DEVICELIST,
      item_id: "current",
      payload: deviceList(ctx.devices),
      options: OPEN,
    }),
    await alice.ok("publish", {
      node: bundleNode(DEVICE),
      item_id: "current",
      payload: bundle(DEVICE),
      options: OPEN,
    }),
    // OMEMO 2: one bundle item per device in a node keeping as many as there are.
    await alice.ok("publish", {
      node: OMEMO2_DEVICES,
      item_id: "current",
      payload: omemo2Devices(DEVICE2),
      options: OPEN,
    }),
    await alice.ok("publish", {
      node: OMEMO2_BUNDLES,
      item_id: String(DEVICE2),
      payload: omemo2Bundle(DEVICE2),
      options: { ...OPEN, "pubsub#max_items": "max" },
    }),
  ];
  assert.deepEqual(
    published.map((p) => p.item_id),
    ["current", "current", "current", String(DEVICE2)],
    "the item ids in the publish results",
  );
  // carol, no contact of alice's, on n3 with slixmpp.
  assertItems(
    await carol.items(ALICE, DEVICELIST),
    [["current", deviceList([DEVICE])]],
    "device list read by carol (n3)",
  );
  assertItems(
    await carol.items(ALICE, bundleNode(DEVICE)),
    [["current", bundle(DEVICE)]],
    "bundle read by carol (n3)",
  );
  assertItems(
    await carol.items(ALICE, OMEMO2_DEVICES),
    [["current", omemo2Devices(DEVICE2)]],
    "OMEMO 2 devices read by carol (n3)",
  );
  assertItems(
    await carol.items(ALICE, OMEMO2_BUNDLES, { ids: [String(DEVICE2)] }),
    [[String(DEVICE2), omemo2Bundle(DEVICE2)]],
    "OMEMO 2 bundle read by carol (n3)",
  );
  // erin, another stranger, with @xmpp/client over WebSocket on n2.
  assertItems(
    await erin.items(ALICE, DEVICELIST),
    [["current", deviceList([DEVICE])]],
    "device list read by erin (@xmpp/client, WebSocket, n2)",
  );
  assertItems(
    await erin.items(ALICE, bundleNode(DEVICE)),
    [["current", bundle(DEVICE)]],
    "bundle read by erin (@xmpp/client, WebSocket, n2)",
  );
  await stopAll(ctx, [erin]);
}

/** The server's caps queries (disco#info with node NODE#VER, from the domain) a client got. */
const capsQueries = (p: PyPep) =>
  p.of("disco_query").filter((l) => l.frm === DOMAIN && String(l.node).includes("#"));

async function notify(ctx: Ctx): Promise<void> {
  const alice = ctx.alice!;
  // Both contacts of alice's; both advertise +notify for nicknames and avatar metadata (slixmpp's
  // plugins do), bob also for the device list.
  const [bob, dave] = await Promise.all([
    py(ctx, 1, "bob", "laptop", { notify: [DEVICELIST] }),
    py(ctx, 2, "dave", "desk"),
  ]);
  ctx.bob = bob;
  ctx.dave = dave;
  ctx.bobVer = bob.ver;
  assert.notEqual(bob.ver, dave.ver, "bob's and dave's caps are the same");
  // dave's features are alice's (known since her login); bob's ver is new: the server asks him
  // (once), then sends him the device list he is interested in (the last item) after his initial
  // presence.
  await bob.waitLine(
    (l) => l.event === "disco_query" && l.frm === DOMAIN,
    "the server's caps query",
  );
  const first = await bob.waitLine(
    (l) => l.event === "pep" && l.node === DEVICELIST,
    "alice's device list (last item, at initial presence)",
  );
  const sentAt = bob.of("presence_sent")[0].index;
  assert.ok(first.index > sentAt, "the device list came before bob's initial presence");
  // Both get alice's nickname: the server knows their caps and sends them what they asked for.
  // (Once alice saw them online: a session's presence reaches the other nodes a little later.)
  for (const p of [bob, dave]) {
    await alice.waitLine(
      (l) => l.event === "presence" && l.frm === p.jid && l.type === "available",
      `${p.jid} online`,
    );
  }
  await alice.ok("nick", { nick: "Alice" });
  for (const p of [bob, dave]) {
    await p.waitLine((l) => l.event === "pep" && l.node === NICK, "alice's nickname");
  }
  // The new device list: bob (n2) within 100 ms of alice's publish result (n1), on one clock.
  ctx.devices = [DEVICE, NEW_DEVICE];
  const payload = canon(deviceList(ctx.devices));
  const result = await alice.ok("publish", {
    node: DEVICELIST,
    item_id: "current",
    payload: deviceList(ctx.devices),
    options: OPEN,
  });
  const isNew = (l: { event?: string; node?: unknown; items?: unknown }) =>
    l.event === "pep" && l.node === DEVICELIST &&
    JSON.stringify(l.items) === JSON.stringify([{ id: "current", payload }]);
  const event = await bob.waitLine(isNew, "alice's new device list");
  const ms = (Number(event.t) - Number(result.t)) * 1000;
  ctx.timings.push(
    `device list publish result (n1) to bob's notification (n2): ${ms.toFixed(1)} ms`,
  );
  assert.ok(ms < 100, `bob got the notification ${ms.toFixed(1)} ms after the publish result`);
  assert.equal(event.frm, ALICE);
  assert.equal(event.to, bob.jid);
  // A message from alice to each after the publish: dave's comes with no device list before it
  // (nor ever since he logged in), bob's after exactly one notification of the new list.
  await alice.ok("message", { to: dave.jid, body: "marker-2" });
  await alice.ok("message", { to: bob.jid, body: "marker-2" });
  const [dm, bm] = [
    await dave.waitLine((l) => l.event === "message" && l.body === "marker-2", "marker-2"),
    await bob.waitLine((l) => l.event === "message" && l.body === "marker-2", "marker-2"),
  ];
  assert.deepEqual(
    dave.pep(DEVICELIST),
    [],
    `dave, without devicelist+notify, got device lists before ${JSON.stringify(dm)}`,
  );
  assert.equal(
    bob.lines.filter((l) => isNew(l) && l.index < bm.index).length,
    1,
    `bob: notifications of the new list\n${bob.diagnostics()}`,
  );
  assert.deepEqual(
    capsQueries(bob).map((q) => q.node),
    [`http://slixmpp.com/ver/1.8.3#${bob.ver}`],
    `the caps queries bob got\n${bob.diagnostics()}`,
  );
}

async function lastItem(ctx: Ctx): Promise<void> {
  await stopAll(ctx, [ctx.bob]);
  // On n3 now, which never needed his caps (n2 learned them; n1, alice's node, read them from the
  // store to notify him): the ver is known from the shared store, not asked again.
  const bob = ctx.bob = await py(ctx, 2, "bob", "laptop", { notify: [DEVICELIST] });
  assert.equal(bob.ver, ctx.bobVer);
  const event = await bob.waitLine(
    (l) => l.event === "pep" && l.node === DEVICELIST,
    "alice's current device list at initial presence",
  ) as unknown as { index: number; items: Item[]; frm: string };
  assert.ok(event.index > bob.of("presence_sent")[0].index, "before the initial presence");
  assert.deepEqual(event.items, [{ id: "current", payload: canon(deviceList(ctx.devices)) }]);
  assert.equal(event.frm, ALICE);
  // Had the server asked for his caps, the question would be here before a message sent now.
  await ctx.alice!.ok("message", { to: bob.jid, body: "marker-3" });
  await bob.waitLine((l) => l.event === "message" && l.body === "marker-3", "marker-3");
  assert.deepEqual(capsQueries(bob), [], "bob's caps (known) were asked again");
  assert.equal(bob.pep(DEVICELIST).length, 1, "bob got the device list more than once");
}

async function presenceAccess(ctx: Ctx): Promise<void> {
  // The nickname was published with the default access model, presence.
  const err = await ctx.carol!.fails("items", { jid: ALICE, node: NICK });
  assertError(
    err,
    "not-authorized",
    "auth",
    "presence-subscription-required",
    "carol (no subscription) reading alice's nickname",
  );
  // A contact reads it (bob, on n3; alice is on n1).
  const items = await ctx.bob!.items(ALICE, NICK);
  assert.equal(items.length, 1, JSON.stringify(items));
  assert.equal(items[0].payload, canon(`<nick xmlns='${NICK}'>Alice</nick>`));
}

async function precondition(ctx: Ctx): Promise<void> {
  const [alice, bob, carol] = [ctx.alice!, ctx.bob!, ctx.carol!];
  const attempt = (options: Record<string, string>) =>
    alice.fails("publish", {
      node: DEVICELIST,
      item_id: "current",
      payload: deviceList([666]),
      options,
    });
  // The node was made open; a publish asking for presence must not change it, nor publish.
  assertError(
    await attempt({ "pubsub#access_model": "presence" }),
    "conflict",
    "cancel",
    "precondition-not-met",
    "access_model=presence on an open node",
  );
  assertError(
    await attempt({ ...OPEN, "pubsub#no_such_option": "1" }),
    "conflict",
    "cancel",
    "precondition-not-met",
    "an unknown publish-option",
  );
  assertItems(
    await carol.items(ALICE, DEVICELIST),
    [["current", deviceList(ctx.devices)]],
    "the device list after refused publishes (still open to carol)",
  );
  // Nobody was notified of the refused publishes.
  await alice.ok("message", { to: bob.jid, body: "marker-5" });
  const marker = await bob.waitLine((l) => l.event === "message" && l.body === "marker-5", "m5");
  const lists = bob.pep(DEVICELIST).filter((e) => e.index < marker.index);
  assert.equal(lists.length, 1, `bob's device lists: ${JSON.stringify(lists)}`);
}

async function bookmarks(ctx: Ctx): Promise<void> {
  const alice = ctx.alice!;
  const ROOM1 = `room1@conference.${DOMAIN}`;
  const ROOM2 = `room2@conference.${DOMAIN}`;
  // XEP-0048 over XEP-0049, from n1.
  await alice.ok("private_bookmarks_set", {
    conferences: [{ jid: ROOM1, name: "Room One", autojoin: true, nick: "Al", password: "pw1" }],
  });
  const [tablet, desktop] = await Promise.all([
    py(ctx, 1, "alice", "tablet"),
    py(ctx, 2, "alice", "desktop"),
  ]);
  ctx.alice2 = tablet;
  // As XEP-0402 items on n2: the item's id is the room.
  const items = await tablet.items(ALICE, BOOKMARKS);
  assert.deepEqual(items.map((i) => i.id), [ROOM1], JSON.stringify(items));
  const conf = parseCanon(items[0].payload!);
  assert.equal(conf.name, `{${BOOKMARKS}}conference`, items[0].payload!);
  assert.equal(conf.attrs.name, "Room One");
  assert.ok(["true", "1"].includes(conf.attrs.autojoin), `autojoin: ${items[0].payload}`);
  assert.equal(conf.child("nick"), "Al", items[0].payload!);
  assert.equal(conf.child("password"), "pw1", items[0].payload!);
  // XEP-0402 from n2, as its §5 says (whitelist, as many items as rooms).
  await tablet.ok("publish", {
    node: BOOKMARKS,
    item_id: ROOM2,
    payload: `<conference xmlns='${BOOKMARKS}' name='Room Two' autojoin='true'><nick>Al2</nick>` +
      `</conference>`,
    options: {
      "pubsub#persist_items": "true",
      "pubsub#max_items": "max",
      "pubsub#send_last_published_item": "never",
      "pubsub#access_model": "whitelist",
    },
  });
  // Through private storage on n3: both rooms.
  const got = (await desktop.ok("private_bookmarks_get")).conferences as Record<string, unknown>[];
  const byJid = (a: { jid?: unknown }, b: { jid?: unknown }) =>
    String(a.jid) < String(b.jid) ? -1 : 1;
  assert.deepEqual(got.sort(byJid), [
    { jid: ROOM1, name: "Room One", autojoin: true, nick: "Al", password: "pw1" },
    { jid: ROOM2, name: "Room Two", autojoin: true, nick: "Al2", password: null },
  ]);
  // And as the storage:bookmarks node (XEP-0048 over PEP, #compat-pep): one item, both rooms.
  const pep = await desktop.items(ALICE, "storage:bookmarks");
  assert.equal(pep.length, 1, JSON.stringify(pep));
  const storage = parseCanon(pep[0].payload!);
  assert.equal(storage.name, "{storage:bookmarks}storage", pep[0].payload!);
  assert.deepEqual(
    storage.children.map((k) => k.attrs.jid).sort(),
    [ROOM1, ROOM2],
    pep[0].payload!,
  );
  await stopAll(ctx, [desktop]);
}

async function avatars(ctx: Ctx): Promise<void> {
  const { c } = ctx;
  const [alice, tablet, dave] = [ctx.alice!, ctx.alice2!, ctx.dave!];
  const frank = await js(ctx, tcpService(c, 1), "frank", "web");
  // A vCard with a photo, from n1: published as XEP-0084 data and metadata once the vCard is
  // stored; dave (metadata+notify, by slixmpp's xep_0084) is notified of it on n3, and frank (a
  // contact) reads both on n2.
  await alice.ok("vcard_set", { fn: "Alice", photo: PNG1, photo_type: "image/png" });
  const id1 = sha1(PNG1);
  const info1 = `<info id='${id1}' bytes='${bytesOf(PNG1)}' type='image/png'/>`;
  const event = await dave.waitLine(
    (l) => l.event === "pep" && l.node === AVATAR_METADATA && JSON.stringify(l.items).includes(id1),
    "the metadata of alice's vCard photo",
  ) as unknown as { items: Item[] };
  assert.deepEqual(event.items, [{
    id: id1,
    payload: canon(`<metadata xmlns='${AVATAR_METADATA}'>${info1}</metadata>`),
  }]);
  assertItems(
    await frank.items(ALICE, AVATAR_METADATA),
    [[id1, `<metadata xmlns='${AVATAR_METADATA}'>${info1}</metadata>`]],
    "avatar metadata read by frank (@xmpp/client, n2)",
  );
  assertItems(
    await frank.items(ALICE, AVATAR_DATA),
    [[id1, `<data xmlns='${AVATAR_DATA}'>${PNG1}</data>`]],
    "avatar data read by frank (@xmpp/client, n2)",
  );
  // An XEP-0084 avatar from n2 (data, then metadata): the vCard's photo, read on n3 once the
  // conversion has stored it.
  const id2 = String((await tablet.ok("avatar", { data: PNG2, type: "image/png" })).id);
  assert.equal(id2, sha1(PNG2));
  const t0 = performance.now();
  let vcard: Record<string, unknown> = {};
  await eventually(
    async () => (vcard = await dave.ok("vcard_get", { jid: ALICE })).photo === PNG2,
    "alice's vCard photo to be the XEP-0084 avatar",
    5000,
  ).catch((e) => {
    throw new Error(`${e.message}: alice's vCard read by dave on n3: ${JSON.stringify(vcard)}`);
  });
  ctx.timings.push(`avatar publish to vCard photo: ${(performance.now() - t0).toFixed(0)} ms`);
  assert.equal(vcard.photo_type, "image/png");
  assert.equal(vcard.fn, "Alice", "the vCard's other fields are kept");
  // alice's next presence carries the new avatar's hash (XEP-0153), stamped by the server.
  const from = dave.lines.length;
  await alice.ok("presence");
  const presence = await dave.waitLine(
    (l) => l.index >= from && l.event === "presence" && l.frm === alice.jid,
    "alice's presence",
  );
  assert.equal(presence.photo, id2, `alice's presence seen by dave: ${JSON.stringify(presence)}`);
  await stopAll(ctx, [frank]);
}

async function restart(ctx: Ctx): Promise<void> {
  const { c } = ctx;
  await stopAll(ctx, [...ctx.py, ...ctx.js]);
  const t0 = performance.now();
  await Promise.all(c.nodes.map((_, i) => c.kill(i, "SIGTERM")));
  for (const i of c.nodes.keys()) await c.start(i);
  await c.formed();
  ctx.timings.push(`full restart: ${(performance.now() - t0).toFixed(0)} ms`);
  // A stranger on n1 (slixmpp), another on n2 (@xmpp/client, WebSocket), alice on n3, bob on n2.
  const [carol, erin, alice, bob] = await Promise.all([
    py(ctx, 0, "carol", "pc"),
    js(ctx, wsService(c, 1), "erin", "browser"),
    py(ctx, 2, "alice", "phone"),
    py(ctx, 1, "bob", "laptop", { notify: [DEVICELIST] }),
  ]);
  const list = deviceList(ctx.devices);
  assertItems(await carol.items(ALICE, DEVICELIST), [["current", list]], "device list on n1");
  assertItems(
    await carol.items(ALICE, bundleNode(DEVICE)),
    [["current", bundle(DEVICE)]],
    "bundle on n1",
  );
  assertItems(
    await carol.items(ALICE, OMEMO2_BUNDLES),
    [[String(DEVICE2), omemo2Bundle(DEVICE2)]],
    "OMEMO 2 bundles on n1",
  );
  assertItems(await erin.items(ALICE, DEVICELIST), [["current", list]], "device list on n2");
  assertItems(
    await erin.items(ALICE, OMEMO2_DEVICES),
    [["current", omemo2Devices(DEVICE2)]],
    "OMEMO 2 devices on n2 (@xmpp/client)",
  );
  const nick = await alice.items(ALICE, NICK);
  assert.equal(nick[0]?.payload, canon(`<nick xmlns='${NICK}'>Alice</nick>`), "nick on n3");
  const marks = await alice.items(ALICE, BOOKMARKS);
  assert.deepEqual(
    marks.map((i) => i.id).sort(),
    [`room1@conference.${DOMAIN}`, `room2@conference.${DOMAIN}`],
    "bookmarks on n3",
  );
  const meta = await alice.items(ALICE, AVATAR_METADATA);
  assert.deepEqual(meta.map((i) => i.id), [sha1(PNG2)], "avatar metadata on n3");
  const vcard = await alice.ok("vcard_get", { jid: ALICE });
  assert.equal(vcard.photo, PNG2, "vCard photo on n3");
  // bob's caps: known from the store, not asked again; the device list after his presence.
  assert.equal(bob.ver, ctx.bobVer);
  const event = await bob.waitLine(
    (l) => l.event === "pep" && l.node === DEVICELIST,
    "alice's device list at initial presence, after the restart",
  ) as unknown as { items: Item[] };
  assert.deepEqual(event.items, [{ id: "current", payload: canon(list) }]);
  await alice.ok("message", { to: bob.jid, body: "marker-8" });
  await bob.waitLine((l) => l.event === "message" && l.body === "marker-8", "marker-8");
  assert.deepEqual(capsQueries(bob), [], "bob's caps were asked again after the restart");
}

/** A canonical payload read back: name "{ns}local", attributes, children, a child's text. */
interface CanonEl {
  name: string;
  attrs: Record<string, string>;
  text: string;
  children: CanonEl[];
  child(local: string): string | undefined;
}

function parseCanon(s: string): CanonEl {
  let pos = 0;
  const parse = (): CanonEl => {
    const m = /^<(\{[^}]*\}[^\s>]+)((?: [^=\s]+='[^']*')*)>/.exec(s.slice(pos));
    if (!m) throw new Error(`not canonical at ${pos}: ${s}`);
    pos += m[0].length;
    const attrs: Record<string, string> = {};
    for (const a of m[2].matchAll(/ ([^=\s]+)='([^']*)'/g)) attrs[a[1]] = a[2];
    const textEnd = s.slice(pos).search(/<(\{|\/>)/);
    const text = s.slice(pos, pos + textEnd);
    pos += textEnd;
    const children: CanonEl[] = [];
    while (!s.startsWith("</>", pos)) children.push(parse());
    pos += 3;
    return {
      name: m[1],
      attrs,
      text,
      children,
      child: (local) => children.find((k) => k.name.endsWith(`}${local}`))?.text,
    };
  };
  return parse();
}
