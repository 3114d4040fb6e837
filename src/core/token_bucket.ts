// A token bucket: `rate` tokens per second, at most `burst` saved up. Rate 0 means no limit.
export class TokenBucket {
  #tokens: number;
  #refilledAt = Date.now();

  constructor(readonly rate: number, readonly burst: number) {
    this.#tokens = burst;
  }

  /** Takes `n` tokens (at most a burst's worth) if there are enough; false otherwise. */
  take(n = 1, now = Date.now()): boolean {
    if (this.rate === 0) return true;
    this.#tokens = Math.min(this.burst, this.#tokens + (now - this.#refilledAt) * this.rate / 1000);
    this.#refilledAt = now;
    const cost = Math.min(n, this.burst);
    if (this.#tokens < cost) return false;
    this.#tokens -= cost;
    return true;
  }

  /**
   * Spends `n` tokens even beyond what is saved (a debt that the refill pays off); returns the
   * milliseconds until the debt is paid, which the caller waits before spending again.
   */
  spend(n: number, now = Date.now()): number {
    if (this.rate === 0) return 0;
    this.#tokens = Math.min(this.burst, this.#tokens + (now - this.#refilledAt) * this.rate / 1000);
    this.#refilledAt = now;
    this.#tokens -= n;
    return this.#tokens < 0 ? Math.ceil(-this.#tokens * 1000 / this.rate) : 0;
  }
}
