// Runs async tasks one after another per key (an account), so storage-backed handling of one
// account's stanzas (roster changes, subscriptions, offline storage) keeps their order. A failed
// task never stops the queue: the tasks after it still run. The order holds on this node only:
// nodes sharing a store run their tasks for one account at the same time, so correctness never
// rests on these queues: every read-modify-write is one atomic store operation (store.ts).
import { logger } from "../log/logger.ts";

const log = logger("core");

export class SerialQueues {
  #tails = new Map<string, Promise<void>>();

  /**
   * Queues `task` behind the key's earlier tasks; the promise settles with its outcome and
   * rejects when it fails, so whoever asked (an iq) can be answered with an error.
   */
  call<T>(key: string, task: () => Promise<T>): Promise<T> {
    const result = (this.#tails.get(key) ?? Promise.resolve()).then(task);
    const tail = result.then(noop, noop);
    this.#tails.set(key, tail);
    tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return result;
  }

  /** Queues work nobody waits for: a failure is logged, never left unhandled. */
  run(key: string, task: () => Promise<unknown>): void {
    this.call(key, task).catch((e) => {
      log.error("task for {key} failed: {error}", { key, error: String(e?.stack ?? e) });
    });
  }

  /** Resolves when every queued task has finished (used at shutdown). */
  async idle(): Promise<void> {
    while (this.#tails.size) await Promise.all(this.#tails.values());
  }
}

function noop(): void {}
