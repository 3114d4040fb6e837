// Retention of the message archives: entries older than `mam.retention` are removed in the
// background (core/retention.ts), 1,000 per statement.
import type { ArchiveStore } from "../storage/store.ts";
import { Retention } from "../core/retention.ts";
import { logger } from "../log/logger.ts";

export function archiveRetention(archive: ArchiveStore, retentionMs: number): Retention {
  return new Retention({
    what: "archived messages",
    log: logger("mam"),
    retentionMs,
    batch: 1000,
    expire: (before, limit) => archive.expire(before, limit),
  });
}
