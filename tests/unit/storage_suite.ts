// The storage contract, run against every backend: each backend's test file calls storageSuite()
// with a factory that opens a fresh store (and reopens an existing one for restart checks).
import assert from "node:assert/strict";
import {
  type ArchivePage,
  type Credentials,
  type RosterItem,
  type Store,
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
    await s.setVcard("a", "h", "<vCard/>");
    await s.block("a", "h", ["m@n"]);
    assert.equal(await s.deleteAccount("a", "h"), true);
    assert.equal(await s.deleteAccount("a", "h"), false);
    assert.equal((await s.getRoster("a", "h")).items.length, 0);
    assert.deepEqual(await s.takeOffline("a", "h"), []);
    assert.equal(await s.getVcard("a", "h"), null);
    assert.deepEqual(await s.getBlocklist("a", "h"), []);
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
      assert.deepEqual(await s.getPendingIn("u", "h"), [{
        contact: "c@d",
        stanza: "<presence type='subscribe'/>",
      }]);
      assert.equal(await s.removePendingIn("u", "h", "c@d"), true);
      assert.equal(await s.removePendingIn("u", "h", "c@d"), false);
      assert.equal(await s.pushOffline("u", "h", "<m1/>", 2), true);
      assert.equal(await s.pushOffline("u", "h", "<m2/>", 2), true);
      assert.equal(await s.pushOffline("u", "h", "<m3/>", 2), false);
      assert.deepEqual(await s.takeOffline("u", "h"), ["<m1/>", "<m2/>"]);
      assert.deepEqual(await s.takeOffline("u", "h"), []);
      await s.setVcard("u", "h", "<vCard>1</vCard>");
      await s.setVcard("u", "h", "<vCard>2</vCard>");
      assert.equal(await s.getVcard("u", "h"), "<vCard>2</vCard>");
      assert.equal(await s.setPrivate("u", "h", "k", "<x/>", 2), true);
      assert.equal(await s.getPrivate("u", "h", "k"), "<x/>");
      assert.equal(await s.getPrivate("u", "h", "other"), null);
      // At most `max` keys; replacing a stored key is always allowed.
      assert.equal(await s.setPrivate("u", "h", "k2", "<y/>", 2), true);
      assert.equal(await s.setPrivate("u", "h", "k3", "<z/>", 2), false);
      assert.equal(await s.getPrivate("u", "h", "k3"), null);
      assert.equal(await s.setPrivate("u", "h", "k", "<x2/>", 2), true);
      assert.equal(await s.getPrivate("u", "h", "k"), "<x2/>");
      await s.block("u", "h", ["a@b", "c"]);
      await s.block("u", "h", ["a@b"]);
      assert.deepEqual(await s.getBlocklist("u", "h"), ["a@b", "c"]);
      await s.unblock("u", "h", ["c"]);
      assert.deepEqual(await s.getBlocklist("u", "h"), ["a@b"]);
      await s.unblock("u", "h", null);
      assert.deepEqual(await s.getBlocklist("u", "h"), []);
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
    const shapes = [s.keyval("n"), s.map("n"), s.archive("n")];
    const methods = (o: object) =>
      Object.getOwnPropertyNames(Object.getPrototypeOf(o)).filter((m) =>
        m !== "constructor" && m !== "close" && !["keyval", "map", "archive"].includes(m) &&
        typeof (o as unknown as Record<string, unknown>)[m] === "function"
      );
    assert.ok(methods(s).length >= 20, `only ${methods(s).length} methods found`);
    const args: Record<string, unknown[]> = {
      append: ["u", "h", { at: 1, payload: "<x/>" }],
      query: ["u", "h", { max: 5 }],
      expire: [1],
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

  t("MUC rooms: saved per service, replaced, deleted, kept across a reopen", async (s, reopen) => {
    assert.deepEqual(await s.loadRooms("conf.h"), []);
    await s.saveRoom("conf.h", "b", '{"v":1}');
    await s.saveRoom("conf.h", "a", '{"v":2}');
    await s.saveRoom("other.h", "a", '{"v":3}');
    await s.saveRoom("conf.h", "b", '{"v":4}');
    await s.deleteRoom("conf.h", "missing");
    const s2 = await reopen();
    assert.deepEqual(await s2.loadRooms("conf.h"), [
      { room: "a", state: '{"v":2}' },
      { room: "b", state: '{"v":4}' },
    ]);
    await s2.deleteRoom("conf.h", "a");
    assert.deepEqual(await s2.loadRooms("conf.h"), [{ room: "b", state: '{"v":4}' }]);
    assert.deepEqual(await s2.loadRooms("other.h"), [{ room: "a", state: '{"v":3}' }]);
    assert.equal(await s2.loadRoom("conf.h", "b"), '{"v":4}');
    assert.equal(await s2.loadRoom("conf.h", "a"), null);
    assert.equal(await s2.loadRoom("other.h", "a"), '{"v":3}');
  });

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
    },
  );

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
      const kept = await both((node, i) => node.setPrivate("u", "h", `k${i}`, "<x/>", max));
      assert.equal(kept.filter(Boolean).length, max);
    },
  );

  t("a write on one node is read at once on another, every time", async (s, reopen) => {
    const other = await reopen();
    for (let i = 0; i < 50; i++) {
      await s.setVcard("u", "h", `<vCard>${i}</vCard>`);
      assert.equal(await other.getVcard("u", "h"), `<vCard>${i}</vCard>`);
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
    assert.equal(await other.deleteAccount("u", "h"), true);
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
