// The storage contract, run against every backend: each backend's test file calls storageSuite()
// with a factory that opens a fresh store (and reopens an existing one for restart checks).
import assert from "node:assert/strict";
import type { Credentials, Store } from "../../src/storage/store.ts";
import { deriveCredentials } from "../../src/sasl/scram_keys.ts";

export interface Backend {
  name: string;
  /** A fresh, empty store. */
  open(): Promise<{ store: Store; reopen(): Promise<Store> }>;
}

const creds = async (): Promise<Credentials> => (await deriveCredentials("pw", 16))!;

export function storageSuite(b: Backend): void {
  const t = (name: string, fn: (s: Store, reopen: () => Promise<Store>) => Promise<void>) =>
    Deno.test(`${b.name}: ${name}`, async () => {
      const { store, reopen } = await b.open();
      let current = store;
      try {
        await fn(store, async () => current = await reopen());
      } finally {
        await current.close();
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
    await s.putRosterItem("a", "h", { jid: "x@y", subscription: "both", ask: false, groups: [] });
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
    const v1 = await s.putRosterItem("u", "h", {
      jid: "c@d",
      name: "C",
      subscription: "to",
      ask: true,
      groups: ["g1", "g2"],
    });
    const v2 = await s.putRosterItem("u", "h", {
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
    const v3 = await s.deleteRosterItem("u", "h", "e@f");
    assert.ok(v3! > v2);
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
    await s.putRosterItem("p", "h", {
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
  });
}
