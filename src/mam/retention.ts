// Retention of the message archives: entries older than `mam.retention` are removed in the
// background, a bounded batch at a time with a pause between batches, so a large backlog (the
// first run after lowering the retention) never holds the store for long. Every node of a cluster
// runs it: deleting what another node deleted already costs a statement, nothing more.
import type { ArchiveStore } from "../storage/store.ts";
import { logFailure } from "../core/failure.ts";
import { logger } from "../log/logger.ts";

const log = logger("mam");

/** Entries removed per statement. */
const BATCH = 1000;
/** Pause between batches while a backlog lasts, and between runs once it is gone. */
const BETWEEN_BATCHES_MS = 100;
const BETWEEN_RUNS_MS = 10 * 60_000;
/** The first run waits this long after start (and a random part of it more, across nodes). */
const FIRST_RUN_MS = 30_000;

export class ArchiveRetention {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** Entries removed since start (/metrics). */
  removed = 0;

  constructor(readonly archive: ArchiveStore, readonly retentionMs: number) {}

  start(delay = FIRST_RUN_MS * (1 + Math.random())): void {
    this.#schedule(delay);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** Removes one batch of expired entries; how many. */
  async expireOnce(now = Date.now()): Promise<number> {
    const n = await this.archive.expire(now - this.retentionMs, BATCH);
    this.removed += n;
    return n;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.expireOnce().then(
        (n) => {
          if (n > 0) log.debug("removed {n} archived messages past retention", { n });
          this.#schedule(n === BATCH ? BETWEEN_BATCHES_MS : BETWEEN_RUNS_MS);
        },
        (e) => {
          logFailure("removing archived messages past retention", e, log);
          this.#schedule(BETWEEN_RUNS_MS);
        },
      );
    }, ms);
  }
}
