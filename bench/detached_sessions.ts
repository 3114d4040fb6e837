// Heap a detached resumable session (XEP-0198) holds on its node, exactly: a server in this
// process, N sessions with stream management and resumption logged in by lean clients (also in
// this process), their connections closed by the clients; once the server has detached them all
// and the clients are garbage, the heap after full collections, then again once every detached
// session has ended (timed out). Before, what stream management adds to a bound session: the heap
// with N bound sessions and their clients, with it and (N other sessions, before) without it. Also measured: the same detached sessions with the reference each
// keeps to its gone connection's transport (ClientSession.transport, which reaches the socket and
// the whole C2SSession of the dead stream) replaced by a bare { kind } — what that reference costs.
// Run with --v8-flags=--expose-gc; prints one JSON line (bytes per session).
import { startServer } from "../tests/helpers/server.ts";
import { NS } from "../src/xml/ns.ts";
import { isLocal } from "../src/router/sessions.ts";
import type { ClientSession } from "../src/c2s/client_session.ts";
import { NativeClient } from "./native_client.ts";

const n = Number(Deno.args[0] ?? 5000);
/** Ten sessions per account: one keeps at most 16 detached (src/c2s/resumption.ts). */
const USERS = Math.ceil(n / 10);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const heap = async () => {
  await sleep(200); // closes and timers settle
  for (let i = 0; i < 3; i++) gc();
  return Deno.memoryUsage().heapUsed;
};

const t = await startServer({
  limits: { connections_per_ip: 100000, registrations_per_address: 1_000_000 },
  timeouts: { ping_interval: 0, handshake: 600, auth_failure_delay_ms: 0 },
  stream_management: { resume_timeout: "300s", max_resume_timeout: "3600s", max_unacked: 5000 },
});
try {
  for (let u = 0; u < USERS; u++) await t.addUser(`d${u}`, "pw");
  const { resumption, sessions } = t.server;
  const detached = () => resumption!.counts.detached;
  const local = () => [...sessions.local()].filter((s) => isLocal(s)) as ClientSession[];
  /**
   * Logs `count` sessions in (with stream management and resumption when `sm`); `measure` runs
   * while they are all bound and their clients alive, then every client closes its connection
   * and the server is waited for: detached sessions (sm), or none left.
   */
  const round = async (count: number, sm: boolean, measure = async () => {}) => {
    let clients: NativeClient[] = [];
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const i = next++;
        const c = await NativeClient.login(t.port, `d${i % USERS}`, "pw", `r${i}`);
        if (sm) {
          c.send(`<enable xmlns='${NS.sm}' resume='true'/>`);
          await c.until("<enabled");
        }
        clients.push(c);
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    await measure();
    for (const c of clients) c.conn.close();
    clients = [];
    const deadline = Date.now() + 60_000;
    while (sm ? detached() < count : local().length > 0) {
      if (Date.now() > deadline) {
        throw new Error(`${detached()} of ${count} sessions detached (${local().length} here)`);
      }
      await sleep(50);
    }
  };
  const endAll = async () => {
    resumption!.sweep(Date.now() + 1e10);
    while (detached() > 0 || local().length > 0) await sleep(50);
  };
  // A first round of each kind warms the server's code and caches up: the baselines hold them.
  await round(200, false);
  await round(200, true);
  await endAll();
  // Bound sessions with their clients (also in this heap, alike in both rounds), without and
  // with stream management: the difference is what it adds to a bound session.
  let bound = 0;
  const b0 = await heap();
  await round(n, false, async () => void (bound = await heap() - b0));
  const before = await heap();
  let boundSm = 0;
  await round(n, true, async () => void (boundSm = await heap() - before));
  const held = await heap();
  for (const s of local()) s.transport = { kind: s.transport.kind };
  const bare = await heap();
  await endAll();
  const after = await heap();
  console.log(JSON.stringify({
    sessions: n,
    smBound: (boundSm - bound) / n,
    detached: (held - after) / n,
    withoutTransport: (bare - after) / n,
    leftAfterEnd: (after - before) / n,
  }));
} finally {
  await t.stop();
}
