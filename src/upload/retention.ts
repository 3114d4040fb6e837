// Retention of uploaded files: those of a host's accounts older than its `upload.retention` are
// removed in the background (core/retention.ts), with what unfinished uploads left long ago.
import type { FileStore } from "./file_store.ts";
import type { UploadCounts } from "./counts.ts";
import { Retention } from "../core/retention.ts";
import { logger } from "../log/logger.ts";

/**
 * The retention of `host`'s files (each host has its own); 100 files a batch (a large file is
 * many rows in PostgreSQL).
 */
export function uploadRetention(
  host: string,
  files: FileStore,
  retentionMs: number,
  counts: UploadCounts,
): Retention {
  return new Retention({
    what: "uploaded files",
    log: logger("upload"),
    retentionMs,
    batch: 100,
    expire: async (before, limit) => {
      const n = await files.expire(host, before, limit);
      counts.expired += n; // with the files removed with their accounts (/metrics)
      return n;
    },
  });
}
