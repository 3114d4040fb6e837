import assert from "node:assert/strict";
import { FrameReader, FrameWriter, PING, readFloat } from "../../src/cluster/frames.ts";
import { negotiate } from "../../src/cluster/mesh.ts";

const text = new TextDecoder();

function collect(maxFrame = 1 << 20) {
  const frames: string[] = [];
  const reader = new FrameReader(maxFrame, (type, payload) => {
    frames.push(`${type}:${text.decode(payload)}`);
    return true;
  });
  return { frames, reader };
}

Deno.test("frames written in one batch are read back across every chunk boundary", () => {
  const writer = new FrameWriter(1 << 20);
  writer.frame(16, "héllo");
  writer.frame(17, new TextEncoder().encode("bytes"));
  writer.frame(18, "");
  writer.float(PING, 1.5);
  const bytes = writer.take();
  assert.equal(writer.length, 0);
  for (let a = 0; a <= bytes.length; a++) {
    for (let b = a; b <= bytes.length; b++) {
      const frames: string[] = [];
      const reader = new FrameReader(1 << 20, (type, payload) => {
        frames.push(`${type}:${type === PING ? readFloat(payload) : text.decode(payload)}`);
        return true;
      });
      for (const part of [bytes.slice(0, a), bytes.slice(a, b), bytes.slice(b)]) {
        assert.equal(reader.push(part), undefined);
      }
      assert.deepEqual(frames, ["16:héllo", "17:bytes", "18:", `${PING}:1.5`]);
    }
  }
});

Deno.test("a frame over the limit or without a type is malformed as soon as its header arrives", () => {
  const { frames, reader } = collect(1024);
  // Only the header of a 2000-byte frame: refused without waiting for its payload.
  assert.equal(
    reader.push(new Uint8Array([0, 0, 7, 209, 16])),
    "a frame of 2000 bytes (at most 1024)",
  );
  assert.equal(collect().reader.push(new Uint8Array([0, 0, 0, 0, 16])), "a frame without a type");
  assert.deepEqual(frames, []);
  // The writer refuses to send what the peer would refuse, and stays usable.
  const writer = new FrameWriter(4);
  assert.throws(() => writer.frame(16, "12345"), RangeError);
  writer.frame(16, "1234");
  assert.equal(writer.length, 9);
});

Deno.test("a reader stops when its handler says so", () => {
  const writer = new FrameWriter(1024);
  writer.frame(16, "a");
  writer.frame(16, "b");
  const seen: string[] = [];
  new FrameReader(1024, (_t, p) => (seen.push(text.decode(p)), false)).push(writer.take());
  assert.deepEqual(seen, ["a"]);
});

Deno.test("protocol versions: N talks to N-1 and N+1 in the older protocol, not to N±2", () => {
  assert.equal(negotiate(5, 5), 5);
  assert.equal(negotiate(5, 4), 4);
  assert.equal(negotiate(4, 5), 4);
  assert.equal(negotiate(5, 3), undefined);
  assert.equal(negotiate(3, 5), undefined);
});
