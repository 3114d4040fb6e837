// Log lines about what others send (a peer's bad frames, refused connections) at a bounded rate
// per source: a flood of bad input must not become a flood of log. Lines over the rate are
// counted, and the next line let through says how many were left out.
import type { Logger } from "@logtape/logtape";
import { TokenBucket } from "../core/token_bucket.ts";

/** Sources remembered at once; beyond it all start afresh (a source's first lines pass again). */
const MAX_SOURCES = 1024;

export class LimitedLog {
  #buckets = new Map<string, { bucket: TokenBucket; left: number }>();
  /** All sources together (many sources must not add up to a flood either). */
  #all: TokenBucket;

  /** At most `burst` lines per source at once, then one per `everyMs`. */
  constructor(readonly log: Logger, readonly burst = 5, readonly everyMs = 10_000) {
    this.#all = new TokenBucket(10 * 1000 / everyMs, 10 * burst);
  }

  warn(source: string, message: string, props: Record<string, unknown>): void {
    this.at("warn", source, message, props);
  }

  error(source: string, message: string, props: Record<string, unknown>): void {
    this.at("error", source, message, props);
  }

  info(source: string, message: string, props: Record<string, unknown>): void {
    this.at("info", source, message, props);
  }

  debug(source: string, message: string, props: Record<string, unknown>): void {
    this.at("debug", source, message, props);
  }

  at(
    level: "warn" | "error" | "info" | "debug",
    source: string,
    message: string,
    props: Record<string, unknown>,
  ): void {
    let s = this.#buckets.get(source);
    if (!s) {
      if (this.#buckets.size >= MAX_SOURCES) this.#buckets.clear();
      this.#buckets.set(
        source,
        s = { bucket: new TokenBucket(1000 / this.everyMs, this.burst), left: 0 },
      );
    }
    if (!s.bucket.take() || !this.#all.take()) {
      s.left++;
      return;
    }
    if (s.left === 0) return this.log[level](message, props);
    const left = s.left;
    s.left = 0;
    this.log[level](`${message} ({left} more like it left out)`, { ...props, left });
  }
}
