// The counters and queue of XEP-0198 stream management: acknowledgements drop what they cover,
// counters wrap at 2^32, too high an `h` changes nothing, resent duplicates are recognised.
import assert from "node:assert/strict";
import { StreamManagement } from "../../src/c2s/stream_management.ts";

const WRAP = 2 ** 32;

Deno.test("an acknowledgement drops what it covers, and no more than was sent", () => {
  const sm = new StreamManagement("id", 1000);
  for (const n of [1, 2, 3]) sm.push(`<message id='${n}'/>`);
  assert.equal(sm.sent, 3);
  assert.ok(sm.ack(2));
  assert.deepEqual(sm.unacked(), ["<message id='3'/>"]);
  assert.equal(sm.ack(5), false);
  assert.equal(sm.acked, 2);
  assert.equal(sm.unackedCount, 1);
  assert.equal(sm.bytes, "<message id='3'/>".length);
});

Deno.test("counters wrap at 2^32 both ways", () => {
  const sm = new StreamManagement("id", 1000, {
    handled: WRAP - 1,
    acked: WRAP - 2,
    unacked: [],
    recent: [],
    seen: [],
  });
  sm.handledOne(undefined);
  assert.equal(sm.handled, 0);
  for (const n of [1, 2, 3, 4]) sm.push(`<iq id='${n}'/>`);
  // Sent: WRAP - 2 + 4 = 2 after wrapping.
  assert.equal(sm.sent, 2);
  assert.ok(sm.ack(1));
  assert.deepEqual(sm.unacked(), ["<iq id='4'/>"]);
  assert.equal(sm.ack(3), false, "3 acknowledges more than was sent");
  assert.ok(sm.ack(2));
  assert.equal(sm.unackedCount, 0);
});

Deno.test("recently acknowledged stanzas are still recognised, then forgotten", () => {
  const sm = new StreamManagement("id", 1000);
  for (let n = 0; n < 300; n++) sm.push(`<message id='${n}'/>`);
  assert.ok(sm.ack(300));
  assert.ok(sm.holds("<message id='299'/>"));
  assert.ok(sm.holds("<message id='240'/>"));
  assert.equal(sm.holds("<message id='0'/>"), false);
  // And carried to another node with the session.
  const moved = new StreamManagement("id", 1000, sm.state());
  assert.ok(moved.holds("<message id='299'/>"));
  assert.equal(moved.unackedCount, 0);
});

Deno.test("ids of handled client stanzas are remembered for duplicates", () => {
  const sm = new StreamManagement("id", 1000);
  sm.handledOne("a");
  sm.handledOne(undefined);
  sm.handledOne("b");
  assert.ok(sm.seen("a") && sm.seen("b"));
  assert.equal(sm.seen("c"), false);
  assert.deepEqual(sm.recentSeen(1), [["b", 3]]);
  assert.deepEqual(sm.state().seen, [["a", 1], ["b", 3]]);
});

Deno.test("a count behind is ignored; the first may include stanzas written before enabled", () => {
  const sm = new StreamManagement("id", 1000);
  sm.leeway = 2;
  sm.push("<message id='1'/>");
  // The client counted two stanzas written just before <enabled/>: counting goes on from 3.
  assert.equal(sm.acknowledge(3), "ok");
  assert.equal(sm.unackedCount, 0);
  sm.push("<message id='2'/>");
  assert.equal(sm.acknowledge(2), "stale");
  assert.equal(sm.acknowledge(4), "ok");
  // Only the first time: more than was sent is too high now.
  assert.equal(sm.acknowledge(6), "too-high");
  const strict = new StreamManagement("id", 1000);
  strict.push("<message/>");
  assert.equal(strict.acknowledge(2), "too-high");
});
