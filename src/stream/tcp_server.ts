// What every node:net listener of the server does alike: listen, and re-arm accept. Deno's
// node:net stops accepting for good after a failed accept (EMFILE) and reports nothing, so
// each listener's accept is re-armed every second (listen() again on the same handle: a no-op
// while it accepts); a failed accept thus costs at most a second of accepting.
//
// `_handle` is node:net's private TCP wrap, checked on Deno 2.9.6 (the version deno.json's tasks
// pin). There is no public way: Deno.listen's accept() can be retried after EMFILE, but its
// connections are no node:net sockets, which tls.TLSSocket (STARTTLS, and direct TLS admitted
// before any TLS work) needs. If a Deno upgrade renames or drops it, the optional call does
// nothing and tests/abuse/descriptors_test.ts fails: it exhausts the descriptors, closes the
// connections, and requires a login on each client port within seconds.
import type net from "node:net";

/** Pending connections the kernel queues for us (Node's default). */
const BACKLOG = 511;

export function rearm(server: net.Server): void {
  (server as unknown as { _handle?: { listen(backlog: number): number } })._handle
    ?.listen(BACKLOG);
}

/** Listens on `host:port` (0: any free port): the address it got. */
export function listenOn(
  server: net.Server,
  host: string,
  port: number,
): Promise<{ address: string; port: number }> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port, host, backlog: BACKLOG }, () => {
      server.off("error", reject);
      const a = server.address() as net.AddressInfo;
      resolve({ address: a.address, port: a.port });
    });
  });
}
