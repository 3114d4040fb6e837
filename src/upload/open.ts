// Opens the file store the configuration implies: the shared PostgreSQL when the store is one (a
// cluster: every node reads every file), else a directory under `data_dir`.
import { join } from "node:path";
import type { Config } from "../config/schema.ts";
import { openPostgres } from "../storage/postgres.ts";
import type { FileStore } from "./file_store.ts";
import { DiskFileStore } from "./disk_store.ts";
import { PostgresFileStore } from "./postgres_store.ts";

/**
 * Connections of the upload store's own pool: each upload or download holds one only for the
 * statement it runs (a chunk), so a few serve many at once.
 */
const POOL = 4;

/** Where a single node keeps uploaded files. */
export function uploadDir(config: Config): string {
  return join(config.data_dir, "uploads");
}

export async function openFileStore(config: Config): Promise<FileStore> {
  const { storage } = config;
  if (storage.type === "postgres") {
    return new PostgresFileStore(await openPostgres(storage.url!, POOL));
  }
  return new DiskFileStore(uploadDir(config));
}
