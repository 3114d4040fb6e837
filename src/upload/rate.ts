// Requests per minute by key (an account, an address), each key its own token bucket: a minute's
// worth may come at once, then they come at the configured pace. The keys remembered are bounded:
// the least recently seen is forgotten first (its next request starts a full bucket).
import { LRUCache } from "lru-cache";
import { TokenBucket } from "../core/token_bucket.ts";

/** Keys remembered at most. */
const KEYS = 10_000;

export class PerMinute {
  readonly #buckets = new LRUCache<string, TokenBucket>({ max: KEYS });

  constructor(readonly perMinute: number) {}

  /** Takes one for `key`: 0 when allowed, else the milliseconds until one would be. */
  take(key: string, now = Date.now()): number {
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      this.#buckets.set(key, bucket = new TokenBucket(this.perMinute / 60, this.perMinute));
    }
    return bucket.take(1, now) ? 0 : Math.max(1, bucket.msUntil(1, now));
  }
}
