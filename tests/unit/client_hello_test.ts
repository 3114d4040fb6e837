import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { handshakeRecordBytes, helloServerName } from "../../src/tls/client_hello.ts";

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

Deno.test("the record header measures the ClientHello; its server name", async () => {
  const hello = await clientHello("chat.example.org");
  assert.equal(handshakeRecordBytes(hello), hello.length, "the header measures the whole record");
  assert.equal(helloServerName(hello), "chat.example.org");
  assert.equal(helloServerName(hello.subarray(0, hello.length - 1)), undefined, "incomplete");
  const xml = new TextEncoder().encode("<?xml version='1.0'?>");
  assert.equal(handshakeRecordBytes(xml), undefined, "not a handshake record");
  assert.equal(helloServerName(xml), undefined);
  // A record may not claim more than 2^14 bytes (RFC 8446 §5.1): nothing is waited for.
  assert.equal(handshakeRecordBytes(new Uint8Array([0x16, 3, 1, 0x40, 0x01])), undefined);
  assert.equal(handshakeRecordBytes(new Uint8Array([0x16, 3, 1, 0x40, 0x00])), 5 + 16_384);
});
