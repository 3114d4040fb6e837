// The memory of full offline stores: what marks an account, what clears it, and its bounds.
import assert from "node:assert/strict";
import { FullStores } from "../../src/im/offline.ts";

/** A FullStores on a clock the test moves. */
function stores(ttlMs: number, max: number) {
  const clock = { now: 1 }; // lru-cache takes a start time of 0 for "no expiry"
  return { full: new FullStores(ttlMs, max, () => clock.now), clock };
}

Deno.test("a refusal marks the account until it expires", () => {
  const { full, clock } = stores(1000, 10);
  full.refused("a@x");
  clock.now = 1000;
  assert.ok(full.has("a@x"));
  clock.now = 1002;
  assert.ok(!full.has("a@x"));
});

Deno.test("a queued take clears the mark, and a refusal while it is pending marks nothing", () => {
  const { full } = stores(1000, 10);
  full.refused("a@x");
  full.taking("a@x");
  assert.ok(!full.has("a@x"));
  // A push queued before the take is refused by the store: the take will still empty it.
  full.refused("a@x");
  assert.ok(!full.has("a@x"));
  full.taken("a@x");
  full.refused("a@x");
  assert.ok(full.has("a@x"));
  full.forget("a@x");
  assert.ok(!full.has("a@x"));
});

Deno.test("two pending takes: the mark waits for both", () => {
  const { full } = stores(1000, 10);
  full.taking("a@x");
  full.taking("a@x");
  full.taken("a@x");
  full.refused("a@x");
  assert.ok(!full.has("a@x"));
  full.taken("a@x");
  full.refused("a@x");
  assert.ok(full.has("a@x"));
});

Deno.test("at most `max` accounts are remembered; the oldest mark goes first", () => {
  const { full } = stores(1000, 3);
  for (const u of ["a", "b", "c"]) full.refused(`${u}@x`);
  full.refused("a@x"); // refreshed: now the newest
  full.refused("d@x");
  assert.ok(!full.has("b@x"));
  for (const u of ["a", "c", "d"]) assert.ok(full.has(`${u}@x`));
});
