// Opens the configured storage backend.
import { join } from "node:path";
import type { Config } from "../config/schema.ts";
import type { Store } from "./store.ts";
import { SqliteStore } from "./sqlite.ts";

export function storePath(config: Config): string {
  return config.storage.path ?? join(config.data_dir, "parley.db");
}

export function openStore(config: Config): Store {
  return new SqliteStore(storePath(config));
}
