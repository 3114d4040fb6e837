// File descriptors as a budget for connections. Every connection holds one, and running out
// (EMFILE) breaks more than new logins: storage, the proxy and accept itself need descriptors.
// So listeners refuse new connections while the open ones are within a headroom of the limit,
// and say so in the log once per episode.
import { logger } from "../log/logger.ts";

const log = logger("listener");

/**
 * Descriptors kept back for everything that is not a client connection: a tenth, at least 64 (a
 * running server with its store and every listener holds about 32 before any client).
 */
export function headroom(limit: number): number {
  return Math.max(64, Math.floor(limit / 10));
}

export class DescriptorBudget {
  /** Connections open now, on every listener together. */
  open = 0;
  /** The number of open connections above which new ones are refused. */
  readonly ceiling: number;
  /** Connections refused in the current episode; 0 while accepting. */
  #refused = 0;

  constructor(readonly limit: number) {
    this.ceiling = limit - headroom(limit);
  }

  /**
   * Counts a new connection in, holding `n` descriptors (a relayed one holds several), or says it
   * must be refused (logged once per episode).
   */
  admit(n = 1): boolean {
    if (this.open + n > this.ceiling) {
      if (this.#refused++ === 0) {
        log.warn(
          "refusing connections: {open} open, near the descriptor limit {limit}",
          { open: this.open, limit: this.limit },
        );
      }
      return false;
    }
    if (this.#refused) {
      log.warn("accepting connections again after refusing {refused}", { refused: this.#refused });
      this.#refused = 0;
    }
    this.open += n;
    return true;
  }

  release(n = 1): void {
    this.open -= n;
  }
}
