// Multi-User Chat: what the service knows of rooms not in memory. disco#items lists hibernated
// public rooms and pages long lists (XEP-0059); `max_rooms_per_user` counts hibernated rooms;
// with rooms loaded on demand (a cluster's mode) a stanza for an unknown room reads nothing from
// storage, a room another node stored is found once its invalidation arrives, and a failed read
// is answered as the store's failure (a busy store: resource-constraint, type wait).
import assert from "node:assert/strict";
import { serverTest, startServer, type TestServer, withServer } from "../helpers/server.ts";
import { until } from "../helpers/until.ts";
import { NS } from "../../src/xml/ns.ts";
import type { Element } from "../../src/xml/element.ts";
import { MucService } from "../../src/muc/service.ts";
import { LocalRooms } from "../../src/muc/local_rooms.ts";
import { SharedCaches } from "../../src/core/caches.ts";
import { type MapStore, type Store, StoreBusyError, STORES } from "../../src/storage/store.ts";
import { DISCO_PAGE } from "../../src/muc/disco_items.ts";
import {
  accounts,
  createRoom,
  errorCondition,
  field,
  isPresence,
  join,
  MUC,
  mucServer,
  ownerSubmit,
} from "../helpers/muc.ts";

const RSM = "http://jabber.org/protocol/rsm";

const stored = (name: string, owner: string) =>
  JSON.stringify({
    config: { name, public: true, persistent: true },
    affiliations: { [owner]: "owner" },
    subject: { text: "", nick: "" },
  });

const itemsOf = (e: Element) => e.child("query")!.elements("item").map((i) => i.attrs.jid!);
const countOf = (e: Element) => e.child("query")!.child("set", RSM)?.childText("count");

withServer(
  "MUC: disco#items lists hibernated public rooms, and they count for max_rooms_per_user",
  mucServer({ hibernate_after: 1, max_rooms_per_user: 1 }),
  async (t) => {
    const [ann, bob] = await accounts(t, "ann", "bob");
    await join(ann, "kept", "Ann");
    await ownerSubmit(
      ann,
      "kept",
      field("muc#roomconfig_persistentroom", "1") + field("muc#roomconfig_roomname", "Kept"),
    );
    ann.send(`<presence to='kept@${MUC}/Ann' type='unavailable'/>`);
    await ann.waitFor(isPresence(`kept@${MUC}/Ann`, "unavailable"));
    const muc = t.server.mucs.get(MUC)!;
    await until(() => !muc.rooms.has("kept"), "the room hibernates");
    const items = await bob.iq("get", `<query xmlns='${NS.discoItems}'/>`, MUC);
    assert.deepEqual(
      items.child("query")!.elements("item").map((i) => [i.attrs.jid, i.attrs.name]),
      [[`kept@${MUC}`, "Kept"]],
    );
    assert.equal(countOf(items), undefined, "a short list is not paged");
    // Ann owns the hibernated room: it is her one room.
    const second = await join(ann, "second", "Ann");
    assert.equal(errorCondition(second), "not-allowed");
    assert.equal(muc.rooms.has("kept"), false, "counting loaded nothing");
  },
);

serverTest("MUC: disco#items answers at most a page and pages with RSM (XEP-0059)", async () => {
  let t = await startServer(mucServer());
  try {
    const total = DISCO_PAGE + 5;
    const names = Array.from({ length: total }, (_, i) => `r${String(i).padStart(3, "0")}`);
    for (const n of names) await saveRoom(t.server.store, MUC, n, stored(n, "x@localhost"));
    t = await t.restart();
    const [ann] = await accounts(t, "ann");
    await createRoom(ann, "hidden", "Ann");
    await ownerSubmit(ann, "hidden", field("muc#roomconfig_publicroom", "0"));
    const first = await ann.iq("get", `<query xmlns='${NS.discoItems}'/>`, MUC);
    assert.deepEqual(itemsOf(first), names.slice(0, DISCO_PAGE).map((n) => `${n}@${MUC}`));
    assert.equal(countOf(first), String(total));
    // Paging by the last JID seen, 40 at a time, gets every public room once.
    const seen: string[] = [];
    let after = "";
    for (;;) {
      const set = `<set xmlns='${RSM}'><max>40</max>${after && `<after>${after}</after>`}</set>`;
      const page = await ann.iq("get", `<query xmlns='${NS.discoItems}'>${set}</query>`, MUC);
      const got = itemsOf(page);
      if (got.length === 0) break;
      seen.push(...got);
      after = page.child("query")!.child("set", RSM)!.childText("last")!;
    }
    assert.deepEqual(seen, names.map((n) => `${n}@${MUC}`));
    const last = await ann.iq(
      "get",
      `<query xmlns='${NS.discoItems}'><set xmlns='${RSM}'><max>2</max><before/></set></query>`,
      MUC,
    );
    assert.deepEqual(itemsOf(last), names.slice(-2).map((n) => `${n}@${MUC}`));
  } finally {
    await t.stop();
  }
});

/** A store whose rooms' map counts reads of one room, and throws StoreBusyError while `busy`. */
function countingStore(base: Store) {
  const probe = { reads: 0, busy: false };
  const rooms = base.map(STORES.rooms);
  const counted: MapStore = {
    get: (user, host, key) => {
      probe.reads++;
      if (probe.busy) return Promise.reject(new StoreBusyError("busy"));
      return rooms.get(user, host, key);
    },
    set: (user, host, key, value, options) => rooms.set(user, host, key, value, options),
    keys: (user, host) => rooms.keys(user, host),
    entries: (user, host) => rooms.entries(user, host),
  };
  const store = new Proxy(base, {
    get(target, key) {
      if (key === "map") {
        return (name: string) => name === STORES.rooms ? counted : target.map(name);
      }
      const v = Reflect.get(target, key);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return { store, probe };
}

/** Stores a room as another node (or an earlier run) would have. */
function saveRoom(store: Store, service: string, room: string, state: string): Promise<unknown> {
  return store.map(STORES.rooms).set("", service, room, JSON.parse(state));
}

const ONDEMAND = "ondemand.localhost";

/** A second MUC service beside the test server's, with a store of the test's. */
async function onDemandService(t: TestServer, store: Store, caches: SharedCaches) {
  const config = { ...t.server.mucs.get(MUC)!.config, domain: ONDEMAND };
  const { router, serial } = t.server;
  const local = new Set(["localhost"]);
  const svc = new MucService(config, router, store, serial, local, new LocalRooms(), caches);
  await svc.start();
  router.addDomain(ONDEMAND, svc);
  return svc;
}

withServer(
  "MUC on demand: unknown rooms read nothing, rooms stored elsewhere are found, a busy store says wait",
  mucServer(),
  async (t) => {
    const [ann] = await accounts(t, "ann");
    await saveRoom(t.server.store, ONDEMAND, "kept", stored("Kept", "ann@localhost"));
    await saveRoom(t.server.store, ONDEMAND, "other", stored("Other", "ann@localhost"));
    const { store, probe } = countingStore(t.server.store);
    const caches = new SharedCaches();
    const svc = await onDemandService(t, store, caches);
    const info = (room: string) =>
      ann.iq("get", `<query xmlns='${NS.discoInfo}'/>`, `${room}@${ONDEMAND}`);

    // A flood of stanzas for rooms that do not exist: no storage read at all.
    for (let i = 0; i < 50; i++) {
      ann.send(`<message to='nothing${i}@${ONDEMAND}' type='groupchat'><body>x</body></message>`);
    }
    assert.equal(errorCondition(await info("nothing")), "item-not-found");
    assert.equal(probe.reads, 0);
    // A stored room is read once, when first needed, and listed before that.
    const items = await ann.iq("get", `<query xmlns='${NS.discoItems}'/>`, ONDEMAND);
    assert.deepEqual(itemsOf(items), [`kept@${ONDEMAND}`, `other@${ONDEMAND}`]);
    const kept = await info("kept");
    assert.equal(kept.child("query")!.child("identity")!.attrs.name, "Kept");
    assert.equal(probe.reads, 1);
    assert.ok(svc.rooms.has("kept"));

    // Another node stores a room and invalidates it: it is read and then found.
    await saveRoom(t.server.store, ONDEMAND, "late", stored("Late", "bob@localhost"));
    assert.equal(errorCondition(await info("late")), "item-not-found", "not known yet");
    caches.clear(`muc rooms ${ONDEMAND}`, "late");
    await until(() => probe.reads === 2, "the invalidated room is read");
    assert.equal((await info("late")).attrs.type, "result");

    // A busy store: the answer is resource-constraint of type wait, worth retrying.
    probe.busy = true;
    const failed = await info("other");
    assert.equal(errorCondition(failed), "resource-constraint");
    assert.equal(failed.child("error")!.attrs.type, "wait");
    probe.busy = false;
    assert.equal((await info("other")).attrs.type, "result", "known still, read on the retry");
  },
);
