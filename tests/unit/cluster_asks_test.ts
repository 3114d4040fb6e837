// Questions to peers (src/cluster/asks.ts): settled by every answer, by peers going, or by time.
import assert from "node:assert/strict";
import { Asks } from "../../src/cluster/asks.ts";

Deno.test("a question settles when every peer answered or went, with the answers", async () => {
  const asks = new Asks<string>();
  const sent: [string, number][] = [];
  const q = asks.ask(["n2", "n3", "n4"], (peer, id) => {
    sent.push([peer, id]);
    return peer !== "n4"; // no link to n4: not waited for
  });
  const id = sent[0][1];
  assert.ok(asks.waits("n2", id) && !asks.waits("n4", id));
  asks.answered("n9", id, "stray"); // not asked: ignored
  asks.answered("n2", id, "two");
  asks.answered("n2", id, "again"); // answered already: ignored
  asks.gone("n3");
  assert.deepEqual([...(await q)], [["n2", "two"]]);
  assert.ok(!asks.waits("n2", id));
});

Deno.test("a question with a time limit settles with what came by then", async () => {
  const asks = new Asks<number>();
  let asked = 0;
  const q = asks.ask(["n2", "n3"], (_, id) => (asked = id, true), 20);
  asks.answered("n3", asked, 3);
  assert.deepEqual([...(await q)], [["n3", 3]]);
  assert.deepEqual([...(await asks.ask([], () => true))], []);
});
