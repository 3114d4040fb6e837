// Opens the configured storage backend: the embedded SQLite file, or a PostgreSQL database shared
// by the nodes of a cluster.
import { join } from "node:path";
import type { Config } from "../config/schema.ts";
import type { Store } from "./store.ts";
import { SqliteStore } from "./sqlite.ts";
import { PostgresStore } from "./postgres.ts";

export function storePath(config: Config): string {
  return config.storage.path ?? join(config.data_dir, "parley.db");
}

export async function openStore(config: Config): Promise<Store> {
  const { storage } = config;
  if (storage.type === "postgres") return await PostgresStore.open(storage.url!, storage.pool);
  return new SqliteStore(storePath(config));
}
