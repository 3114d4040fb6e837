// A per-node cache of something stored per account (a blocklist, archiving preferences), bounded,
// that never serves a stale value in a cluster: another node that changes an account's value
// drops it here before it answers (SharedCaches), and a load under way meanwhile is used once,
// not kept. Loads of one account at once share one read.
import type { Jid } from "../jid/jid.ts";
import type { SharedCaches } from "./caches.ts";

const CACHE_MAX = 10_000;

export class AccountCache<T> {
  #cache = new Map<string, T>();
  #loading = new Map<string, Promise<T>>();
  /** Counts invalidations: a load kept only if none happened while it ran. */
  #epoch = 0;

  constructor(
    readonly caches: SharedCaches,
    /** The cache's name among the node's (the same on every node). */
    readonly name: string,
    readonly read: (account: Jid) => Promise<T>,
  ) {
    caches.register(name, (bare) => {
      this.#epoch++;
      if (bare === undefined) {
        this.#cache.clear();
        this.#loading.clear();
      } else {
        this.#cache.delete(bare);
        this.#loading.delete(bare);
      }
    });
  }

  /** Tells the other nodes that `account`'s value changed; resolves once they dropped it. */
  changed(account: Jid): Promise<void> {
    return this.caches.invalidate(this.name, account.bare);
  }

  cached(bare: string): T | undefined {
    return this.#cache.get(bare);
  }

  /** Replaces this node's copy (after a write of it here). */
  set(bare: string, value: T): void {
    this.#epoch++;
    this.#loading.delete(bare);
    this.#keep(bare, value);
  }

  load(account: Jid): Promise<T> {
    const bare = account.bare;
    if (this.#cache.has(bare)) return Promise.resolve(this.#cache.get(bare)!);
    let p = this.#loading.get(bare);
    if (!p) {
      const epoch = this.#epoch;
      p = this.read(account).then((value) => {
        if (epoch === this.#epoch) this.#keep(bare, value); // else maybe stale: used once
        return value;
      }).finally(() => {
        if (this.#loading.get(bare) === p) this.#loading.delete(bare); // a failure is retried
      });
      this.#loading.set(bare, p);
    }
    return p;
  }

  #keep(bare: string, value: T): void {
    if (this.#cache.size >= CACHE_MAX) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(bare, value);
  }
}
