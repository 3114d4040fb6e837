// Retention in the background (archived messages, uploaded files): what is older than a
// duration is removed a bounded batch at a time, with a pause between batches, so a large
// backlog (the first run after lowering the retention) never holds the store for long. Every
// node of a cluster runs it: removing what another node removed already costs a statement.
import type { Logger } from "@logtape/logtape";
import { logFailure } from "./failure.ts";

/** Pause between batches while a backlog lasts, and between runs once it is gone. */
const BETWEEN_BATCHES_MS = 100;
const BETWEEN_RUNS_MS = 10 * 60_000;
/** The first run waits this long after start (and a random part of it more, across nodes). */
const FIRST_RUN_MS = 30_000;

export interface RetentionOf {
  /** What is removed, for the logs ("archived messages"). */
  what: string;
  log: Logger;
  /** How long a thing is kept (ms). */
  retentionMs: number;
  /** Most things removed by one call of `expire`. */
  batch: number;
  /** Removes at most `limit` things from before `before`; how many. */
  expire(before: number, limit: number): Promise<number>;
}

export class Retention {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** Things removed since start (/metrics). */
  removed = 0;

  constructor(readonly of: RetentionOf) {}

  start(delay = FIRST_RUN_MS * (1 + Math.random())): void {
    this.#schedule(delay);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** Removes one batch of what is past retention; how many. */
  async expireOnce(now = Date.now()): Promise<number> {
    const n = await this.of.expire(now - this.of.retentionMs, this.of.batch);
    this.removed += n;
    return n;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    const { what, log, batch } = this.of;
    this.#timer = setTimeout(() => {
      this.expireOnce().then(
        (n) => {
          if (n > 0) log.info("removed {n} {what} past retention", { n, what });
          this.#schedule(n === batch ? BETWEEN_BATCHES_MS : BETWEEN_RUNS_MS);
        },
        (e) => {
          logFailure(`removing ${what} past retention`, e, log);
          this.#schedule(BETWEEN_RUNS_MS);
        },
      );
    }, ms);
  }
}
