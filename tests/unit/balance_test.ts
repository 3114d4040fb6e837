import assert from "node:assert/strict";
import { pick } from "../../src/component/balance.ts";

const keys = Array.from({ length: 300 }, (_, i) => `user${i}@example.org`);
const assign = (ids: string[]) => new Map(keys.map((k) => [k, pick(ids, k)!]));

Deno.test("rendezvous balancing: fair, stable, and minimally disruptive", () => {
  const four = ["node1/a", "node1/b", "node2/c", "node2/d"];
  const before = assign(four);
  // Deterministic: the same inputs give the same answer (as on another cluster node).
  assert.deepEqual(assign([...four].reverse()), before);
  const counts = new Map<string, number>();
  for (const id of before.values()) counts.set(id, (counts.get(id) ?? 0) + 1);
  const mean = keys.length / four.length;
  for (const [id, n] of counts) assert.ok(n <= 2 * mean, `${id} took ${n} of ${keys.length}`);
  assert.equal(counts.size, 4);
  // One leaves: only its keys move.
  const three = assign(four.filter((id) => id !== "node1/b"));
  for (const [k, id] of before) if (id !== "node1/b") assert.equal(three.get(k), id, k);
  // One joins: it takes a share, and every key that moves moves to it.
  const five = assign([...four, "node3/e"]);
  let taken = 0;
  for (const [k, id] of before) {
    if (five.get(k) !== id) {
      assert.equal(five.get(k), "node3/e");
      taken++;
    }
  }
  assert.ok(
    taken > keys.length / 5 / 2 && taken < keys.length / 5 * 2,
    `new instance took ${taken}`,
  );
});
