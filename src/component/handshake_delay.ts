// Failed component handshakes (XEP-0114) from one address are answered later and later, as SASL
// failures are on a client stream: the delay doubles with each failure, up to MAX_DELAY_MS, so a
// secret cannot be guessed at the speed of the network however many connections the guesser opens.
// An address is forgotten FORGET_MS after its last failure; a right secret is never delayed.
import { LRUCache } from "lru-cache";
import { addressKey, MAX_TRACKED } from "../sasl/throttle.ts";

const MAX_DELAY_MS = 10_000;
const FORGET_MS = 10 * 60_000;

export class HandshakeDelays {
  /** Failures per address (IPv6: per /64); a spray of addresses evicts the least recent. */
  #failures = new LRUCache<string, number>({ max: MAX_TRACKED, ttl: FORGET_MS, ttlResolution: 0 });

  /** Records a wrong secret from `remote` ("ip:port"); returns how long to wait before saying so. */
  failed(remote: string, baseMs: number): number {
    const key = addressKey(remote);
    const failures = (this.#failures.get(key) ?? 0) + 1;
    this.#failures.set(key, failures);
    return Math.min(MAX_DELAY_MS, baseMs * 2 ** Math.min(failures - 1, 30));
  }
}
