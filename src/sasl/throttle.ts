// Failed-authentication limits per source address and per account: once one is reached, an
// attempt is answered <temporary-auth-failure/> without touching the store or deriving a key.
// An attempt holds its place from the moment it is checked until its outcome is known (a PLAIN
// derivation takes milliseconds, queued behind others longer), so a burst of concurrent guesses
// cannot all pass the check before the first one fails: attempts beyond the places left wait for
// those in flight, and are refused once the failures alone fill the limit; a success gives its
// place back. So only failures refuse: concurrent logins from one address (a NAT reconnecting
// after a restart) are served, `limit` at a time.
//
// ejabberd's mod_fail2ban and Prosody's mod_limit_auth limit per address only and never lock an
// account. Here the account limit applies only to an address that has failed (or has an attempt
// in flight) within the period: the owner logging in from an address that did not guess is never
// refused, while guesses spread over many addresses that keep guessing are still bounded per
// account. A key's score is capped at twice its limit, so an account or address is free again
// at most one period after an attack stops, however large the attack was.
// Per node for now; the scores are plain data so that a cluster can share them later.
import { LRUCache } from "lru-cache";
import type { Config } from "../config/schema.ts";
import { logger } from "../log/logger.ts";

const log = logger("auth");

/**
 * Keys remembered, at most, per limit: a spray of new ones evicts the least recently used (a few
 * MiB at most), and a score expires once it has fully decayed.
 */
export const MAX_TRACKED = 65_536;

/** Events of one key as of `at`, decaying by `limit` per period; `held`: begun, not yet ended. */
interface Score {
  events: number;
  at: number;
  held: number;
  /** When an event last counted, if ever. */
  last?: number;
}

/**
 * At most `limit` events per key per period (0: no limit), decaying continuously; an event in
 * flight holds its place until it is counted or refunded. Used for failed authentications and
 * for registrations.
 */
/** Settles an event in flight: counted, or its place given back. */
export type Settle = (counted: boolean) => void;

export class EventLimit {
  #scores: LRUCache<string, Score>;
  /** Wakers of those waiting for a place held by events in flight, per key. */
  #waiting = new Map<string, (() => void)[]>();

  constructor(
    readonly what: string,
    readonly limit: number,
    readonly periodMs: number,
    readonly now: () => number = () => performance.now(),
  ) {
    // No timers (no autopurge, no cached clock): stale scores go when looked up or evicted.
    this.#scores = new LRUCache({ max: MAX_TRACKED, ttlResolution: 0, perf: { now } });
  }

  /** Keys held against now (expired ones dropped first). */
  get size(): number {
    this.#scores.purgeStale();
    return this.#scores.size;
  }

  #score(key: string, now: number): Score {
    const s = this.#scores.get(key);
    if (!s) return { events: 0, at: now, held: 0 };
    return {
      ...s,
      events: Math.max(0, s.events - (now - s.at) * this.limit / this.periodMs),
      at: now,
    };
  }

  #store(key: string, s: Score): void {
    if (s.held === 0 && s.events === 0 && s.last === undefined) {
      this.#scores.delete(key);
      return;
    }
    // Kept while it decays, and a period after the last event (for `recent`).
    const ttl = Math.max(this.periodMs, Math.ceil(s.events * this.periodMs / this.limit));
    this.#scores.set(key, s, { ttl });
  }

  /** Whether the events counted alone leave no place now (those in flight may still end well). */
  full(key: string): boolean {
    return this.limit > 0 && this.#score(key, this.now()).events + 1 > this.limit;
  }

  /** Whether `key` had an event counted within the last period, or has one in flight. */
  recent(key: string): boolean {
    const s = this.#scores.get(key);
    return s !== undefined &&
      (s.held > 0 || (s.last !== undefined && this.now() - s.last < this.periodMs));
  }

  /**
   * A place for an event in flight, waiting while those in flight fill the limit; undefined when
   * the events counted alone fill it. The function returned settles it: counted or given back.
   */
  async acquire(key: string): Promise<Settle | undefined> {
    while (this.limit > 0) {
      const s = this.#score(key, this.now());
      if (s.events + 1 > this.limit) return undefined;
      if (s.events + s.held + 1 <= this.limit) break;
      await new Promise<void>((wake) => {
        const waiting = this.#waiting.get(key);
        if (waiting) waiting.push(wake);
        else this.#waiting.set(key, [wake]);
      });
    }
    return this.hold(key);
  }

  /** A place for an event in flight, taken whatever the limit. */
  hold(key: string): Settle {
    if (this.limit === 0) return () => {};
    const s = this.#score(key, this.now());
    this.#store(key, { ...s, held: s.held + 1 });
    let settled = false;
    return (counted) => {
      if (settled) return;
      settled = true;
      const now = this.now();
      const s = this.#score(key, now);
      const held = Math.max(0, s.held - 1);
      if (!counted) this.#store(key, { ...s, held });
      else {
        const events = Math.min(s.events + 1, 2 * this.limit);
        this.#store(key, { events, at: now, held, last: now });
        if (s.events + 1 <= this.limit && events + 1 > this.limit) {
          log.warn("{what} {key} reached its limit of {limit} per period", {
            what: this.what,
            key,
            limit: this.limit,
          });
        }
      }
      // Those waiting look again, in the order they came.
      const waiting = this.#waiting.get(key);
      this.#waiting.delete(key);
      for (const wake of waiting ?? []) wake();
    };
  }

  /** Counts an event that is over as soon as it starts. */
  add(key: string): void {
    this.hold(key)(true);
  }
}

/** How an authentication step ended, for the limits. */
export type AttemptOutcome =
  /** Nothing was tested or the credentials were right: the place is given back. */
  | "none"
  /** A wrong password or unknown user: a failure for the address and the account. */
  | "guess"
  /** A malformed or abandoned exchange: a failure for the address only. */
  | "malformed";

/** One step of an authentication in flight, held against its address and, once named, account. */
export class AuthAttempt {
  #account: Settle | undefined;

  constructor(
    readonly throttle: AuthThrottle,
    readonly address: Settle,
    /** The address had no failure within the period and nothing in flight. */
    readonly clean: boolean,
  ) {}

  /**
   * Why an attempt on `account` (user@domain) is refused for now, or undefined once it is held
   * against the account too. An address that has not failed is never refused or kept waiting
   * for the account's sake.
   */
  async name(account: string): Promise<string | undefined> {
    if (this.#account) return undefined;
    const { accounts } = this.throttle;
    const held = this.clean ? accounts.hold(account) : await accounts.acquire(account);
    if (!held) return "Too many failed authentication attempts for this account; try again later";
    this.#account = held;
  }

  end(outcome: AttemptOutcome): void {
    this.address(outcome !== "none");
    this.#account?.(outcome === "guess");
  }
}

export class AuthThrottle {
  readonly addresses: EventLimit;
  readonly accounts: EventLimit;

  constructor(config: Config["auth"], now: () => number = () => performance.now()) {
    const period = config.failure_period * 1000;
    this.addresses = new EventLimit("address", config.failures_per_address, period, now);
    this.accounts = new EventLimit("account", config.failures_per_account, period, now);
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

  /**
   * Begins an attempt from `remote` ("ip:port"), once a place is free, or says why it is refused
   * for now.
   */
  async begin(remote: string): Promise<AuthAttempt | string> {
    const key = addressKey(remote);
    // Without an address limit no address is known clean: the account limit applies to all.
    const clean = this.addresses.limit > 0 && !this.addresses.recent(key);
    const held = await this.addresses.acquire(key);
    if (!held) return "Too many failed authentication attempts from your address; try again later";
    return new AuthAttempt(this, held, clean);
  }

  /** Records a malformed or abandoned exchange from `remote`: a failure for its address. */
  failed(remote: string): void {
    this.addresses.add(addressKey(remote));
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
