// Archive writes, batched: what the archives are given while one write is under way goes into the
// next, one transaction per MAX_BATCH entries of it (group commit), so archiving costs routing no
// wait and the store few transactions. A write repeated (a retry, a resent message) adds
// nothing: entries are idempotent by id. A busy or unreachable store is retried until it answers
// (the entries wait in memory meanwhile); an entry the store refuses otherwise is dropped, logged.
// Whoever must know that an entry is stored (stream management counts a client's message as
// handled only then) waits on `stored()`.
import type { ArchiveEntry, ArchiveStore } from "../storage/store.ts";
import { StoreBusyError } from "../storage/store.ts";
import { logFailure } from "../core/failure.ts";
import { logger } from "../log/logger.ts";

const log = logger("mam");

const FIRST_RETRY_MS = 100;
/** Entries per transaction: bounds how long one holds the store (and SQLite the event loop). */
const MAX_BATCH = 500;
const MAX_RETRY_MS = 5000;
/** How long stopping waits for a busy or unreachable store to take what is waiting. */
const STOP_WAIT_MS = 10_000;

interface Batch {
  entries: PendingEntry[];
  done: Promise<void>;
  resolve: () => void;
}

function batch(): Batch {
  const { promise, resolve } = Promise.withResolvers<void>();
  return { entries: [], done: promise, resolve };
}

/** An entry to write, unless `keep` (a preference decided at write time) says otherwise. */
export interface PendingEntry extends ArchiveEntry {
  keep?: () => Promise<boolean>;
}

async function kept(entries: PendingEntry[]): Promise<ArchiveEntry[]> {
  if (!entries.some((e) => e.keep)) return entries;
  const keep = await Promise.all(entries.map((e) => e.keep?.() ?? true));
  return entries.filter((_, i) => keep[i]);
}

export class ArchiveWriter {
  #collecting: Batch | undefined;
  #writing: Batch | undefined;
  #stopped = false;
  /** Entries stored, and dropped after the store refused them (/metrics). */
  written = 0;
  dropped = 0;

  constructor(readonly archive: ArchiveStore) {}

  /** Entries waiting to be written, and being written. */
  get backlog(): number {
    return (this.#collecting?.entries.length ?? 0) + (this.#writing?.entries.length ?? 0);
  }

  add(entry: PendingEntry): void {
    this.#batch().entries.push(entry);
  }

  /**
   * Settles once everything added so far, and in the current task, is stored (or was refused by
   * the store).
   */
  stored(): Promise<void> {
    return this.#batch().done;
  }

  #batch(): Batch {
    if (this.#collecting === undefined) {
      this.#collecting = batch();
      // After the current task: everything it archives goes in one write.
      if (this.#writing === undefined) queueMicrotask(() => this.#next());
    }
    return this.#collecting;
  }

  /**
   * Writes what is waiting, for at most `ms` while the store is busy or unreachable; then stops
   * retrying (what is left is logged as lost).
   */
  async stop(ms = STOP_WAIT_MS): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<boolean>((r) => timer = setTimeout(() => r(true), ms));
    const done = this.stored().then(() => false);
    if (await Promise.race([done, late])) {
      log.error("stopping with {n} archive entries the store did not take", { n: this.backlog });
    }
    clearTimeout(timer);
    this.#stopped = true;
  }

  async #next(): Promise<void> {
    const b = this.#writing = this.#collecting;
    this.#collecting = undefined;
    if (!b) return;
    // A transaction at a time of at most MAX_BATCH entries, the event loop free in between
    // (SQLite writes on it).
    for (let i = 0; i < b.entries.length; i += MAX_BATCH) {
      if (i > 0) await new Promise((r) => setTimeout(r, 0));
      await this.#write(b.entries.slice(i, i + MAX_BATCH));
    }
    this.#writing = undefined;
    b.resolve();
    if (this.#collecting) void this.#next();
  }

  async #write(entries: PendingEntry[]): Promise<void> {
    if (entries.length === 0) return;
    for (let wait = FIRST_RETRY_MS;; wait = Math.min(wait * 2, MAX_RETRY_MS)) {
      try {
        return await this.#append(entries);
      } catch (e) {
        if (this.#stopped) {
          this.dropped += entries.length;
          return logFailure(`archiving ${entries.length} messages while stopping`, e, log);
        }
        if (!(e instanceof StoreBusyError)) return this.#oneByOne(entries, e);
        logFailure(`archiving ${entries.length} messages (retried in ${wait} ms)`, e, log);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /** Writes the entries their preferences keep. */
  async #append(entries: PendingEntry[]): Promise<void> {
    const keep = await kept(entries);
    if (keep.length) await this.archive.appendMany(keep);
    this.written += keep.length;
  }

  /** The store refused a batch: each entry is tried alone, and those it refuses are dropped. */
  async #oneByOne(entries: PendingEntry[], e: unknown): Promise<void> {
    logFailure(`archiving ${entries.length} messages`, e, log);
    if (entries.length === 1) {
      this.dropped++;
      return;
    }
    for (const entry of entries) {
      try {
        await this.#append([entry]);
      } catch (e) {
        this.dropped++;
        logFailure(`archiving message ${entry.item.id} of ${entry.user}@${entry.host}`, e, log);
      }
    }
  }
}
