// Abuse: 1,000 half-open connections to the direct-TLS port from four loopback addresses, half
// sending nothing and half a piece of a ClientHello. Admission happens at accept time, before
// any TLS work: the cap per address refuses the excess at once, and the rest are closed when the
// TLS handshake deadline passes. Meanwhile a logged-in user never waits and a real TLS login
// goes through.
import assert from "node:assert/strict";
import net from "node:net";
import { abuseServer, allClosed, assertUnstalled, stallProbe } from "../helpers/abuse.ts";
import { serverTest } from "../helpers/server.ts";
import { loginDirectTls } from "../helpers/direct_tls.ts";
import { NS } from "../../src/xml/ns.ts";

const ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
const PER_ADDRESS = 250;
const CAP = 200;
const HANDSHAKE_S = 2;
/** Time the server may take beyond the deadline to close a connection (its sweep, a busy loop). */
const SLACK_MS = 1500;
/** The first bytes of a TLS ClientHello: a record header and the start of the handshake. */
const PARTIAL_HELLO = new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]);

interface HalfOpen {
  socket: net.Socket;
  /** Milliseconds from connecting to the server closing the connection. */
  lifetime?: number;
}

function halfOpen(port: number, localAddress: string, partial: boolean): Promise<HalfOpen> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress });
    const h: HalfOpen = { socket };
    let connectedAt = performance.now();
    socket.on("error", () => {});
    socket.once("connect", () => {
      connectedAt = performance.now();
      if (partial) socket.write(PARTIAL_HELLO);
      resolve(h);
    });
    socket.once("close", () => {
      h.lifetime = performance.now() - connectedAt;
      resolve(h);
    });
  });
}

serverTest("abuse: half-open TLS connections are capped per address and time out", async () => {
  const server = await abuseServer(
    { limits: { connections_per_ip: CAP }, timeouts: { tls_handshake: HANDSHAKE_S } },
    ["probe", "user"],
  );
  const conns: HalfOpen[] = [];
  try {
    const probe = await stallProbe(server.port);
    let stall: { maxWaitMs: number; pings: number } | undefined;
    try {
      for (const address of ADDRESSES) {
        conns.push(
          ...await Promise.all(
            Array.from(
              { length: PER_ADDRESS },
              (_, i) => halfOpen(server.tlsPort, address, i % 2 === 1),
            ),
          ),
        );
      }
      // A real client still logs in on the same port while the half-open ones are held.
      const user = await loginDirectTls(server.tlsPort, "user");
      const pong = await user.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
      assert.equal(pong.attrs.type, "result");
      user.close();
      // Every half-open connection is closed by the server, none later than the deadline allows.
      await allClosed(conns, (c) => c.lifetime === undefined, HANDSHAKE_S * 1000 + SLACK_MS);
    } finally {
      stall = await probe.stop();
    }
    const open = conns.filter((c) => c.lifetime === undefined).length;
    assert.equal(open, 0, `${open} half-open connections outlived the TLS handshake deadline`);
    const refused = conns.filter((c) => c.lifetime! < HANDSHAKE_S * 1000 / 2).length;
    assert.ok(
      refused >= ADDRESSES.length * (PER_ADDRESS - CAP),
      `only ${refused} connections were refused at once by the cap per address`,
    );
    assertUnstalled(stall!);
  } finally {
    for (const c of conns) c.socket.destroy();
    await server.stop();
  }
});
