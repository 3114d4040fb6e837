// The storage contract, run against every backend: each backend's test file calls storageSuite()
// with a factory that opens a fresh store (and reopens an existing one for restart checks).
import assert from "node:assert/strict";
import {
  type ArchivePage,
  type Credentials,
  type RosterItem,
  type Store,
  STORES,
  UnknownItemError,
} from "../../src/storage/store.ts";
import { deriveCredentials } from "../../src/sasl/scram_keys.ts";

export interface Backend {
  name: string;
  /** A fresh, empty store; `reopen` opens the same data again (as another node would). */
  open(): Promise<{ store: Store; reopen(): Promise<Store> }>;
}

const creds = async (): Promise<Credentials> => (await deriveCredentials("pw", 16))!;

/** Writes `item` whatever was there; the new roster version. */
async function put(s: Store, user: string, host: string, item: RosterItem): Promise<number> {
  return (await s.updateRosterItem(user, host, item.jid, () => item))!.version;
}

const vcards = (s: Store) => s.keyval<string>(STORES.vcard);
const privates = (s: Store) => s.map<string>(STORES.private);

const contact = (jid: string, groups: string[] = []): RosterItem => ({
  jid,
  subscription: "none",
  ask: false,
  groups,
});

export function storageSuite(b: Backend): void {
  const t = (name: string, fn: (s: Store, reopen: () => Promise<Store>) => Promise<void>) =>
    Deno.test(`${b.name}: ${name}`, async () => {
      const { store, reopen } = await b.open();
      const opened = [store];
      try {
        await fn(store, async () => {
          opened.push(await reopen());
          return opened.at(-1)!;
        });
      } finally {
        for (const s of opened) await s.close();
      }
    });

  t("accounts: create once, read, change, list, delete with all their data", async (s) => {
    const c = await creds();
    assert.equal(await s.createAccount("a", "h", c), true);
    assert.equal(await s.createAccount("a", "h", await creds()), false);
    assert.deepEqual(await s.getCredentials("a", "h"), c);
    assert.equal(await s.getCredentials("a", "other"), null);
    const c2 = await creds();
    assert.equal(await s.setCredentials("a", "h", c2), true);
    assert.equal(await s.setCredentials("zz", "h", c2), false);
    assert.deepEqual(await s.getCredentials("a", "h"), c2);
    await s.createAccount("b", "h", c);
    assert.deepEqual(await s.listAccounts("h"), ["a", "b"]);
    await put(s, "a", "h", { jid: "x@y", subscription: "both", ask: false, groups: [] });
    await s.pushOffline("a", "h", "<message/>", 10);
    await vcards(s).set("a", "h", "<vCard/>");
    await privates(s).set("a", "h", "k", "<x/>", { max: 5 });
    await s.addPendingIn("a", "h", "c@d", "<presence/>");
    await s.block("a", "h", ["m@n"]);
    assert.deepEqual(await s.deleteAccount("a", "h"), { archived: 0 });
    assert.equal(await s.deleteAccount("a", "h"), null);
    assert.equal((await s.getRoster("a", "h")).items.length, 0);
    assert.deepEqual(await s.takeOffline("a", "h"), []);
    assert.equal(await vcards(s).get("a", "h"), null);
    assert.deepEqual(await privates(s).keys("a", "h"), []);
    assert.deepEqual(await s.getPendingIn("a", "h"), []);
    assert.deepEqual(await s.getBlocklist("a", "h"), []);
    assert.deepEqual(await s.getCredentials("b", "h"), c, "another account is kept");
  });

  t("roster: versions grow with every change; items round-trip", async (s) => {
    assert.deepEqual(await s.getRoster("u", "h"), { version: 0, items: [] });
    const v1 = await put(s, "u", "h", {
      jid: "c@d",
      name: "C",
      subscription: "to",
      ask: true,
      groups: ["g1", "g2"],
    });
    const v2 = await put(s, "u", "h", {
      jid: "e@f",
      subscription: "none",
      ask: false,
      groups: [],
    });
    assert.ok(v2 > v1);
    assert.deepEqual(await s.getRosterItem("u", "h", "c@d"), {
      jid: "c@d",
      name: "C",
      subscription: "to",
      ask: true,
      groups: ["g1", "g2"],
    });
    const v3 = (await s.deleteRosterItem("u", "h", "e@f"))!.version;
    assert.ok(v3 > v2);
    assert.equal(await s.deleteRosterItem("u", "h", "e@f"), null);
    const r = await s.getRoster("u", "h");
    assert.equal(r.version, v3);
    assert.deepEqual(r.items.map((i) => i.jid), ["c@d"]);
  });

  t(
    "pending subscriptions, offline queue limits and order, vCards, private, blocklist",
    async (s) => {
      await s.addPendingIn("u", "h", "c@d", "<presence type='subscribe'/>");
      await s.addPendingIn("u", "h", "B@d", "<presence type='subscribe' id='1'/>");
      await s.addPendingIn("u", "h", "B@d", "<presence type='subscribe' id='2'/>");
      assert.deepEqual(await s.getPendingIn("u", "h"), [
        { contact: "B@d", stanza: "<presence type='subscribe' id='2'/>" },
        { contact: "c@d", stanza: "<presence type='subscribe'/>" },
      ]);
      assert.equal(await s.removePendingIn("u", "h", "c@d"), true);
      assert.equal(await s.removePendingIn("u", "h", "c@d"), false);
      assert.equal(await s.removePendingIn("u", "h", "B@d"), true);
      assert.equal(await s.pushOffline("u", "h", "<m1/>", 2), true);
      assert.equal(await s.pushOffline("u", "h", "<m2/>", 2), true);
      assert.equal(await s.pushOffline("u", "h", "<m3/>", 2), false);
      assert.deepEqual(await s.takeOffline("u", "h"), ["<m1/>", "<m2/>"]);
      assert.deepEqual(await s.takeOffline("u", "h"), []);
      // Many messages come back in the order they were stored.
      const many = Array.from({ length: 30 }, (_, i) => `<m n='${i}'/>`);
      for (const m of many) await s.pushOffline("u", "h", m, 100);
      assert.deepEqual(await s.takeOffline("u", "h"), many);
      await vcards(s).set("u", "h", "<vCard>1</vCard>");
      await vcards(s).set("u", "h", "<vCard>2</vCard>");
      assert.equal(await vcards(s).get("u", "h"), "<vCard>2</vCard>");
      assert.equal(await privates(s).set("u", "h", "k", "<x/>", { max: 2 }), true);
      assert.equal(await privates(s).get("u", "h", "k"), "<x/>");
      assert.equal(await privates(s).get("u", "h", "other"), null);
      // At most `max` keys; replacing a stored key is always allowed.
      assert.equal(await privates(s).set("u", "h", "k2", "<y/>", { max: 2 }), true);
      assert.equal(await privates(s).set("u", "h", "k3", "<z/>", { max: 2 }), false);
      assert.equal(await privates(s).get("u", "h", "k3"), null);
      assert.equal(await privates(s).set("u", "h", "k", "<x2/>", { max: 2 }), true);
      assert.equal(await privates(s).get("u", "h", "k"), "<x2/>");
      await s.block("u", "h", ["a@b", "c"]);
      await s.block("u", "h", ["a@b"]);
      await s.block("u", "h", []);
      assert.deepEqual(await s.getBlocklist("u", "h"), ["a@b", "c"]);
      await s.unblock("u", "h", ["c"]);
      await s.unblock("u", "h", []);
      assert.deepEqual(await s.getBlocklist("u", "h"), ["a@b"]);
      await s.unblock("u", "h", null);
      assert.deepEqual(await s.getBlocklist("u", "h"), []);
      // Long lists, repeats included, sorted byte-wise; a long unblock leaves only the rest.
      const jids = Array.from({ length: 250 }, (_, i) => `j${String(i).padStart(3, "0")}@x`);
      await s.block("u", "h", [...jids, "Z@x", jids[0]]);
      assert.deepEqual(await s.getBlocklist("u", "h"), ["Z@x", ...jids]);
      await s.unblock("u", "h", jids.slice(1));
      assert.deepEqual(await s.getBlocklist("u", "h"), ["Z@x", jids[0]]);
    },
  );

  t("everything survives closing and reopening", async (s, reopen) => {
    await s.createAccount("p", "h", await creds());
    await put(s, "p", "h", {
      jid: "q@r",
      subscription: "from",
      ask: false,
      groups: ["x"],
    });
    await s.pushOffline("p", "h", "<kept/>", 5);
    await s.close();
    const s2 = await reopen();
    assert.ok(await s2.getCredentials("p", "h"));
    assert.equal((await s2.getRoster("p", "h")).items[0].subscription, "from");
    assert.deepEqual(await s2.takeOffline("p", "h"), ["<kept/>"]);
  });

  t("a failing store rejects, never throws: every method on a closed store", async (s) => {
    await s.close();
    // The shapes are handed out at once (no I/O); their methods are checked below.
    const shapes = [s.keyval("n"), s.map("n"), s.archive("n"), s.items("n")];
    // The methods of every class the object is made of.
    const methods = (o: object) => {
      const names = new Set<string>();
      for (let p = Object.getPrototypeOf(o); p !== Object.prototype; p = Object.getPrototypeOf(p)) {
        for (const m of Object.getOwnPropertyNames(p)) names.add(m);
      }
      return [...names].filter((m) =>
        m !== "constructor" && m !== "close" &&
        !["keyval", "map", "archive", "items"].includes(m) &&
        typeof (o as unknown as Record<string, unknown>)[m] === "function"
      );
    };
    assert.ok(methods(s).length >= 17, `only ${methods(s).length} methods found`);
    const args: Record<string, unknown[]> = {
      append: ["u", "h", { at: 1, payload: "<x/>" }],
      query: ["u", "h", { max: 5 }],
      expire: [1],
      latest: [["u"], "h"],
      remove: ["u", "h", ["k"]],
    };
    for (const o of [s, ...shapes]) {
      assert.ok(methods(o).length >= 2);
      for (const m of methods(o)) {
        const fn = (o as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[m];
        const call = () => fn.apply(o, args[m] ?? ["u", "h", "c", "x", 1]);
        let result: Promise<unknown>;
        assert.doesNotThrow(() => result = call(), `${m} threw instead of rejecting`);
        await assert.rejects(result!, `${m} did not reject`);
      }
    }
  });

  t(
    "MUC rooms: in the map shape per service, replaced, deleted, kept across a reopen",
    async (s, reopen) => {
      const rooms = (store: Store) => store.map(STORES.rooms);
      assert.deepEqual(await rooms(s).entries("", "conf.h"), []);
      await rooms(s).set("", "conf.h", "b", { v: 1 });
      await rooms(s).set("", "conf.h", "a", { v: 2 });
      await rooms(s).set("", "other.h", "a", { v: 3 });
      await rooms(s).set("", "conf.h", "b", { v: 4 });
      await rooms(s).set("", "conf.h", "missing", null);
      const s2 = await reopen();
      assert.deepEqual(await rooms(s2).entries("", "conf.h"), [["a", { v: 2 }], ["b", { v: 4 }]]);
      await rooms(s2).set("", "conf.h", "a", null);
      assert.deepEqual(await rooms(s2).entries("", "conf.h"), [["b", { v: 4 }]]);
      assert.deepEqual(await rooms(s2).entries("", "other.h"), [["a", { v: 3 }]]);
      assert.equal(await rooms(s2).get("", "conf.h", "a"), null);
      // Sorted byte-wise.
      await rooms(s2).set("", "conf.h", "B", { v: 5, name: '"é"' });
      assert.deepEqual(await rooms(s2).entries("", "conf.h"), [
        ["B", { v: 5, name: '"é"' }],
        ["b", { v: 4 }],
      ]);
    },
  );

  t("roster: a change is applied to the item as stored; no change writes nothing", async (s) => {
    assert.equal(await s.updateRosterItem("u", "h", "c@d", () => null), null);
    assert.deepEqual(await s.getRoster("u", "h"), { version: 0, items: [] });
    const first = await s.updateRosterItem("u", "h", "c@d", (old) => {
      assert.equal(old, null);
      return { ...contact("c@d", ["a"]), name: "C" };
    });
    assert.deepEqual(first, { item: { ...contact("c@d", ["a"]), name: "C" }, version: 1 });
    const second = await s.updateRosterItem("u", "h", "c@d", (old) => ({
      ...old!,
      subscription: "to",
    }));
    assert.deepEqual(second!.item, { ...contact("c@d", ["a"]), name: "C", subscription: "to" });
    assert.equal(second!.version, 2);
    assert.deepEqual(await s.deleteRosterItem("u", "h", "c@d"), {
      item: second!.item,
      version: 3,
    });
  });

  t(
    "the cluster secret is made once: the same after reopening and for another node",
    async (s, reopen) => {
      const secret = await s.clusterSecret();
      assert.equal(secret.length, 32);
      assert.deepEqual(await s.clusterSecret(), secret);
      const other = await reopen();
      assert.deepEqual(await other.clusterSecret(), secret);
      // Kept in the key-value shape, as hexadecimal.
      assert.equal(
        await s.keyval(STORES.secret).get("cluster", ""),
        Array.from(secret, (b) => b.toString(16).padStart(2, "0")).join(""),
      );
    },
  );

  t("nodes starting at once all get the same cluster secret", async (s, reopen) => {
    const nodes = [s, await reopen(), await reopen()];
    const secrets = await Promise.all(nodes.flatMap((n) => [n.clusterSecret(), n.clusterSecret()]));
    for (const secret of secrets) assert.deepEqual(secret, secrets[0]);
  });

  // Two instances on the same data stand for two nodes: every read-modify-write is atomic.
  t(
    "two nodes writing one account at once lose nothing and keep every limit",
    async (s, reopen) => {
      const nodes = [s, await reopen()];
      const N = 12;
      const both = <T>(fn: (node: Store, i: number) => Promise<T>) =>
        Promise.all(
          nodes.flatMap((node, k) => Array.from({ length: N }, (_, i) => fn(node, k * N + i))),
        );
      // Each change adds a group to the same item: a lost update would lose a group.
      const changes = await both((node, i) =>
        node.updateRosterItem(
          "u",
          "h",
          "c@d",
          (old) => contact("c@d", [...old?.groups ?? [], `g${i}`]),
        )
      );
      const versions = changes.map((c) => c!.version).sort((a, b) => a - b);
      assert.deepEqual(versions, Array.from({ length: 2 * N }, (_, i) => i + 1));
      const roster = await nodes[1].getRoster("u", "h");
      assert.equal(roster.version, 2 * N);
      assert.equal(roster.items[0].groups.length, 2 * N);
      // New items from both nodes: none lost.
      await both((node, i) => put(node, "u", "h", contact(`x${i}@d`)));
      assert.equal((await nodes[0].getRoster("u", "h")).items.length, 2 * N + 1);

      const max = 5;
      const stored = await both((node, i) => node.pushOffline("u", "h", `<m${i}/>`, max));
      assert.equal(stored.filter(Boolean).length, max);
      const taken = await Promise.all([
        nodes[0].takeOffline("u", "h"),
        nodes[1].takeOffline("u", "h"),
      ]);
      assert.equal(taken.flat().length, max, "a message was taken twice or lost");
      const kept = await both((node, i) => privates(node).set("u", "h", `k${i}`, "<x/>", { max }));
      assert.equal(kept.filter(Boolean).length, max);
    },
  );

  t("a write on one node is read at once on another, every time", async (s, reopen) => {
    const other = await reopen();
    for (let i = 0; i < 50; i++) {
      await vcards(s).set("u", "h", `<vCard>${i}</vCard>`);
      assert.equal(await vcards(other).get("u", "h"), `<vCard>${i}</vCard>`);
      const version = await put(s, "u", "h", contact("c@d", [`g${i}`]));
      const roster = await other.getRoster("u", "h");
      assert.equal(roster.version, version);
      assert.deepEqual(roster.items.map((r) => r.groups), [[`g${i}`]]);
      await s.block("u", "h", [`b${i}@d`]);
      assert.equal((await other.getBlocklist("u", "h")).length, i + 1);
    }
  });

  t("key-value shape: one value per owner and store name, JSON or string", async (s, reopen) => {
    const vcard = s.keyval<string>("vcard");
    const config = s.keyval<{ public: boolean; members: string[] }>("room-config");
    assert.equal(await vcard.get("u", "h"), null);
    await vcard.set("u", "h", "<vCard>1</vCard>");
    await vcard.set("u", "h", "<vCard>2</vCard>");
    await config.set("u", "h", { public: true, members: ["a@b"] });
    await config.set("room", "conf.h", { public: false, members: [] });
    assert.equal(await vcard.get("u", "h"), "<vCard>2</vCard>");
    assert.equal(await vcard.get("u", "other"), null);
    assert.equal(await vcard.get("v", "h"), null);
    assert.deepEqual(await config.get("u", "h"), { public: true, members: ["a@b"] });
    const other = await reopen();
    assert.equal(await other.keyval("vcard").get("u", "h"), "<vCard>2</vCard>");
    assert.deepEqual(await other.keyval("room-config").get("room", "conf.h"), {
      public: false,
      members: [],
    });
    await vcard.set("u", "h", null);
    assert.equal(await other.keyval("vcard").get("u", "h"), null);
    assert.deepEqual(await config.get("u", "h"), { public: true, members: ["a@b"] });
    // Values JSON cannot hold are refused, by rejecting.
    await assert.rejects(s.keyval<unknown>("x").set("u", "h", undefined));
  });

  t("items shape: in write order, a rewritten key is the newest, kept to the newest N", async (
    s,
    reopen,
  ) => {
    const a = s.items<{ v: number }>("pep/n");
    for (const [k, v] of [["x", 1], ["y", 2], ["z", 3]] as const) {
      assert.deepEqual(await a.put("u", "h", k, { v }), []);
    }
    await a.put("u", "h", "x", { v: 4 }); // rewritten: now the newest
    assert.deepEqual(await a.list("u", "h"), [["y", { v: 2 }], ["z", { v: 3 }], ["x", { v: 4 }]]);
    assert.deepEqual(await a.list("u", "h", { last: 2 }), [["z", { v: 3 }], ["x", { v: 4 }]]);
    assert.deepEqual(await a.list("u", "h", { keys: ["x", "y", "nope"] }), [
      ["y", { v: 2 }],
      ["x", { v: 4 }],
    ]);
    assert.deepEqual(await a.list("u", "h", { keys: [] }), []);
    // Another owner, another store name: apart.
    await s.items("pep/n").put("v", "h", "x", { v: 9 });
    await s.items("pep/other").put("u", "h", "x", { v: 8 });
    assert.equal((await a.list("u", "h")).length, 3);
    // Kept to the newest two: the oldest goes, and is said to have gone.
    assert.deepEqual(await a.put("u", "h", "w", { v: 5 }, { keep: 2 }), ["y", "z"]);
    assert.deepEqual(await a.list("u", "h"), [["x", { v: 4 }], ["w", { v: 5 }]]);
    assert.deepEqual(await a.remove("u", "h", ["x", "nope"]), ["x"]);
    assert.deepEqual(await (await reopen()).items("pep/n").list("u", "h"), [["w", { v: 5 }]]);
    await assert.rejects(a.put("u", "h", "k", { v: 1 }, { keep: 0 }), RangeError);
    assert.equal(await a.clear("u", "h"), 1);
    assert.deepEqual(await a.list("u", "h"), []);
    assert.deepEqual(await s.items("pep/n").list("v", "h"), [["x", { v: 9 }]]);
  });

  // Two instances on one database stand for two nodes writing one account's item at once.
  t("items shape: two nodes writing one key at once both land, one item stays", async (
    s,
    reopen,
  ) => {
    const nodes = [s, await reopen()];
    for (let round = 0; round < 20; round++) {
      await Promise.all(
        nodes.map((n, k) => n.items<number>("pep/list").put("u", "h", "current", round * 2 + k)),
      );
    }
    const left = await s.items<number>("pep/list").list("u", "h");
    assert.equal(left.length, 1);
    assert.ok([38, 39].includes(left[0][1]), `${left}`);
  });

  t("items shape: the newest item of many owners in one read", async (s) => {
    const a = s.items<string>("pep/nick");
    await a.put("a", "h", "1", "a1");
    await a.put("b", "h", "1", "b1");
    await a.put("a", "h", "2", "a2");
    await a.put("c", "other", "1", "c1");
    await s.items<string>("pep/else").put("b", "h", "9", "b9");
    const latest = await a.latest(["a", "b", "c", "nobody"], "h");
    latest.sort((x, y) => x.user.localeCompare(y.user));
    assert.deepEqual(latest, [
      { user: "a", key: "2", value: "a2" },
      { user: "b", key: "1", value: "b1" },
    ]);
    const many = Array.from({ length: 1200 }, (_, i) => `n${i}`);
    assert.deepEqual(await a.latest(many, "h"), []);
  });

  t("map shape: values per owner and key, keys sorted byte-wise, null removes", async (s) => {
    const m = s.map<string>("private");
    assert.deepEqual(await m.keys("u", "h"), []);
    assert.equal(await m.get("u", "h", "k"), null);
    await m.set("u", "h", "b", "<b/>");
    await m.set("u", "h", "a", "<a/>");
    await m.set("u", "h", "B", "<B/>");
    await m.set("u", "h", "a", "<a2/>");
    await m.set("v", "h", "z", "<z/>");
    await s.map("other").set("u", "h", "c", 1);
    assert.deepEqual(await m.keys("u", "h"), ["B", "a", "b"]);
    assert.equal(await m.get("u", "h", "a"), "<a2/>");
    assert.equal(await m.get("v", "h", "a"), null);
    await m.set("u", "h", "b", null);
    await m.set("u", "h", "missing", null);
    assert.deepEqual(await m.keys("u", "h"), ["B", "a"]);
    assert.equal(await m.get("u", "h", "b"), null);
    assert.deepEqual(await s.map("other").keys("u", "h"), ["c"]);
    assert.equal(await s.map<number>("other").get("u", "h", "c"), 1);
  });

  t("key-value shape: add stores only when the owner has no value", async (s) => {
    const kv = s.keyval<{ n: number }>("first");
    assert.equal(await kv.add("u", "h", { n: 1 }), true);
    assert.equal(await kv.add("u", "h", { n: 2 }), false);
    assert.deepEqual(await kv.get("u", "h"), { n: 1 });
    assert.equal(await kv.add("v", "h", { n: 3 }), true);
    assert.equal(await s.keyval("other").add("u", "h", 4), true);
    await kv.set("u", "h", null);
    assert.equal(await kv.add("u", "h", { n: 5 }), true);
    assert.deepEqual(await kv.get("u", "h"), { n: 5 });
  });

  t("map shape: entries sorted byte-wise with their values", async (s) => {
    const m = s.map<{ v: number } | string>("rooms");
    assert.deepEqual(await m.entries("", "conf.h"), []);
    await m.set("", "conf.h", "b", { v: 1 });
    await m.set("", "conf.h", "B", "text");
    await m.set("", "conf.h", "a", { v: 2 });
    await m.set("", "conf.h", "é", { v: 3 });
    await m.set("", "other.h", "c", { v: 4 });
    await s.map("else").set("", "conf.h", "d", 5);
    assert.deepEqual(await m.entries("", "conf.h"), [
      ["B", "text"],
      ["a", { v: 2 }],
      ["b", { v: 1 }],
      ["é", { v: 3 }],
    ]);
    await m.set("", "conf.h", "b", null);
    assert.deepEqual((await m.entries("", "conf.h")).map(([k]) => k), ["B", "a", "é"]);
    assert.deepEqual(await m.entries("", "other.h"), [["c", { v: 4 }]]);
  });

  t("map shape: a capped set refuses a new key past max, per owner and store name", async (s) => {
    const m = s.map<string>("capped");
    const set = (user: string, key: string, max: number) =>
      m.set(user, "h", key, `<${key}/>`, { max });
    assert.equal(await set("u", "a", 2), true);
    assert.equal(await set("u", "b", 2), true);
    assert.equal(await set("u", "c", 2), false);
    assert.equal(await m.get("u", "h", "c"), null);
    assert.equal(await set("u", "a", 2), true, "replacing is always allowed");
    assert.equal(await set("u", "a", 0), true, "even with a lower cap");
    assert.equal(await set("v", "c", 2), true, "another owner has keys of its own");
    assert.equal(await s.map("other").set("u", "h", "c", "<c/>", { max: 2 }), true);
    assert.equal(await set("u", "c", 3), true, "a higher cap admits it");
    assert.equal(await set("u", "d", 3), false);
    // Removing a key frees its place; an uncapped set is never refused.
    assert.equal(await m.set("u", "h", "a", null, { max: 3 }), true);
    assert.equal(await set("u", "d", 3), true);
    assert.equal(await m.set("u", "h", "e", "<e/>"), true);
    assert.deepEqual(await m.keys("u", "h"), ["b", "c", "d", "e"]);
    assert.equal(await set("u", "f", 0), false);
    await assert.rejects(m.set("u", "h", "g", "<g/>", { max: -1 }), RangeError);
    await assert.rejects(m.set("u", "h", "g", "<g/>", { max: 1.5 }), RangeError);
  });

  // Two instances on one database stand for two nodes: the cap holds across them.
  t("map shape: add stores a new key only, once among writers racing on two nodes", async (
    s,
    reopen,
  ) => {
    const nodes = [s, await reopen()];
    for (const max of [undefined, 10]) {
      const key = `k${max}`;
      const added = await Promise.all(
        nodes.flatMap((n, k) =>
          [0, 1, 2].map((i) => n.map("m").set("u", "h", key, `${k}.${i}`, { add: true, max }))
        ),
      );
      assert.equal(added.filter((a) => a).length, 1, `${max}: ${added}`);
      const value = await s.map("m").get("u", "h", key);
      assert.equal(await s.map("m").set("u", "h", key, "other", { add: true, max }), false);
      assert.equal(await s.map("m").get("u", "h", key), value);
    }
  });

  t("map shape: capped sets racing on two nodes never pass max keys", async (s, reopen) => {
    const nodes = [s, await reopen()];
    const max = 7;
    const N = 20;
    const m = (k: number) => privates(nodes[k]);
    await m(0).set("u", "h", "old", "<old/>");
    // Each node adds its own new keys and replaces a stored one, all at once.
    const results = await Promise.all(
      nodes.flatMap((_, k) =>
        Array.from({ length: N }, async (_, i) => {
          const key = i % 5 === 0 ? "old" : `k${k}-${i}`;
          return [key, await m(k).set("u", "h", key, `<v${k}-${i}/>`, { max })] as const;
        })
      ),
    );
    assert.ok(results.filter(([key]) => key === "old").every(([, ok]) => ok));
    const added = results.filter(([key, ok]) => key !== "old" && ok).map(([key]) => key);
    assert.equal(added.length, max - 1, "more or fewer keys than the cap admitted");
    assert.deepEqual(await m(1).keys("u", "h"), [...added, "old"].toSorted());
  });

  t("archive shape: append, ids, order by time then appending, owners apart", async (s) => {
    const a = s.archive("mam");
    const empty = await a.query("u", "h", { max: 10 });
    assert.deepEqual(empty, { items: [], count: 0, complete: true });
    const id1 = await a.append("u", "h", { at: 200, with: "c@d", payload: "<m1/>" });
    const id2 = await a.append("u", "h", { at: 100, payload: "<m0/>" });
    const id3 = await a.append("u", "h", { at: 200, with: "c@d", payload: "<m2/>" });
    const given = await a.append("u", "h", { id: "given", at: 300, payload: "<m3/>" });
    assert.equal(given, "given");
    assert.equal(new Set([id1, id2, id3, given]).size, 4);
    await assert.rejects(a.append("u", "h", { id: "given", at: 400, payload: "<dup/>" }));
    await a.append("v", "h", { at: 150, payload: "<other owner/>" });
    await s.archive("pep").append("u", "h", { at: 150, payload: "<other store/>" });
    const all = await a.query("u", "h", { max: 10 });
    assert.deepEqual(all, {
      items: [
        { id: id2, at: 100, payload: "<m0/>" },
        { id: id1, at: 200, with: "c@d", payload: "<m1/>" },
        { id: id3, at: 200, with: "c@d", payload: "<m2/>" },
        { id: "given", at: 300, payload: "<m3/>" },
      ],
      count: 4,
      first: id2,
      last: "given",
      complete: true,
    });
    assert.equal((await s.archive("pep").query("u", "h", { max: 10 })).count, 1);
    // The item ids of one owner do not clash with another's.
    assert.equal(await a.append("v", "h", { id: "given", at: 1, payload: "<v/>" }), "given");
    await assert.rejects(a.query("u", "h", { max: -1 }));
  });

  t("archive shape: RSM paging forward and backward, filters, unknown ids", async (s) => {
    const a = s.archive("mam");
    const ids: string[] = [];
    // Ten items, at 10, 20, … 100; the odd ones with x@y, the even ones with z@y.
    for (let i = 0; i < 10; i++) {
      ids.push(
        await a.append("u", "h", {
          at: 10 * (i + 1),
          with: i % 2 ? "x@y" : "z@y",
          payload: `<m${i}/>`,
        }),
      );
    }
    const n = (p: ArchivePage) => p.items.map((i) => Number(i.payload.slice(2, -2)));
    // Forward, pages of 3: 3, 3, 3, 1; only the last is complete.
    const pages: ArchivePage[] = [];
    let after: string | undefined;
    do {
      pages.push(await a.query("u", "h", { after, max: 3 }));
      after = pages.at(-1)!.last;
    } while (!pages.at(-1)!.complete);
    assert.deepEqual(pages.map(n), [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]);
    assert.deepEqual(pages.map((p) => p.count), [10, 10, 10, 10]);
    assert.deepEqual(pages.map((p) => [p.first, p.last]), [
      [ids[0], ids[2]],
      [ids[3], ids[5]],
      [ids[6], ids[8]],
      [ids[9], ids[9]],
    ]);
    // An exact page is complete; after the last item, an empty complete page.
    assert.equal((await a.query("u", "h", { max: 10 })).complete, true);
    assert.equal((await a.query("u", "h", { max: 9 })).complete, false);
    const past = await a.query("u", "h", { after: ids[9], max: 3 });
    assert.deepEqual(past, { items: [], count: 10, complete: true });
    // Backward from the end (an empty `before`), pages of 4: 4, 4, 2.
    const back: ArchivePage[] = [await a.query("u", "h", { before: "", max: 4 })];
    while (!back.at(-1)!.complete) {
      back.push(await a.query("u", "h", { before: back.at(-1)!.first, max: 4 }));
    }
    assert.deepEqual(back.map(n), [[6, 7, 8, 9], [2, 3, 4, 5], [0, 1]]);
    assert.deepEqual(n(await a.query("u", "h", { before: ids[4], max: 4 })), [0, 1, 2, 3]);
    assert.equal((await a.query("u", "h", { before: ids[4], max: 4 })).complete, true);
    assert.deepEqual(await a.query("u", "h", { before: ids[0], max: 4 }), {
      items: [],
      count: 10,
      complete: true,
    });
    // Between two items.
    assert.deepEqual(n(await a.query("u", "h", { after: ids[2], before: ids[6], max: 10 })), [
      3,
      4,
      5,
    ]);
    // Count only.
    assert.deepEqual(await a.query("u", "h", { max: 0 }), {
      items: [],
      count: 10,
      complete: false,
    });
    // With a peer: the count and the pages obey it.
    const x1 = await a.query("u", "h", { with: "x@y", max: 2 });
    assert.deepEqual([n(x1), x1.count, x1.complete], [[1, 3], 5, false]);
    const x2 = await a.query("u", "h", { with: "x@y", after: x1.last, max: 2 });
    assert.deepEqual(n(x2), [5, 7]);
    const x3 = await a.query("u", "h", { with: "x@y", after: x2.last, max: 2 });
    assert.deepEqual([n(x3), x3.complete], [[9], true]);
    assert.deepEqual(n(await a.query("u", "h", { with: "x@y", before: "", max: 2 })), [7, 9]);
    assert.equal((await a.query("u", "h", { with: "nobody@y", max: 2 })).count, 0);
    // A time range, inclusive at both ends, with paging inside it.
    const r1 = await a.query("u", "h", { start: 30, end: 70, max: 3 });
    assert.deepEqual([n(r1), r1.count, r1.complete], [[2, 3, 4], 5, false]);
    const r2 = await a.query("u", "h", { start: 30, end: 70, after: r1.last, max: 3 });
    assert.deepEqual([n(r2), r2.complete], [[5, 6], true]);
    assert.deepEqual(n(await a.query("u", "h", { start: 95, max: 5 })), [9]);
    assert.deepEqual(n(await a.query("u", "h", { end: 10, max: 5 })), [0]);
    assert.deepEqual(
      n(await a.query("u", "h", { start: 20, end: 80, with: "z@y", before: "", max: 2 })),
      [4, 6],
    );
    // An id that is not in this owner's archive is an error, not an empty page.
    await assert.rejects(a.query("u", "h", { after: "nope", max: 3 }), UnknownItemError);
    await assert.rejects(a.query("u", "h", { before: "nope", max: 3 }), UnknownItemError);
    await assert.rejects(a.query("v", "h", { after: ids[0], max: 3 }), UnknownItemError);
    await assert.rejects(s.archive("pep").query("u", "h", { after: ids[0], max: 3 }));
  });

  t(
    "archive shape: batches, ids, bounds by id, peers bare and full, full text, replace, expire in batches",
    async (s) => {
      const a = s.archive("mam");
      const e = (user: string, id: string, at: number, w: string, text?: string) => ({
        user,
        host: "h",
        item: { id, at, with: w, payload: `<m>${id}</m>`, text },
      });
      assert.equal(
        await a.appendMany([
          e("u", "i1", 10, "bob@x/phone", "Hello wörld"),
          e("u", "i2", 20, "bob@x", "the café is open"),
          e("u", "i3", 30, "bob@xy", "hello again"),
          e("u", "i4", 40, "carol@x/r", "Nothing"),
          e("v", "i1", 10, "bob@x", "hello from v"),
        ]),
        5,
      );
      // The same ids again add nothing, whatever else comes with them.
      assert.equal(
        await a.appendMany([e("u", "i1", 99, "z@z", "x"), e("u", "i5", 50, "bob@x/2")]),
        1,
      );
      const ids = (p: { items: { id: string }[] }) => p.items.map((i) => i.id);
      assert.deepEqual(ids(await a.query("u", "h", { max: 9 })), ["i1", "i2", "i3", "i4", "i5"]);
      // A bare peer matches its full JIDs, not a longer domain; a full one only itself.
      assert.deepEqual(ids(await a.query("u", "h", { with: "bob@x", max: 9 })), ["i1", "i2", "i5"]);
      assert.deepEqual(ids(await a.query("u", "h", { with: "bob@x/phone", max: 9 })), ["i1"]);
      // By ids, and between ids (the count obeys them).
      const some = await a.query("u", "h", { ids: ["i4", "i2", "none"], max: 9 });
      assert.deepEqual([ids(some), some.count], [["i2", "i4"], 2]);
      const between = await a.query("u", "h", { afterId: "i1", beforeId: "i5", max: 2 });
      assert.deepEqual([ids(between), between.count, between.complete], [["i2", "i3"], 3, false]);
      await assert.rejects(a.query("u", "h", { afterId: "nope", max: 1 }), UnknownItemError);
      // Full text: every word, whole words, case (and in SQLite accent) insensitive.
      assert.deepEqual(ids(await a.query("u", "h", { text: "hello", max: 9 })), ["i1", "i3"]);
      assert.deepEqual(ids(await a.query("u", "h", { text: "HELLO again", max: 9 })), ["i3"]);
      assert.deepEqual(ids(await a.query("u", "h", { text: "hell", max: 9 })), []);
      assert.deepEqual(ids(await a.query("u", "h", { text: 'open" OR "x', max: 9 })), []);
      assert.deepEqual(ids(await a.query("v", "h", { text: "hello", max: 9 })), ["i1"]);
      // Replaced: the new payload, no longer found by its old words.
      assert.equal(await a.replace("u", "h", "i3", "<gone/>"), true);
      assert.equal(await a.replace("u", "h", "nope", "<gone/>"), false);
      assert.deepEqual(ids(await a.query("u", "h", { text: "again", max: 9 })), []);
      assert.equal((await a.query("u", "h", { ids: ["i3"], max: 1 })).items[0].payload, "<gone/>");
      // Expired a batch at a time, oldest first, across owners.
      assert.equal(await a.expire(45, 2), 2);
      assert.equal(await a.expire(45, 2), 2);
      assert.equal(await a.expire(45, 2), 1);
      assert.equal(await a.expire(45, 2), 0);
      assert.deepEqual(ids(await a.query("u", "h", { max: 9 })), ["i5"]);
      assert.deepEqual(ids(await a.query("u", "h", { text: "hello", max: 9 })), []);
    },
  );

  t("archive shape: delete by age and by owner, expire, deleteAccount", async (s, reopen) => {
    const a = s.archive("mam");
    for (const owner of ["u", "v"]) {
      for (let i = 1; i <= 5; i++) await a.append(owner, "h", { at: i, payload: `<${i}/>` });
    }
    await s.archive("pep").append("u", "h", { at: 1, payload: "<pep/>" });
    assert.equal(await a.delete("u", "h", { before: 3 }), 2);
    assert.deepEqual((await a.query("u", "h", { max: 9 })).items.map((i) => i.at), [3, 4, 5]);
    assert.equal((await a.query("v", "h", { max: 9 })).count, 5);
    assert.equal(await a.expire(5), 2 + 4);
    assert.deepEqual((await a.query("v", "h", { max: 9 })).items.map((i) => i.at), [5]);
    assert.equal((await s.archive("pep").query("u", "h", { max: 9 })).count, 1);
    assert.equal(await a.deleteOwner("u", "h"), 1);
    assert.equal((await a.query("u", "h", { max: 9 })).count, 0);
    assert.equal(await a.delete("v", "h"), 1);
    assert.equal((await a.query("v", "h", { max: 9 })).count, 0);
    // Deleting an account removes what the shapes hold for it, not what others have.
    const other = await reopen();
    await s.createAccount("u", "h", await creds());
    await s.keyval("k").set("u", "h", "x");
    await s.map("m").set("u", "h", "k", "x");
    await s.keyval("k").set("w", "h", "kept");
    await a.append("w", "h", { at: 1, payload: "<kept/>" });
    assert.ok(await other.deleteAccount("u", "h"));
    assert.equal(await s.keyval("k").get("u", "h"), null);
    assert.deepEqual(await s.map("m").keys("u", "h"), []);
    assert.equal((await s.archive("pep").query("u", "h", { max: 9 })).count, 0);
    assert.equal(await s.keyval("k").get("w", "h"), "kept");
    assert.equal((await a.query("w", "h", { max: 9 })).count, 1);
  });

  // Two instances on one database stand for two nodes appending to one archive and paging it.
  t("archive shape: two nodes appending and querying at once lose and duplicate nothing", async (
    s,
    reopen,
  ) => {
    const nodes = [s, await reopen()];
    const N = 40;
    const pageSize = 7;
    const appended: string[] = [];
    const readDuring: ArchivePage[] = [];
    await Promise.all(nodes.map(async (node, k) => {
      const a = node.archive("mam");
      for (let i = 0; i < N; i++) {
        // Half the items share a time: the order between them is the order of appending.
        const at = 1000 + (i % 2 ? i : 0);
        const [id] = await Promise.all([
          a.append("u", "h", { at, with: `n${k}@h`, payload: `${k}:${i}` }),
          i % 5 === 0 ? a.query("u", "h", { max: pageSize }).then((p) => readDuring.push(p)) : 0,
        ]);
        appended.push(id);
      }
    }));
    assert.equal(new Set(appended).size, 2 * N, "two appends made the same id");
    for (const p of readDuring) {
      assert.ok(p.items.length <= pageSize && p.count >= p.items.length);
      assert.equal(new Set(p.items.map((i) => i.id)).size, p.items.length);
    }
    // Paging through the whole archive, alternating nodes, gives every item once, in order.
    for (const forward of [true, false]) {
      const seen: { id: string; at: number; payload: string }[] = [];
      let cursor: string | undefined = forward ? undefined : "";
      for (let k = 0;; k++) {
        const a = nodes[k % 2].archive("mam");
        const page = await a.query(
          "u",
          "h",
          forward ? { after: cursor, max: pageSize } : { before: cursor, max: pageSize },
        );
        assert.equal(page.count, 2 * N);
        if (forward) seen.push(...page.items);
        else seen.unshift(...page.items);
        cursor = forward ? page.last : page.first;
        if (page.complete) break;
      }
      assert.deepEqual(seen.map((i) => i.id).toSorted(), appended.toSorted());
      const ats = seen.map((i) => i.at);
      assert.deepEqual(ats, ats.toSorted((x, y) => x - y));
      // Each node's items sharing a time keep the order it appended them in.
      for (const k of [0, 1]) {
        const mine = seen.filter((i) => i.payload.startsWith(`${k}:`) && i.at === 1000)
          .map((i) => Number(i.payload.split(":")[1]));
        assert.deepEqual(mine, mine.toSorted((x, y) => x - y));
      }
    }
    const [p0, p1] = await Promise.all(nodes.map((n) =>
      n.archive("mam").query("u", "h", {
        with: "n1@h",
        max: 100,
      })
    ));
    assert.deepEqual(p0, p1);
    assert.equal(p0.count, N);
  });
}

/**
 * Data as the release before the features moved into the shapes stored it (the schema of its
 * migrations, column `username` in both backends), with the text a migration could mangle:
 * quotes, backslashes, control characters, non-ASCII.
 */
export const RELEASED = {
  creds: { "SHA-1": { salt: "s" }, "SHA-256": { salt: "t" } },
  vcard: `<vCard xmlns='vcard-temp'><FN>Ann "A" O'Brien \\ é 𝄞\n\t\u0001</FN></vCard>`,
  private: {
    "urn:x storage": `<storage xmlns='urn:x'><b jid='r@c'>"é"\\</b></storage>`,
    "urn:y query": "<query xmlns='urn:y'/>",
  },
  rooms: {
    "conf.h": {
      "B-room": JSON.stringify({ v: 1, subject: 'it\'s "quoted" \\ é\n', members: ["a@h"] }),
      "a-room": JSON.stringify({ v: 2 }),
    },
    "other.h": { "a-room": JSON.stringify({ v: 3 }) },
  } as Record<string, Record<string, string>>,
  secret: "00ff7f80".repeat(8),
};

/** An SQL string literal. */
const lit = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** Inserts RELEASED; `bytes` makes the SQL for bytes given in hexadecimal. */
export function releasedInserts(bytes: (hex: string) => string): string {
  const creds = lit(JSON.stringify(RELEASED.creds));
  return `
    INSERT INTO accounts (host, username, credentials, created_at)
      VALUES ('h', 'ann', ${creds}, 1), ('h', 'bob', '{}', 2);
    INSERT INTO roster_items (host, username, contact, name, subscription, ask, groups)
      VALUES ('h', 'ann', 'bob@h', 'Bob', 'both', '0', '["friends"]'),
             ('h', 'ann', 'cy@h', NULL, 'none', '1', '[]');
    INSERT INTO roster_versions (host, username, version) VALUES ('h', 'ann', 7);
    INSERT INTO pending_in (host, username, contact, stanza)
      VALUES ('h', 'ann', 'dee@h', '<presence/>');
    INSERT INTO offline (host, username, stanza, stored_at)
      VALUES ('h', 'ann', '<m1/>', 1), ('h', 'ann', '<m2/>', 2);
    INSERT INTO blocklist (host, username, jid) VALUES ('h', 'ann', 'spam@x');
    INSERT INTO vcards (host, username, vcard) VALUES ('h', 'ann', ${lit(RELEASED.vcard)});
    INSERT INTO private_storage (host, username, key, xml) VALUES ${
    Object.entries(RELEASED.private).map(([k, x]) => `('h', 'ann', ${lit(k)}, ${lit(x)})`)
  };
    INSERT INTO muc_rooms (service, room, state) VALUES ${
    Object.entries(RELEASED.rooms).flatMap(([service, rooms]) =>
      Object.entries(rooms).map(([room, state]) => `(${lit(service)}, ${lit(room)}, ${lit(state)})`)
    )
  };
    INSERT INTO secrets (name, value) VALUES ('cluster', ${bytes(RELEASED.secret)});`;
}

/** Everything RELEASED holds reads back the same through the Store of today. */
export async function assertReleasedKept(s: Store): Promise<void> {
  assert.deepEqual(await s.getCredentials("ann", "h"), RELEASED.creds);
  assert.deepEqual(await s.listAccounts("h"), ["ann", "bob"]);
  assert.deepEqual(await s.getRoster("ann", "h"), {
    version: 7,
    items: [
      { jid: "bob@h", name: "Bob", subscription: "both", ask: false, groups: ["friends"] },
      { jid: "cy@h", subscription: "none", ask: true, groups: [] },
    ],
  });
  assert.deepEqual(await s.getPendingIn("ann", "h"), [{ contact: "dee@h", stanza: "<presence/>" }]);
  assert.deepEqual(await s.getBlocklist("ann", "h"), ["spam@x"]);
  assert.equal(await vcards(s).get("ann", "h"), RELEASED.vcard);
  assert.deepEqual(await privates(s).keys("ann", "h"), Object.keys(RELEASED.private).toSorted());
  for (const [key, xml] of Object.entries(RELEASED.private)) {
    assert.equal(await privates(s).get("ann", "h", key), xml);
  }
  for (const [service, rooms] of Object.entries(RELEASED.rooms)) {
    const sorted = Object.entries(rooms).toSorted(([a], [b]) => a < b ? -1 : 1);
    const entries = sorted.map(([room, state]) => [room, JSON.parse(state)]);
    assert.deepEqual(await s.map(STORES.rooms).entries("", service), entries);
  }
  const secret = new Uint8Array(RELEASED.secret.match(/../g)!.map((h) => parseInt(h, 16)));
  assert.deepEqual(await s.clusterSecret(), secret);
  // The offline queue keeps its order and its ids go on growing.
  assert.equal(await s.pushOffline("ann", "h", "<m3/>", 10), true);
  assert.deepEqual(await s.takeOffline("ann", "h"), ["<m1/>", "<m2/>", "<m3/>"]);
  // Keys still hold, and deleting the account takes what moved into the shapes with it.
  assert.equal(await s.createAccount("ann", "h", RELEASED.creds as never), false);
  assert.equal(await privates(s).set("ann", "h", "new", "<n/>", { max: 2 }), false);
  assert.ok(await s.deleteAccount("ann", "h"));
  assert.equal(await vcards(s).get("ann", "h"), null);
  assert.deepEqual(await privates(s).keys("ann", "h"), []);
  assert.equal((await s.getRoster("ann", "h")).items.length, 0);
  assert.deepEqual(await s.clusterSecret(), secret, "the secret belongs to no account");
  const rooms = await s.map(STORES.rooms).entries("", "conf.h");
  assert.equal(rooms.length, 2, "rooms belong to no account");
}

/** The released migrations' text is as it shipped: `pinned` holds SHA-256 prefixes of each. */
export async function assertReleasedUnedited(
  migrations: string[],
  pinned: string[],
): Promise<void> {
  const digests = await Promise.all(
    migrations.slice(0, pinned.length).map(async (m) => {
      const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(m));
      return Array.from(new Uint8Array(hash), (b) => b.toString(16).padStart(2, "0")).join("");
    }),
  );
  assert.deepEqual(digests.map((d) => d.slice(0, 16)), pinned);
}
