// A worker thread that checkpoints the SQLite store's write-ahead log (copies it into the
// database file, with the fsync that takes), so the server's event loop never waits for it: the
// server's connection does no automatic checkpoints (wal_autocheckpoint=0), and this one runs a
// passive checkpoint (one that waits for no reader or writer) every CHECKPOINT_MS. Its own
// connection, as any other process's: SQLite serializes them.
import { DatabaseSync } from "node:sqlite";

/** How often the log is copied into the database. */
const CHECKPOINT_MS = 1000;

/** What the worker is told: the database to checkpoint, or to stop. */
export type CheckpointerMessage = { path: string } | { stop: true };

/** What the worker says: a checkpoint failed (the server logs it). */
export interface CheckpointerReport {
  error: string;
}

declare const self: Worker & { close(): void };

let db: DatabaseSync | undefined;
let timer: ReturnType<typeof setInterval> | undefined;

self.onmessage = (e: MessageEvent<CheckpointerMessage>) => {
  const m = e.data;
  if ("stop" in m) {
    clearInterval(timer);
    db?.close();
    self.close();
    return;
  }
  db = new DatabaseSync(m.path);
  // Waiting for a lock blocks only this thread.
  db.exec("PRAGMA busy_timeout=1000");
  timer = setInterval(() => {
    try {
      db!.exec("PRAGMA wal_checkpoint(PASSIVE)");
    } catch (err) {
      self.postMessage({ error: String((err as Error)?.message ?? err) } as CheckpointerReport);
    }
  }, CHECKPOINT_MS);
};
