// The proxy's copy loop on its own: order, growth, the memory bound, and ending on a failed write.
import assert from "node:assert/strict";
import { pump, type PumpStats } from "../../src/proxy65/pump.ts";

/** A source that fills every read completely, `total` bytes in all (byte i is i & 0xff). */
function source(total: number) {
  let sent = 0;
  return {
    read(buf: Uint8Array): Promise<number | null> {
      if (sent >= total) return Promise.resolve(null);
      const n = Math.min(buf.length, total - sent);
      for (let i = 0; i < n; i++) buf[i] = (sent + i) & 0xff;
      sent += n;
      return Promise.resolve(n);
    },
  };
}

Deno.test("pump: copies every byte in order, grows its buffers to the cap and no further", async () => {
  const total = 5 * 1024 * 1024 + 7;
  const cap = 1024 * 1024;
  const stats: PumpStats = { bytes: 0, held: 0, lastActivity: 0 };
  let got = 0;
  let largest = 0;
  let inOrder = true;
  await pump(Promise.resolve(Uint8Array.of(0xaa)), source(total), (chunk) => {
    // The first chunk is the one handed in; then the source's bytes, in order.
    if (got === 0) inOrder &&= chunk.length === 1 && chunk[0] === 0xaa;
    else for (let i = 0; i < chunk.length; i++) inOrder &&= chunk[i] === ((got - 1 + i) & 0xff);
    got += chunk.length;
    largest = Math.max(largest, chunk.length);
    return new Promise((r) => setTimeout(r, 0));
  }, { cap, bandwidth: 0, stats });
  assert.ok(inOrder, "bytes arrive in order");
  assert.equal(got, total + 1);
  assert.equal(stats.bytes, total + 1);
  assert.equal(largest, cap, "reads that fill the buffer grow it up to the cap");
  assert.equal(stats.held, 2 * cap, "two buffers of at most the cap");
});

Deno.test("pump: a failed write ends the direction without reading on", async () => {
  const stats: PumpStats = { bytes: 0, held: 0, lastActivity: 0 };
  let reads = 0;
  const src = source(1 << 30);
  await pump(
    Promise.resolve(Uint8Array.of(1)),
    {
      read: (buf) => (reads++, src.read(buf)),
    },
    () => Promise.reject(new Error("gone")),
    { cap: 64 * 1024, bandwidth: 0, stats },
  );
  // The read already under way while the first write failed is the last one.
  assert.ok(reads <= 1, `${reads} reads after the write failed`);
});
