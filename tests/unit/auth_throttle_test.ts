// Failed-authentication limits: per address and per account, decaying over the period, bounded.
import assert from "node:assert/strict";
import { addressKey, AuthThrottle, MAX_TRACKED } from "../../src/sasl/throttle.ts";

const config = { scram_iterations: 4096, failures_per_address: 3, failures_per_account: 5 };

/** A test clock; not at 0, which lru-cache takes for "no expiry". */
const clock = () => ({ t: 1_000 });

function throttle(now: { t: number }, over: Partial<typeof config> = {}) {
  return new AuthThrottle({ ...config, failure_period: 60, ...over }, () => now.t);
}

Deno.test("an address may fail `limit` times, then waits period/limit for each more", () => {
  const now = clock();
  const th = throttle(now);
  for (let i = 0; i < 3; i++) {
    assert.equal(th.refusal("10.0.0.1:1000"), undefined);
    th.failed("10.0.0.1:1000", undefined);
  }
  assert.match(th.refusal("10.0.0.1:2000")!, /from your address/);
  assert.equal(th.refusal("10.0.0.2:1000"), undefined, "other addresses are not affected");
  now.t += 20_000; // 60 s / 3 failures: one more allowed
  assert.equal(th.refusal("10.0.0.1:1000"), undefined);
  th.failed("10.0.0.1:1000", undefined);
  assert.ok(th.refusal("10.0.0.1:1000"));
});

Deno.test("failures past the limit (concurrent guesses) lengthen the wait", () => {
  const now = clock();
  const th = throttle(now);
  for (let i = 0; i < 9; i++) th.failed("10.0.0.1:1", undefined);
  now.t += 60_000;
  assert.ok(th.refusal("10.0.0.1:1"), "six failures over the limit: still waiting");
  now.t += 80_000; // 140 s: 7 of the 9 decayed, room for one more
  assert.equal(th.refusal("10.0.0.1:1"), undefined);
});

Deno.test("an account is limited whatever the address; only failures count", () => {
  const th = throttle(clock());
  for (let i = 0; i < 5; i++) {
    assert.equal(th.accountRefusal("alice@localhost"), undefined);
    th.failed(`10.0.0.${i}:1`, "alice@localhost");
  }
  assert.match(th.accountRefusal("alice@localhost")!, /for this account/);
  assert.equal(th.accountRefusal("bob@localhost"), undefined);
  // Checks alone (logins that succeed, however many at once) are never held against anyone.
  for (let i = 0; i < 100; i++) assert.equal(th.refusal("10.0.0.99:1"), undefined);
});

Deno.test("0 means no limit", () => {
  const th = throttle(clock(), { failures_per_address: 0, failures_per_account: 0 });
  for (let i = 0; i < 100; i++) th.failed("10.0.0.1:1", "a@b");
  assert.equal(th.refusal("10.0.0.1:1"), undefined);
  assert.equal(th.accountRefusal("a@b"), undefined);
  assert.equal(th.addresses.size + th.accounts.size, 0);
});

Deno.test("memory stays bounded under a spray of addresses and accounts, and scores expire", () => {
  const now = clock();
  const th = throttle(now);
  for (let i = 0; i < MAX_TRACKED + 1000; i++) {
    th.failed(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:1`, `u${i}@localhost`);
  }
  assert.equal(th.addresses.size, MAX_TRACKED);
  assert.equal(th.accounts.size, MAX_TRACKED);
  // One failure decays in period/limit; then nothing is held against anyone.
  now.t += 20_001;
  assert.equal(th.accounts.size, 0);
  assert.equal(th.addresses.size, 0);
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
