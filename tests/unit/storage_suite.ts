// The storage contract, run against every backend: each backend's test file calls storageSuite()
// with a factory that opens a fresh store (and reopens an existing one for restart checks).
import assert from "node:assert/strict";
import type { Credentials, RosterItem, Store } from "../../src/storage/store.ts";
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
    const methods = Object.getOwnPropertyNames(Object.getPrototypeOf(s)).filter((m) =>
      m !== "constructor" && m !== "close" &&
      typeof (s as unknown as Record<string, unknown>)[m] === "function"
    ) as (keyof Store)[];
    assert.ok(methods.length >= 20, `only ${methods.length} methods found`);
    for (const m of methods) {
      const call = () => (s[m] as (...a: unknown[]) => Promise<unknown>)("u", "h", "c", "x", 1);
      let result: Promise<unknown>;
      assert.doesNotThrow(() => result = call(), `${m} threw instead of rejecting`);
      await assert.rejects(result!, `${m} did not reject`);
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
}
