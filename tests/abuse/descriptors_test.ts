// Abuse: the server runs with few file descriptors (prlimit) and connections are opened to every
// listener until the server refuses them; then they all close. Near the limit the listeners
// refuse new connections (and say so in the log), a failed accept (EMFILE) never stops one (nor
// the process: the http listener's Deno.serve never accepts from the network), so afterwards
// logging in succeeds on both client ports and the http port answers within seconds; a
// logged-in user never waits meanwhile.
import assert from "node:assert/strict";
import net from "node:net";
import { abuseServer, assertUnstalled, stallProbe } from "../helpers/abuse.ts";
import { serverTest } from "../helpers/server.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { loginDirectTls } from "../helpers/direct_tls.ts";

const DESCRIPTORS = 256;
/** Connections tried per listener: more than the server has descriptors for. */
const PER_LISTENER = 400;
const HOLD_MS = 1000;
const RECOVERY_MS = 5000;

/** Opens `n` connections to `port`; resolves with them once each is connected or has failed. */
async function flood(port: number, n: number): Promise<{ sockets: net.Socket[]; closed: number }> {
  const sockets: net.Socket[] = [];
  let closed = 0;
  await Promise.all(Array.from({ length: n }, () =>
    new Promise<void>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      sockets.push(s);
      s.on("error", () => {});
      s.on("close", () => closed++);
      s.once("connect", () => resolve());
      s.once("close", () => resolve());
    })));
  return {
    sockets,
    get closed() {
      return closed;
    },
  };
}

/** Retries `fn` until it succeeds or `ms` have passed. */
async function within<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  const deadline = performance.now() + ms;
  while (true) {
    try {
      return await fn();
    } catch (e) {
      if (performance.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

serverTest("abuse: running out of descriptors does not stop logins for good", async () => {
  const server = await abuseServer(
    {
      limits: { connections_per_ip: 100_000 },
      listeners: [
        { type: "c2s", bind: "127.0.0.1", port: 0, starttls: "optional", plain_without_tls: true },
        { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
        { type: "http", bind: "127.0.0.1", port: 0 },
      ],
    },
    ["probe", "user"],
    ["prlimit", `--nofile=${DESCRIPTORS}:${DESCRIPTORS}`],
  );
  const floods: { sockets: net.Socket[]; closed: number }[] = [];
  try {
    const probe = await stallProbe(server.port);
    let stall: { maxWaitMs: number; pings: number } | undefined;
    try {
      for (const port of [server.port, server.tlsPort, server.ports[2]]) {
        floods.push(await flood(port, PER_LISTENER));
      }
      await new Promise((r) => setTimeout(r, HOLD_MS));
      assert.ok(floods.some((f) => f.closed > 0), "the server refused some connections");
      for (const f of floods) for (const s of f.sockets) s.destroy();
      // Both client ports accept again, and a login goes through on each.
      const plain = await within(
        RECOVERY_MS,
        () => RawClient.login(server.port, "user", "secret", { starttls: false, mech: "PLAIN" }),
      );
      plain.close();
      const direct = await within(RECOVERY_MS, () => loginDirectTls(server.tlsPort, "user"));
      direct.close();
      const meta = await within(RECOVERY_MS, async () => {
        const res = await fetch(`http://127.0.0.1:${server.ports[2]}/.well-known/host-meta.json`);
        return await res.json();
      });
      assert.equal(meta.links.length, 2, "the http port answers again");
    } finally {
      stall = await probe.stop();
    }
    assert.ok(
      server.logs.some((r) => String(r.message).includes("refusing connections")),
      "the refusal is logged",
    );
    assertUnstalled(stall!);
  } finally {
    for (const f of floods) for (const s of f.sockets) s.destroy();
    await server.stop();
  }
});
