// The storage contract against a real, throwaway PostgreSQL (tests/helpers/postgres.ts), plus
// what only a shared server has: migrations raced by nodes starting at once, and outages.
import assert from "node:assert/strict";
import postgres from "postgres";
import { PostgresStore } from "../../src/storage/postgres.ts";
import { StoreBusyError } from "../../src/storage/store.ts";
import { MIGRATIONS } from "../../src/storage/postgres_migrations.ts";
import { sharedPostgres } from "../helpers/postgres.ts";
import { storageSuite } from "./storage_suite.ts";

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
  try {
    await store.setVcard("u", "h", "<vCard/>");
    await pg.stop();
    try {
      await assert.rejects(store.getVcard("u", "h"), StoreBusyError);
      await assert.rejects(store.pushOffline("u", "h", "<m/>", 5), StoreBusyError);
    } finally {
      await pg.start();
    }
    assert.equal(await store.getVcard("u", "h"), "<vCard/>");
    assert.equal(await store.pushOffline("u", "h", "<m/>", 5), true);
  } finally {
    await store.close();
  }
  await assert.rejects(
    PostgresStore.open("postgres://postgres@127.0.0.1:1/none", 1),
    StoreBusyError,
  );
});
