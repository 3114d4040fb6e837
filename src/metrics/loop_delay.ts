// How late the event loop runs what is due (parley_event_loop_delay_seconds): a timer set every
// PERIOD_MS notes how late it fired, and the longest lateness of each second is kept for the last
// WINDOW_S seconds, so a scrape every WINDOW_S seconds or more often misses no stall. Deno's
// node:perf_hooks monitorEventLoopDelay does not measure (it reported microseconds across a
// 100 ms block), hence this sampler: PERIOD_MS apart it costs a timer callback, nothing per
// stanza. Its resolution is the timers' own, about a millisecond.

const PERIOD_MS = 20;
/** Seconds over which the longest delay is reported. */
export const WINDOW_S = 60;

export class LoopDelay {
  /** The second (since the time origin) each slot holds, and the longest delay seen in it (ms). */
  #second = new Float64Array(WINDOW_S).fill(-1);
  #longest = new Float64Array(WINDOW_S);
  #timer: ReturnType<typeof setTimeout> | undefined;
  #due = 0;

  start(): void {
    if (this.#timer !== undefined) return;
    this.#schedule(performance.now());
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(now: number): void {
    this.#due = now + PERIOD_MS;
    const timer = setTimeout(() => {
      const at = performance.now();
      this.record(at - this.#due, at);
      this.#schedule(at);
    }, PERIOD_MS);
    // The sampler never keeps the process alive.
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  /** Notes a delay of `ms` observed at `now` (ms since the time origin). */
  record(ms: number, now: number): void {
    const s = Math.floor(now / 1000);
    const i = s % WINDOW_S;
    if (this.#second[i] !== s) {
      this.#second[i] = s;
      this.#longest[i] = 0;
    }
    if (ms > this.#longest[i]) this.#longest[i] = ms;
  }

  /** The longest delay of the last WINDOW_S seconds, in seconds. */
  longest(now = performance.now()): number {
    const s = Math.floor(now / 1000);
    let max = 0;
    for (let i = 0; i < WINDOW_S; i++) {
      if (s - this.#second[i] < WINDOW_S && this.#longest[i] > max) max = this.#longest[i];
    }
    return max / 1000;
  }
}
