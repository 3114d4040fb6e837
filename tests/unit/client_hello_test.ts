import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { helloServerName } from "../../src/tls/client_hello.ts";

/** The first bytes a TLS client sends when asking for `servername`. */
async function clientHello(servername: string): Promise<Uint8Array> {
  const { promise, resolve } = Promise.withResolvers<Uint8Array>();
  const server = net.createServer((s) =>
    s.once("data", (d: Uint8Array) => {
      resolve(d);
      s.destroy();
    })
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const c = tls.connect({ port, host: "127.0.0.1", servername, rejectUnauthorized: false });
  c.on("error", () => {});
  const hello = await promise;
  c.destroy();
  await new Promise((r) => server.close(r));
  return hello;
}

Deno.test("the server name of a ClientHello, whole or in pieces", async () => {
  const hello = await clientHello("chat.example.org");
  assert.equal(helloServerName(hello), "chat.example.org");
  assert.equal(helloServerName(hello.subarray(0, 4)), null);
  assert.equal(helloServerName(hello.subarray(0, hello.length - 1)), null);
  assert.equal(helloServerName(new TextEncoder().encode("<?xml version='1.0'?>")), undefined);
});
