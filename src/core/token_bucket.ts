// A token bucket: `rate` tokens per second, at most `burst` saved up. Rate 0 means no limit.
export class TokenBucket {
  #tokens: number;
  #refilledAt = Date.now();

  constructor(readonly rate: number, readonly burst: number) {
    this.#tokens = burst;
  }

  #refill(now: number): void {
    // A caller's clock reading may predate the last refill (or the bucket's creation): no refill.
    if (now <= this.#refilledAt) return;
    this.#tokens = Math.min(this.burst, this.#tokens + (now - this.#refilledAt) * this.rate / 1000);
    this.#refilledAt = now;
  }

  /** Takes `n` tokens (at most a burst's worth) if there are enough; false otherwise. */
  take(n = 1, now = Date.now()): boolean {
    if (this.rate === 0) return true;
    this.#refill(now);
    const cost = Math.min(n, this.burst);
    if (this.#tokens < cost) return false;
    this.#tokens -= cost;
    return true;
  }

  /** Takes as many whole tokens as there are, up to `n`; returns how many it took. */
  takeUpTo(n: number, now = Date.now()): number {
    if (this.rate === 0) return n;
    this.#refill(now);
    const got = Math.max(0, Math.min(n, Math.floor(this.#tokens)));
    this.#tokens -= got;
    return got;
  }

  /**
   * Spends `n` tokens whether they are there or not (the debt refills at `rate`); returns the
   * milliseconds to wait before spending more, 0 when nothing is owed.
   */
  spend(n: number, now = Date.now()): number {
    if (this.rate === 0) return 0;
    this.#refill(now);
    this.#tokens -= n;
    return this.#tokens < 0 ? Math.ceil(-this.#tokens * 1000 / this.rate) : 0;
  }

  /** Milliseconds until `n` tokens (at most a burst's worth) are there; 0 when they are now. */
  msUntil(n: number, now = Date.now()): number {
    if (this.rate === 0) return 0;
    this.#refill(now);
    const missing = Math.min(n, this.burst) - this.#tokens;
    return missing > 0 ? Math.ceil(missing * 1000 / this.rate) : 0;
  }
}
