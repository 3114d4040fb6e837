// Connections that close before their TLS handshake completes must leave nothing behind (Deno's
// tls.Server kept about 6 KiB of JS heap for each). Measured in a child process with explicit GC.
import assert from "node:assert/strict";
import { serverTest } from "../helpers/server.ts";

const CONNECTIONS = 3000;
/** Well below the 6 KiB each such connection leaked, above the noise of a GC'd heap. */
const MAX_BYTES_PER_CONNECTION = 1024;

serverTest("connections closed mid-TLS-handshake do not grow the heap", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("./tls_heap.ts", import.meta.url).pathname,
      String(CONNECTIONS),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr).slice(-2000));
  const { bytesPerConnection } = JSON.parse(stdout.trim().split("\n").pop()!);
  assert.ok(
    bytesPerConnection < MAX_BYTES_PER_CONNECTION,
    `${bytesPerConnection} bytes of heap kept per connection`,
  );
});
