// Failed-authentication limits per source address and per account, as Prosody's mod_limit_auth
// (per address) and ejabberd's mod_fail2ban do: once one is reached, an attempt is answered
// <temporary-auth-failure/> without touching the store or deriving a key. Each key's failures
// decay by `limit` per period; failures past the limit (concurrent guesses that all passed the
// check before the first one failed) add to the score, so they lengthen the wait and the long-run
// rate stays at `limit` per period. Only failures count: concurrent logins from one address (a
// NAT reconnecting after a restart) are never refused for being many.
// Per node for now; the scores are plain data so that a cluster can share them later.
import { LRUCache } from "lru-cache";
import type { Config } from "../config/schema.ts";
import { logger } from "../log/logger.ts";

const log = logger("auth");

/**
 * Addresses and accounts remembered, at most, each: a spray of new ones evicts the least recently
 * failed (a few MiB at most), and a score expires once it has fully decayed.
 */
export const MAX_TRACKED = 65_536;

/** Failures of one key as of `at`, decaying by `limit` per period. */
interface Score {
  failures: number;
  at: number;
}

class FailureLimit {
  #scores: LRUCache<string, Score>;

  constructor(
    readonly what: string,
    readonly limit: number,
    readonly periodMs: number,
    readonly now: () => number,
  ) {
    // No timers (no autopurge, no cached clock): stale scores go when looked up or evicted.
    this.#scores = new LRUCache({ max: MAX_TRACKED, ttlResolution: 0, perf: { now } });
  }

  /** Keys held against now (expired ones dropped first). */
  get size(): number {
    this.#scores.purgeStale();
    return this.#scores.size;
  }

  #current(key: string, now: number): number {
    const s = this.#scores.get(key);
    return s ? Math.max(0, s.failures - (now - s.at) * this.limit / this.periodMs) : 0;
  }

  blocked(key: string): boolean {
    return this.limit > 0 && this.#current(key, this.now()) + 1 > this.limit;
  }

  failed(key: string): void {
    if (this.limit === 0) return;
    const now = this.now();
    const before = this.#current(key, now);
    const failures = before + 1;
    const ttl = Math.ceil(failures * this.periodMs / this.limit);
    this.#scores.set(key, { failures, at: now }, { ttl });
    if (before + 1 <= this.limit && failures + 1 > this.limit) {
      log.warn("{what} {key} reached {limit} failed authentications: attempts refused for now", {
        what: this.what,
        key,
        limit: this.limit,
      });
    }
  }
}

export class AuthThrottle {
  readonly addresses: FailureLimit;
  readonly accounts: FailureLimit;

  constructor(config: Config["auth"], now: () => number = () => performance.now()) {
    const period = config.failure_period * 1000;
    this.addresses = new FailureLimit("address", config.failures_per_address, period, now);
    this.accounts = new FailureLimit("account", config.failures_per_account, period, now);
    log.info(
      "failed authentications limited to {address} per address (IPv6: per /64) and {account} " +
        "per account every {period} s (0 = no limit)",
      {
        address: config.failures_per_address,
        account: config.failures_per_account,
        period: config.failure_period,
      },
    );
  }

  /** Why an attempt from `remote` ("ip:port") is refused for now, or undefined. */
  refusal(remote: string): string | undefined {
    if (!this.addresses.blocked(addressKey(remote))) return undefined;
    return "Too many failed authentication attempts from your address; try again later";
  }

  /** Why an attempt on `account` (user@domain) is refused for now, or undefined. */
  accountRefusal(account: string): string | undefined {
    if (!this.accounts.blocked(account)) return undefined;
    return "Too many failed authentication attempts for this account; try again later";
  }

  /** Records a wrong password (or unknown user) from `remote`, on `account` if it was named. */
  failed(remote: string, account: string | undefined): void {
    this.addresses.failed(addressKey(remote));
    if (account !== undefined) this.accounts.failed(account);
  }
}

/**
 * The unit an address is limited by: an IPv4 address, or an IPv6 /64 (what one subscriber
 * gets; limiting single IPv6 addresses would limit nothing). `remote` is "ip:port".
 */
export function addressKey(remote: string): string {
  const ip = remote.slice(0, remote.lastIndexOf(":")).replace(/%.*$/, "");
  if (!ip.includes(":")) return ip;
  if (/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(ip)) return ip.slice(7);
  const [head, tail] = ip.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(":") + "::/64";
}
