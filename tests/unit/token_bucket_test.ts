import assert from "node:assert/strict";
import { TokenBucket } from "../../src/core/token_bucket.ts";

Deno.test("token bucket: partial takes, waits and debts at the configured rate", () => {
  const b = new TokenBucket(1000, 100);
  // After the bucket's creation, so every reading below is on or after its last refill.
  const t0 = Date.now();
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

Deno.test("token bucket: a clock reading from before the last refill takes nothing back", () => {
  const b = new TokenBucket(1000, 100);
  assert.equal(b.takeUpTo(100, Date.now() - 50), 100);
  assert.equal(b.take(1, Date.now() - 50), false);
});
