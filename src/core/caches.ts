// Caches of stored data that every node of a cluster keeps for itself (blocklists) must not serve
// a stale value after a write was acknowledged anywhere: the writer invalidates the key on every
// other node, and waits until each has dropped it (or is declared gone), before it answers. A
// node that loses or regains a link may have missed invalidations: it drops everything. On a
// single node there is nobody to tell and invalidate() resolves at once.
export type Clear = (key?: string) => void;

export class SharedCaches {
  #caches = new Map<string, Clear>();
  /** Set by the cluster: tells the other nodes, resolves when they have all dropped the key. */
  broadcast: ((cache: string, key: string) => Promise<void>) | undefined;

  /** `clear(key)` drops one key of cache `name`; `clear()` drops all of it. */
  register(name: string, clear: Clear): void {
    this.#caches.set(name, clear);
  }

  /** Drops `key` of cache `name` on every other node (this node updates its own copy). */
  invalidate(name: string, key: string): Promise<void> {
    return this.broadcast?.(name, key) ?? Promise.resolve();
  }

  /** Drops a key another node invalidated, or with no name everything. */
  clear(name?: string, key?: string): void {
    if (name === undefined) { for (const clear of this.#caches.values()) clear(); }
    else this.#caches.get(name)?.(key);
  }
}
