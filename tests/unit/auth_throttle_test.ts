// Failed-authentication limits: per address and per account, decaying over the period, bounded.
import assert from "node:assert/strict";
import {
  addressKey,
  type AttemptOutcome,
  type AuthAttempt,
  AuthThrottle,
  EventLimit,
  MAX_TRACKED,
} from "../../src/sasl/throttle.ts";

const config = { scram_iterations: 4096, failures_per_address: 3, failures_per_account: 5 };

/** A test clock; not at 0, which lru-cache takes for "no expiry". */
const clock = () => ({ t: 1_000 });

function throttle(now: { t: number }, over: Partial<typeof config> = {}) {
  return new AuthThrottle({ ...config, failure_period: 60, ...over }, () => now.t);
}

/** One finished attempt from `remote` on `account`, ending as `outcome`; the refusal if any. */
function attempt(
  th: AuthThrottle,
  remote: string,
  account?: string,
  outcome: AttemptOutcome = "guess",
): string | undefined {
  const a = th.begin(remote);
  if (typeof a === "string") return a;
  const refused = account === undefined ? undefined : a.name(account);
  a.end(refused ? "none" : outcome);
  return refused;
}

Deno.test("an address may fail `limit` times, then waits period/limit for each more", () => {
  const now = clock();
  const th = throttle(now);
  for (let i = 0; i < 3; i++) assert.equal(attempt(th, "10.0.0.1:1000"), undefined);
  assert.match(attempt(th, "10.0.0.1:2000")!, /from your address/);
  assert.equal(attempt(th, "10.0.0.2:1000", undefined, "none"), undefined, "others unaffected");
  now.t += 20_000; // 60 s / 3 failures: one more allowed
  assert.equal(attempt(th, "10.0.0.1:1000"), undefined);
  assert.ok(attempt(th, "10.0.0.1:1000"));
});

Deno.test("attempts in flight count: a concurrent burst gets `limit` checks, not more", () => {
  const th = throttle(clock());
  // 100 guesses begun at once from one address, none finished yet.
  const begun = Array.from({ length: 100 }, () => th.begin("10.0.0.1:1"));
  const running = begun.filter((a) => typeof a !== "string");
  assert.equal(running.length, 3, "the address limit");
  // From 20 addresses at once at one account (the first from each address is clean).
  const th2 = throttle(clock());
  let checked = 0;
  for (let i = 0; i < 2000; i++) {
    const a = th2.begin(`10.0.1.${i % 20}:1`);
    if (typeof a !== "string" && a.name("victim@localhost") === undefined) checked++;
  }
  assert.ok(checked <= 20 + 5, `${checked} passwords would be checked (20 clean + 5 account)`);
});

Deno.test("a success gives its place back; a failure keeps it", () => {
  const th = throttle(clock());
  for (let i = 0; i < 100; i++) {
    assert.equal(attempt(th, "10.0.0.1:1", "alice@localhost", "none"), undefined);
  }
  assert.equal(th.addresses.size + th.accounts.size, 0, "nothing held against anyone");
  assert.equal(attempt(th, "10.0.0.1:1", undefined, "malformed"), undefined);
  assert.equal(th.addresses.size, 1, "a malformed exchange counts for the address");
  assert.equal(th.accounts.size, 0);
});

Deno.test("the account limit refuses addresses that failed, never a clean one (the owner)", () => {
  const th = throttle(clock());
  for (let i = 0; i < 5; i++) attempt(th, `10.0.0.${i}:1`, "alice@localhost");
  // Each of those addresses has failed: their next attempt on the account is refused.
  assert.match(attempt(th, "10.0.0.1:1", "alice@localhost")!, /for this account/);
  assert.equal(attempt(th, "10.0.0.1:1", "bob@localhost"), undefined, "other accounts are not");
  // The owner, from an address with no failure and nothing in flight, is served.
  assert.equal(attempt(th, "10.0.0.99:1", "alice@localhost", "none"), undefined);
  // Two at once from a clean address: the second is no longer clean.
  const a = th.begin("10.0.0.98:1") as AuthAttempt;
  const b = th.begin("10.0.0.98:2") as AuthAttempt;
  assert.equal(a.name("alice@localhost"), undefined);
  assert.match(b.name("alice@localhost")!, /for this account/);
});

Deno.test("a lock lasts at most about a period after the attack, however large", () => {
  const now = clock();
  const th = throttle(now, { failures_per_address: 1_000_000 });
  // Thousands of failures from clean addresses (each one's first) pile onto one account.
  for (let i = 0; i < 5000; i++) attempt(th, `10.${i >> 8}.${i & 255}.1:1`, "alice@localhost");
  assert.ok(attempt(th, "10.0.0.1:1", "alice@localhost"));
  now.t += 60_000 + 12_000; // one period, then one more failure's decay
  assert.equal(attempt(th, "10.0.0.1:1", "alice@localhost", "none"), undefined);
});

Deno.test("0 means no limit", () => {
  const th = throttle(clock(), { failures_per_address: 0, failures_per_account: 0 });
  for (let i = 0; i < 100; i++) assert.equal(attempt(th, "10.0.0.1:1", "a@b"), undefined);
  assert.equal(th.addresses.size + th.accounts.size, 0);
});

Deno.test("memory stays bounded under a spray of addresses and accounts, and scores expire", () => {
  const now = clock();
  const th = throttle(now);
  for (let i = 0; i < MAX_TRACKED + 1000; i++) {
    attempt(th, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:1`, `u${i}@localhost`);
  }
  assert.equal(th.addresses.size, MAX_TRACKED);
  assert.equal(th.accounts.size, MAX_TRACKED);
  // A failure is remembered for a period; then nothing is held against anyone.
  now.t += 60_001;
  assert.equal(th.accounts.size, 0);
  assert.equal(th.addresses.size, 0);
});

Deno.test("an event limit counts what ends counted (registrations)", () => {
  const now = clock();
  const limit = new EventLimit("registrations from", 1, 600_000, () => now.t);
  const first = limit.hold("10.0.0.1");
  assert.ok(limit.full("10.0.0.1"), "one in flight fills it");
  first(false);
  assert.ok(!limit.full("10.0.0.1"), "a failed one is given back");
  limit.add("10.0.0.1");
  assert.ok(limit.full("10.0.0.1"));
  now.t += 600_000;
  assert.ok(!limit.full("10.0.0.1"));
});

Deno.test("addresses: IPv4 as is, IPv4-mapped as IPv4, IPv6 by /64", () => {
  assert.equal(addressKey("127.0.0.2:5000"), "127.0.0.2");
  assert.equal(addressKey("::ffff:192.0.2.1:5000"), "192.0.2.1");
  assert.equal(addressKey("2001:db8:1:2:3:4:5:6:443"), "2001:db8:1:2::/64");
  assert.equal(addressKey("2001:db8::1:443"), "2001:db8:0:0::/64");
  assert.equal(addressKey("2001:db8:0:0:ffff::9:443"), "2001:db8:0:0::/64");
  assert.equal(addressKey("::1:5222"), "0:0:0:0::/64");
  assert.equal(addressKey("fe80::1%eth0:5222"), "fe80:0:0:0::/64");
});
