// Run by tls_heap_test.ts with --expose-gc: JS heap growth per connection that closes in the middle
// of a TLS handshake on the direct-TLS port. Prints {"bytesPerConnection": n}.
import net from "node:net";
import { startServer } from "../helpers/server.ts";

const N = Number(Deno.args[0] ?? 3000);
const BATCH = 100;
const gc = (globalThis as unknown as { gc: () => void }).gc;
const PARTIAL_HELLO = new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]);

const t = await startServer({ limits: { connections_per_ip: 100_000 } });
const streams = () => t.server.listeners.reduce((n, l) => n + l.streams.size, 0);

/** `n` connections that send part of a ClientHello and close; waits until the server let go. */
async function burst(n: number): Promise<void> {
  for (let i = 0; i < n; i += BATCH) {
    await Promise.all(
      Array.from({ length: Math.min(BATCH, n - i) }, () =>
        new Promise<void>((resolve) => {
          const c = net.connect(t.tlsPort, "127.0.0.1");
          c.on("error", () => resolve());
          c.on("close", () => resolve());
          c.on("connect", () => c.write(PARTIAL_HELLO, () => c.destroy()));
        })),
    );
  }
  while (streams() > 0) await new Promise((r) => setTimeout(r, 20));
}

async function heap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 50));
  }
  return Deno.memoryUsage().heapUsed;
}

await burst(300); // warm up
const before = await heap();
await burst(N);
const after = await heap();
await t.stop();
console.log(JSON.stringify({ bytesPerConnection: Math.round((after - before) / N) }));
Deno.exit(0);
