import assert from "node:assert/strict";
import { TokenBucket } from "../../src/core/token_bucket.ts";

Deno.test("token bucket: partial takes, waits and debts at the configured rate", () => {
  const t0 = Date.now();
  const b = new TokenBucket(1000, 100);
  assert.equal(b.takeUpTo(150, t0), 100, "at most what is there");
  assert.equal(b.msUntil(50, t0), 50, "1000 per second: 50 tokens take 50 ms");
  assert.equal(b.msUntil(500, t0), 100, "never more than a burst's worth");
  assert.equal(b.takeUpTo(30, t0 + 20), 20);
  assert.equal(b.spend(10, t0 + 20), 10, "a debt of 10 is paid in 10 ms");
  assert.equal(b.take(1, t0 + 25), false);
  assert.equal(b.take(1, t0 + 31), true);
  const free = new TokenBucket(0, 0);
  assert.equal(free.takeUpTo(1e9), 1e9);
  assert.equal(free.spend(1e9), 0);
  assert.equal(free.msUntil(1e9), 0);
});
