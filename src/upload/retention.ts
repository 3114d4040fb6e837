// Retention of uploaded files: those older than `upload.retention` are removed in the background, a
// bounded batch at a time with a pause between batches (a backlog never holds the store for long),
// as the message archive's retention does (src/mam/retention.ts). Each batch also removes what
// unfinished uploads left long ago. Every node of a cluster runs it: removing what another node
// removed already costs a statement, nothing more.
import type { FileStore } from "./file_store.ts";
import type { UploadCounts } from "./counts.ts";
import { logFailure } from "../core/failure.ts";
import { logger } from "../log/logger.ts";

const log = logger("upload");

/** Files removed per batch (a large file is many rows in PostgreSQL). */
const BATCH = 100;
/** Pause between batches while a backlog lasts, and between runs once it is gone. */
const BETWEEN_BATCHES_MS = 100;
const BETWEEN_RUNS_MS = 10 * 60_000;
/** The first run waits this long after start (and a random part of it more, across nodes). */
const FIRST_RUN_MS = 30_000;

export class UploadRetention {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(
    /** The host whose accounts' files this removes (each host has its own retention). */
    readonly host: string,
    readonly files: FileStore,
    readonly retentionMs: number,
    readonly counts: UploadCounts,
  ) {}

  start(delay = FIRST_RUN_MS * (1 + Math.random())): void {
    this.#schedule(delay);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** Removes one batch of files past retention; how many. */
  async expireOnce(now = Date.now()): Promise<number> {
    const n = await this.files.expire(this.host, now - this.retentionMs, BATCH);
    this.counts.expired += n;
    return n;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.expireOnce().then(
        (n) => {
          if (n > 0) log.info("removed {n} uploaded files past retention", { n });
          this.#schedule(n === BATCH ? BETWEEN_BATCHES_MS : BETWEEN_RUNS_MS);
        },
        (e) => {
          logFailure("removing uploaded files past retention", e, log);
          this.#schedule(BETWEEN_RUNS_MS);
        },
      );
    }, ms);
  }
}
