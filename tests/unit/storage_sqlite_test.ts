import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { SqliteStore } from "../../src/storage/sqlite.ts";
import { ACCOUNT_TABLES, StoreBusyError, STORES } from "../../src/storage/store.ts";
import { MIGRATIONS } from "../../src/storage/sqlite_migrations.ts";
import {
  assertReleasedKept,
  assertReleasedUnedited,
  releasedInserts,
  storageSuite,
} from "./storage_suite.ts";

storageSuite({
  name: "sqlite",
  async open() {
    const path = join(await Deno.makeTempDir(), "test.db");
    return { store: new SqliteStore(path), reopen: () => Promise.resolve(new SqliteStore(path)) };
  },
});

Deno.test("sqlite: a process killed mid-write loses no committed data and corrupts nothing", async () => {
  const path = join(await Deno.makeTempDir(), "crash.db");
  new SqliteStore(path).close();
  // A child process writes offline messages in a tight loop and is killed with SIGKILL.
  const script = `
    import { SqliteStore } from "${new URL("../../src/storage/sqlite.ts", import.meta.url).href}";
    const s = new SqliteStore(${JSON.stringify(path)});
    for (let i = 0; ; i++) {
      await s.pushOffline("u", "h", "<m n='" + i + "'/>", 1e9);
      if (i === 200) console.log("ready");
    }`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--config", new URL("../../deno.json", import.meta.url).pathname, script],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.match(new TextDecoder().decode(value), /ready/);
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  await child.stdout.cancel();
  const s = new SqliteStore(path);
  const msgs = await s.takeOffline("u", "h");
  await s.close();
  assert.ok(msgs.length > 200, `only ${msgs.length} messages survived`);
  // Committed writes are contiguous: nothing in the middle is lost.
  msgs.forEach((m, i) => assert.equal(m, `<m n='${i}'/>`));
});

Deno.test("sqlite: migrations are recorded and not run twice", async () => {
  const path = join(await Deno.makeTempDir(), "mig.db");
  await new SqliteStore(path).close();
  const again = new SqliteStore(path);
  assert.equal(await again.createAccount("a", "h", JSON.parse('{"SHA-1":{},"SHA-256":{}}')), true);
  await again.close();
});

Deno.test("sqlite: a database locked by another connection rejects writes as busy, soon", async () => {
  const path = join(await Deno.makeTempDir(), "locked.db");
  const s = new SqliteStore(path);
  const vcards = s.keyval<string>(STORES.vcard);
  await vcards.set("u", "h", "<vCard/>");
  const other = new DatabaseSync(path);
  other.exec("BEGIN EXCLUSIVE");
  try {
    const started = performance.now();
    await assert.rejects(vcards.set("u", "h", "<vCard>2</vCard>"), StoreBusyError);
    await assert.rejects(
      s.updateRosterItem("u", "h", "a@b", () => ({
        jid: "a@b",
        subscription: "none",
        ask: false,
        groups: [],
      })),
      StoreBusyError,
    );
    // Bounded: a retry-later answer, not a wait without end.
    assert.ok(performance.now() - started < 3000);
    // Reads still work (WAL), and writes again once the lock is gone.
    assert.equal(await vcards.get("u", "h"), "<vCard/>");
  } finally {
    other.exec("ROLLBACK");
    other.close();
  }
  await vcards.set("u", "h", "<vCard>3</vCard>");
  assert.equal(await vcards.get("u", "h"), "<vCard>3</vCard>");
  await s.close();
});

Deno.test("sqlite: writes waiting for another connection's lock leave the event loop free", async () => {
  const path = join(await Deno.makeTempDir(), "waiting.db");
  const s = new SqliteStore(path);
  const vcards = s.keyval<string>(STORES.vcard);
  const other = new DatabaseSync(path);
  other.exec("BEGIN IMMEDIATE");
  // The event loop's lag, measured by a timer that should fire every 5 ms.
  let maxLag = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxLag = Math.max(maxLag, now - last - 5);
    last = now;
  }, 5);
  try {
    const writes = Array.from(
      { length: 20 },
      (_, i) => vcards.set(`u${i}`, "h", `<vCard>${i}</vCard>`),
    );
    const order: number[] = [];
    writes.forEach((w, i) => w.then(() => order.push(i)));
    await new Promise((r) => setTimeout(r, 200));
    other.exec("COMMIT"); // the lock is released: the queued writes go through, in order
    await Promise.all(writes);
    assert.deepEqual(order, order.toSorted((a, b) => a - b));
    assert.equal(await vcards.get("u19", "h"), "<vCard>19</vCard>");
    // Held past the bound: the writes are refused as busy, each within the bound.
    other.exec("BEGIN IMMEDIATE");
    const started = performance.now();
    const refused = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => vcards.set(`v${i}`, "h", "<vCard/>")),
    );
    assert.ok(refused.every((r) => r.status === "rejected" && r.reason instanceof StoreBusyError));
    assert.ok(performance.now() - started < 2000, "all refused within about the bound");
    other.exec("ROLLBACK");
  } finally {
    clearInterval(timer);
    other.close();
    await s.close();
  }
  // 20 writes each blocking for SQLite's busy timeout stalled the loop for seconds.
  assert.ok(maxLag < 100, `the event loop lagged ${maxLag.toFixed(0)} ms`);
});

Deno.test("sqlite: a database written before the shapes (column `user`) migrates forward, data kept", async () => {
  const path = join(await Deno.makeTempDir(), "old.db");
  // The schema as the release before the shapes made it: its three migrations, then its data.
  const old = new DatabaseSync(path);
  for (const [v, m] of MIGRATIONS.slice(0, 3).entries()) {
    old.exec(m);
    old.exec(`PRAGMA user_version = ${v + 1}`);
  }
  const creds = { "SHA-1": { salt: "s" }, "SHA-256": { salt: "t" } };
  old.exec(`
    INSERT INTO accounts (host, user, credentials, created_at)
      VALUES ('h', 'ann', '${JSON.stringify(creds)}', 1), ('h', 'bob', '{}', 2);
    INSERT INTO roster_items (host, user, contact, name, subscription, ask, groups)
      VALUES ('h', 'ann', 'bob@h', 'Bob', 'both', 0, '["friends"]');
    INSERT INTO roster_versions (host, user, version) VALUES ('h', 'ann', 7);
    INSERT INTO pending_in (host, user, contact, stanza) VALUES ('h', 'ann', 'cy@h', '<presence/>');
    INSERT INTO offline (host, user, stanza, stored_at)
      VALUES ('h', 'ann', '<m1/>', 1), ('h', 'ann', '<m2/>', 2);
    INSERT INTO vcards (host, user, vcard) VALUES ('h', 'ann', '<vCard/>');
    INSERT INTO private_storage (host, user, key, xml) VALUES ('h', 'ann', 'k', '<x/>');
    INSERT INTO blocklist (host, user, jid) VALUES ('h', 'ann', 'spam@x');
    INSERT INTO muc_rooms (service, room, state) VALUES ('conf.h', 'r', '{"v":1}');
    INSERT INTO secrets (name, value) VALUES ('cluster', x'${"ab".repeat(32)}');`);
  old.close();

  const s = new SqliteStore(path);
  try {
    assert.deepEqual(await s.getCredentials("ann", "h"), creds);
    assert.deepEqual(await s.listAccounts("h"), ["ann", "bob"]);
    assert.deepEqual(await s.getRoster("ann", "h"), {
      version: 7,
      items: [{ jid: "bob@h", name: "Bob", subscription: "both", ask: false, groups: ["friends"] }],
    });
    assert.deepEqual(await s.getPendingIn("ann", "h"), [{
      contact: "cy@h",
      stanza: "<presence/>",
    }]);
    assert.equal(await s.keyval(STORES.vcard).get("ann", "h"), "<vCard/>");
    assert.equal(await s.map(STORES.private).get("ann", "h", "k"), "<x/>");
    assert.deepEqual(await s.getBlocklist("ann", "h"), ["spam@x"]);
    assert.deepEqual(await s.map(STORES.rooms).get("", "conf.h", "r"), { v: 1 });
    assert.deepEqual(await s.clusterSecret(), new Uint8Array(32).fill(0xab));
    // The offline queue keeps its order and its ids go on growing.
    assert.equal(await s.pushOffline("ann", "h", "<m3/>", 10), true);
    assert.deepEqual(await s.takeOffline("ann", "h"), ["<m1/>", "<m2/>", "<m3/>"]);
    // Both backends now name the owner column alike; keys still hold.
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      for (const t of ["accounts", ...ACCOUNT_TABLES]) {
        const cols = (db.prepare(`PRAGMA table_info(${t})`).all() as { name: string }[])
          .map((c) => c.name);
        assert.ok(cols.includes("username") && !cols.includes("user"), `${t}: ${cols}`);
      }
    } finally {
      db.close();
    }
    assert.equal(await s.createAccount("ann", "h", creds as never), false);
    assert.ok(await s.deleteAccount("ann", "h"));
    assert.equal((await s.getRoster("ann", "h")).items.length, 0);
    assert.equal(await s.keyval(STORES.vcard).get("ann", "h"), null);
  } finally {
    await s.close();
  }
});

/** The migrations of the release that kept vCards, private XML, rooms and secrets in tables. */
const RELEASED_MIGRATIONS = 5;

Deno.test("sqlite: a database of the release before features moved into the shapes migrates forward, every value kept", async () => {
  const path = join(await Deno.makeTempDir(), "released.db");
  const old = new DatabaseSync(path);
  for (const [v, m] of MIGRATIONS.slice(0, RELEASED_MIGRATIONS).entries()) {
    old.exec(m);
    old.exec(`PRAGMA user_version = ${v + 1}`);
  }
  old.exec(releasedInserts((hex) => `x'${hex}'`));
  old.close();
  const s = new SqliteStore(path);
  try {
    await assertReleasedKept(s);
  } finally {
    await s.close();
  }
  // The old tables are gone; the version is recorded.
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as {
      name: string;
    }[]).map((t) => t.name);
    for (const gone of ["vcards", "private_storage", "muc_rooms", "secrets"]) {
      assert.ok(!tables.includes(gone), `${gone} is still there`);
    }
    assert.equal(db.prepare("PRAGMA user_version").get()!.user_version, MIGRATIONS.length);
  } finally {
    db.close();
  }
});

Deno.test("sqlite: released migrations are never edited", async () => {
  await assertReleasedUnedited(MIGRATIONS, [
    "089933ea9ecb91d9",
    "c169fcc2b52034d7",
    "b309fe3fd042a1a2",
    "14ff971f6d430b38",
    "e54e34d9c6f75497",
  ]);
});

Deno.test("sqlite: read-modify-writes at once on one store stay atomic, other calls wait their turn", async () => {
  const s = new SqliteStore(join(await Deno.makeTempDir(), "atomic.db"));
  const vcards = s.keyval<string>(STORES.vcard);
  try {
    const N = 20;
    const max = 5;
    const [changes, pushed, capped] = await Promise.all([
      Promise.all(
        Array.from({ length: N }, (_, i) =>
          s.updateRosterItem("u", "h", "c@d", (old) => ({
            jid: "c@d",
            subscription: "none",
            ask: false,
            groups: [...old?.groups ?? [], `g${i}`],
          }))),
      ),
      Promise.all(Array.from({ length: N }, (_, i) => s.pushOffline("u", "h", `<m${i}/>`, max))),
      Promise.all(
        Array.from({ length: N }, (_, i) => s.map("m").set("u", "h", `k${i}`, i, { max })),
      ),
      // Single statements and reads in between.
      Promise.all(Array.from({ length: N }, (_, i) => vcards.set(`v${i}`, "h", `<v${i}/>`))),
      Promise.all(Array.from({ length: N }, () => s.getRoster("u", "h"))),
    ]);
    assert.deepEqual(changes.map((c) => c!.version), Array.from({ length: N }, (_, i) => i + 1));
    const roster = await s.getRoster("u", "h");
    assert.equal(roster.version, N);
    assert.equal(roster.items[0].groups.length, N, "an update was lost");
    assert.deepEqual(pushed.filter(Boolean).length, max);
    assert.equal((await s.takeOffline("u", "h")).length, max);
    assert.deepEqual(capped.filter(Boolean).length, max);
    assert.equal((await s.map("m").keys("u", "h")).length, max);
    // A write made while another call's transaction is open is not rolled back with it.
    const failing = s.updateRosterItem("u", "h", "x@d", () => {
      throw new Error("refused");
    });
    const written = vcards.set("w", "h", "<kept/>");
    await assert.rejects(failing, /refused/);
    await written;
    assert.equal(await vcards.get("w", "h"), "<kept/>");
    assert.equal(await s.getRosterItem("u", "h", "x@d"), null);
  } finally {
    await s.close();
  }
});

Deno.test("sqlite: the log is checkpointed off the event loop, by the worker thread", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "p.db");
  const s = new SqliteStore(path);
  try {
    const before = (await Deno.stat(path)).size;
    const payload = "x".repeat(2000);
    await s.archive("mam").appendMany(
      Array.from({ length: 500 }, (_, i) => ({
        user: "u",
        host: "h",
        item: { id: `i${i}`, at: i, payload, text: "words" },
      })),
    );
    // The server's connection never checkpoints by itself: the rows reach the database file
    // when the worker copies the log there.
    const walOnly = (await Deno.stat(path)).size;
    assert.equal(walOnly, before, "no checkpoint inside the commit");
    const deadline = Date.now() + 5000;
    while ((await Deno.stat(path)).size < before + 500 * 2000 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok((await Deno.stat(path)).size >= before + 500 * 2000, "checkpointed within 5 s");
    assert.equal((await s.archive("mam").query("u", "h", { max: 0 })).count, 500);
  } finally {
    await s.close();
  }
});
