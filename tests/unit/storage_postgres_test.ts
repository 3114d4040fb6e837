// The storage contract against a real, throwaway PostgreSQL (tests/helpers/postgres.ts), plus
// what only a shared server has: migrations raced by nodes starting at once, and outages.
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import postgres from "postgres";
import { PostgresStore } from "../../src/storage/postgres.ts";
import { SqliteStore } from "../../src/storage/sqlite.ts";
import { StoreBusyError, STORES } from "../../src/storage/store.ts";
import { MIGRATIONS } from "../../src/storage/postgres_migrations.ts";
import { sharedPostgres } from "../helpers/postgres.ts";
import {
  assertReleasedKept,
  assertReleasedUnedited,
  releasedInserts,
  storageSuite,
} from "./storage_suite.ts";

const pg = await sharedPostgres();

storageSuite({
  name: "postgres",
  async open() {
    const url = await pg.database();
    return { store: await PostgresStore.open(url, 4), reopen: () => PostgresStore.open(url, 4) };
  },
});

Deno.test("postgres: nodes starting at once migrate once, one after another", async () => {
  const url = await pg.database();
  const stores = await Promise.all([1, 2, 3, 4].map(() => PostgresStore.open(url, 2)));
  const sql = postgres(url, { max: 1 });
  try {
    assert.deepEqual([...await sql`SELECT version FROM schema_version`], [
      { version: MIGRATIONS.length },
    ]);
  } finally {
    await sql.end();
    for (const s of stores) await s.close();
  }
});

Deno.test("postgres: a database newer than this Parley is refused", async () => {
  const url = await pg.database();
  await (await PostgresStore.open(url, 1)).close();
  const sql = postgres(url, { max: 1 });
  await sql`UPDATE schema_version SET version = version + 1`;
  await sql.end();
  await assert.rejects(PostgresStore.open(url, 1), /newer than this Parley/);
});

Deno.test("postgres: while the server is down every call rejects as busy; then it reconnects", async () => {
  const store = await PostgresStore.open(await pg.database(), 2);
  const vcards = store.keyval<string>(STORES.vcard);
  try {
    await vcards.set("u", "h", "<vCard/>");
    await pg.stop();
    try {
      await assert.rejects(vcards.get("u", "h"), StoreBusyError);
      await assert.rejects(store.pushOffline("u", "h", "<m/>", 5), StoreBusyError);
      await assert.rejects(store.getRoster("u", "h"), StoreBusyError);
      await assert.rejects(store.map("m").set("u", "h", "k", 1, { max: 5 }), StoreBusyError);
    } finally {
      await pg.start();
    }
    assert.equal(await vcards.get("u", "h"), "<vCard/>");
    assert.equal(await store.pushOffline("u", "h", "<m/>", 5), true);
  } finally {
    await store.close();
  }
  await assert.rejects(
    PostgresStore.open("postgres://postgres@127.0.0.1:1/none", 1),
    StoreBusyError,
  );
});

Deno.test("postgres: a database written before the shapes migrates forward, data kept", async () => {
  const url = await pg.database();
  // The schema as the release before the shapes made it (its one migration), then its data.
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const creds = { "SHA-1": { salt: "s" }, "SHA-256": { salt: "t" } };
  try {
    await sql.begin(async (tx) => {
      await tx.unsafe(MIGRATIONS[0]);
      await tx`CREATE TABLE schema_version (version integer NOT NULL)`;
      await tx`INSERT INTO schema_version (version) VALUES (1)`;
      await tx.unsafe(`
        INSERT INTO accounts (host, username, credentials, created_at)
          VALUES ('h', 'ann', '${JSON.stringify(creds)}', 1);
        INSERT INTO roster_items (host, username, contact, name, subscription, ask, groups)
          VALUES ('h', 'ann', 'bob@h', 'Bob', 'both', false, '["friends"]');
        INSERT INTO roster_versions (host, username, version) VALUES ('h', 'ann', 7);
        INSERT INTO offline (host, username, stanza, stored_at) VALUES ('h', 'ann', '<m1/>', 1);
        INSERT INTO vcards (host, username, vcard) VALUES ('h', 'ann', '<vCard/>');
        INSERT INTO muc_rooms (service, room, state) VALUES ('conf.h', 'r', '{"v":1}');`);
    });
  } finally {
    await sql.end();
  }
  const s = await PostgresStore.open(url, 2);
  try {
    assert.deepEqual(await s.getCredentials("ann", "h"), creds);
    assert.deepEqual(await s.getRoster("ann", "h"), {
      version: 7,
      items: [{ jid: "bob@h", name: "Bob", subscription: "both", ask: false, groups: ["friends"] }],
    });
    assert.equal(await s.keyval(STORES.vcard).get("ann", "h"), "<vCard/>");
    assert.deepEqual(await s.map(STORES.rooms).get("", "conf.h", "r"), { v: 1 });
    assert.equal(await s.pushOffline("ann", "h", "<m2/>", 10), true);
    assert.deepEqual(await s.takeOffline("ann", "h"), ["<m1/>", "<m2/>"]);
    await s.archive("mam").append("ann", "h", { at: 1, payload: "<m/>" });
    assert.equal((await s.archive("mam").query("ann", "h", { max: 5 })).count, 1);
  } finally {
    await s.close();
  }
});

/** The migrations of the release that kept vCards, private XML, rooms and secrets in tables. */
const RELEASED_MIGRATIONS = 2;

Deno.test("postgres: a database of the release before features moved into the shapes migrates forward, every value kept", async () => {
  const url = await pg.database();
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql.begin(async (tx) => {
      for (const m of MIGRATIONS.slice(0, RELEASED_MIGRATIONS)) await tx.unsafe(m);
      await tx`CREATE TABLE schema_version (version integer NOT NULL)`;
      await tx`INSERT INTO schema_version (version) VALUES (${RELEASED_MIGRATIONS})`;
      await tx.unsafe(releasedInserts((hex) => `decode('${hex}', 'hex')`));
    });
  } finally {
    await sql.end();
  }
  const s = await PostgresStore.open(url, 2);
  try {
    await assertReleasedKept(s);
  } finally {
    await s.close();
  }
  const check = postgres(url, { max: 1 });
  try {
    const tables = await check`SELECT table_name FROM information_schema.tables
                               WHERE table_schema = 'public'`;
    for (const gone of ["vcards", "private_storage", "muc_rooms", "secrets"]) {
      assert.ok(!tables.some((t) => t.table_name === gone), `${gone} is still there`);
    }
    assert.deepEqual([...await check`SELECT version FROM schema_version`], [
      { version: MIGRATIONS.length },
    ]);
  } finally {
    await check.end();
  }
});

Deno.test("postgres: released migrations are never edited", async () => {
  await assertReleasedUnedited(MIGRATIONS, ["fe6b017a07e39d2b", "e28a58230fe19f3a"]);
});

Deno.test("postgres and sqlite name every column alike", async () => {
  const url = await pg.database();
  await (await PostgresStore.open(url, 1)).close();
  const sql = postgres(url, { max: 1 });
  const pgColumns = new Map<string, string[]>();
  try {
    for (
      const r of await sql`SELECT table_name, column_name FROM information_schema.columns
                           WHERE table_schema = 'public' AND table_name <> 'schema_version'
                           ORDER BY table_name, column_name`
    ) pgColumns.set(r.table_name, [...pgColumns.get(r.table_name) ?? [], r.column_name]);
  } finally {
    await sql.end();
  }
  const path = join(await Deno.makeTempDir(), "cols.db");
  await new SqliteStore(path).close();
  const db = new DatabaseSync(path, { readOnly: true });
  const sqliteColumns = new Map<string, string[]>();
  try {
    const tables = db.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    ).all() as { name: string }[];
    for (const { name } of tables) {
      const cols = (db.prepare(`PRAGMA table_info(${name})`).all() as { name: string }[])
        .map((c) => c.name).sort();
      sqliteColumns.set(name, cols);
    }
  } finally {
    db.close();
  }
  // The full-text index of archives is where they differ by design (Dialect.textIndex): an FTS5
  // table beside SQLite's archive, a column of PostgreSQL's.
  assert.ok(sqliteColumns.has("archive_text"));
  for (const t of [...sqliteColumns.keys()]) {
    if (t.startsWith("archive_text")) sqliteColumns.delete(t);
  }
  // Uploaded files are kept in PostgreSQL's tables by design, by a single node on SQLite on disk
  // (src/upload/disk_store.ts).
  for (const t of ["upload_files", "upload_chunks"]) assert.ok(pgColumns.delete(t), t);
  const archive = pgColumns.get("archive_store")!;
  assert.ok(archive.includes("body_search"));
  pgColumns.set("archive_store", archive.filter((c) => c !== "body_search"));
  const sorted = (m: Map<string, string[]>) =>
    Object.fromEntries([...m].map(([t, c]) => [t, c.toSorted()]).sort());
  assert.deepEqual(sorted(sqliteColumns), sorted(pgColumns));
});
