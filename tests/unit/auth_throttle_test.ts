// Failed-authentication limits: per address and per account, decaying over the period, bounded.
import assert from "node:assert/strict";
import {
  addressKey,
  type AttemptOutcome,
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
async function attempt(
  th: AuthThrottle,
  remote: string,
  account?: string,
  outcome: AttemptOutcome = "guess",
): Promise<string | undefined> {
  const a = await th.begin(remote);
  if (typeof a === "string") return a;
  const refused = account === undefined ? undefined : await a.name(account);
  a.end(refused ? "none" : outcome);
  return refused;
}

Deno.test("an address may fail `limit` times, then waits period/limit for each more", async () => {
  const now = clock();
  const th = throttle(now);
  for (let i = 0; i < 3; i++) assert.equal(await attempt(th, "10.0.0.1:1000"), undefined);
  assert.match((await attempt(th, "10.0.0.1:2000"))!, /from your address/);
  assert.equal(await attempt(th, "10.0.0.2:1000", undefined, "none"), undefined);
  now.t += 20_000; // 60 s / 3 failures: one more allowed
  assert.equal(await attempt(th, "10.0.0.1:1000"), undefined);
  assert.ok(await attempt(th, "10.0.0.1:1000"));
});

Deno.test("attempts in flight hold their places: a concurrent burst gets `limit` checks", async () => {
  const th = throttle(clock());
  // 100 wrong guesses at once from one address, each checked (and failing) a tick later.
  let checked = 0;
  const outcomes = await Promise.all(Array.from({ length: 100 }, async () => {
    const a = await th.begin("10.0.0.1:1");
    if (typeof a === "string") return a;
    checked++;
    await new Promise((r) => setTimeout(r, 1));
    a.end("guess");
    return "checked";
  }));
  assert.equal(checked, 3, "the address limit");
  assert.equal(outcomes.filter((o) => /from your address/.test(o)).length, 97);
  // From 20 addresses at once at one account: one from each clean address, then the account's.
  const th2 = throttle(clock());
  let onAccount = 0;
  await Promise.all(Array.from({ length: 2000 }, async (_, i) => {
    const a = await th2.begin(`10.0.1.${i % 20}:1`);
    if (typeof a === "string") return;
    const refused = await a.name("victim@localhost");
    if (!refused) onAccount++;
    await new Promise((r) => setTimeout(r, 1));
    a.end(refused ? "none" : "guess");
  }));
  assert.ok(onAccount <= 20 + 5, `${onAccount} passwords checked on the account`);
});

Deno.test("successes in flight only wait their turn: many logins from one address", async () => {
  const th = throttle(clock());
  const results = await Promise.all(Array.from({ length: 50 }, async () => {
    const a = await th.begin("10.0.0.1:1");
    if (typeof a === "string") return a;
    await new Promise((r) => setTimeout(r, 1));
    a.end("none");
    return "ok";
  }));
  assert.deepEqual(new Set(results), new Set(["ok"]));
  assert.equal(th.addresses.size + th.accounts.size, 0, "nothing held against anyone");
  assert.equal(await attempt(th, "10.0.0.1:1", undefined, "malformed"), undefined);
  assert.equal(th.addresses.size, 1, "a malformed exchange counts for the address");
  assert.equal(th.accounts.size, 0);
});

Deno.test("the account limit refuses addresses that failed, never a clean one (the owner)", async () => {
  const th = throttle(clock());
  for (let i = 0; i < 5; i++) await attempt(th, `10.0.0.${i}:1`, "alice@localhost");
  // Each of those addresses has failed: their next attempt on the account is refused.
  assert.match((await attempt(th, "10.0.0.1:1", "alice@localhost"))!, /for this account/);
  assert.equal(await attempt(th, "10.0.0.1:1", "bob@localhost"), undefined, "other accounts");
  // The owner, from an address with no failure and nothing in flight, is served.
  assert.equal(await attempt(th, "10.0.0.99:1", "alice@localhost", "none"), undefined);
});

Deno.test("a lock lasts at most about a period after the attack, however large", async () => {
  const now = clock();
  const th = throttle(now, { failures_per_address: 1_000_000 });
  // Thousands of failures from clean addresses (each one's first) pile onto one account.
  for (let i = 0; i < 5000; i++) {
    await attempt(th, `10.${i >> 8}.${i & 255}.1:1`, "alice@localhost");
  }
  assert.ok(await attempt(th, "10.0.0.1:1", "alice@localhost"));
  now.t += 60_000 + 12_000; // one period, then one more failure's decay
  assert.equal(await attempt(th, "10.0.0.1:1", "alice@localhost", "none"), undefined);
});

Deno.test("0 means no limit", async () => {
  const th = throttle(clock(), { failures_per_address: 0, failures_per_account: 0 });
  for (let i = 0; i < 100; i++) assert.equal(await attempt(th, "10.0.0.1:1", "a@b"), undefined);
  assert.equal(th.addresses.size + th.accounts.size, 0);
});

Deno.test("memory stays bounded under a spray of addresses and accounts, and scores expire", async () => {
  const now = clock();
  const th = throttle(now);
  for (let i = 0; i < MAX_TRACKED + 1000; i++) {
    await attempt(th, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:1`, `u${i}@localhost`);
  }
  assert.equal(th.addresses.size, MAX_TRACKED);
  assert.equal(th.accounts.size, MAX_TRACKED);
  // A failure is remembered for a period; then nothing is held against anyone.
  now.t += 60_001;
  assert.equal(th.accounts.size, 0);
  assert.equal(th.addresses.size, 0);
});

Deno.test("an event limit counts what ends counted (registrations)", async () => {
  const now = clock();
  const limit = new EventLimit("registrations from", 1, 600_000, () => now.t);
  const first = (await limit.acquire("10.0.0.1"))!;
  let second: boolean | undefined;
  const waiting = limit.acquire("10.0.0.1").then((s) => {
    second = s !== undefined;
    s?.(false);
  });
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(second, undefined, "the second waits for the first");
  first(true);
  await waiting;
  assert.equal(second, false, "the first counted: the second is refused");
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
