// Runs async tasks one after another per key (an account), so storage-backed handling of one
// account's stanzas (roster changes, subscriptions, offline storage) keeps their order.
import { logger } from "../log/logger.ts";

const log = logger("core");

export class SerialQueues {
  #tails = new Map<string, Promise<void>>();

  run(key: string, task: () => Promise<void>): Promise<void> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    const next = prev.then(task).catch((e) => {
      log.error("task for {key} failed: {error}", { key, error: String(e?.stack ?? e) });
    });
    this.#tails.set(key, next);
    next.then(() => {
      if (this.#tails.get(key) === next) this.#tails.delete(key);
    });
    return next;
  }

  /** Resolves when every queued task has finished (used at shutdown). */
  async idle(): Promise<void> {
    while (this.#tails.size) await Promise.all(this.#tails.values());
  }
}
