// The abuse suite's harness: a Parley server in its own process (so the attack's own work never
// counts as the server's), and a stall probe, a logged-in client that pings the server every
// 100 ms and reports the longest wait for a pong while an attack runs.
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { join } from "node:path";
import { SqliteStore } from "../../src/storage/sqlite.ts";
import { deriveCredentials } from "../../src/sasl/scram_keys.ts";
import { NS } from "../../src/xml/ns.ts";
import { RawClient } from "./raw_client.ts";
import { merge, type Tree } from "./server.ts";
import { type RunningServer, serveProcess } from "./process.ts";

export interface AbuseServer extends RunningServer {
  dataDir: string;
  /** Ports of the configured listeners, in order. */
  port: number;
  tlsPort: number;
  stop(): Promise<void>;
}

/**
 * Starts `parley serve` as a child process with accounts `users` (password "secret") created
 * first. `overrides` merge into the configuration (lists replace); `prefix` runs the server
 * through another program (e.g. `prlimit --nofile=256:256`).
 */
export async function abuseServer(
  overrides: Tree = {},
  users: string[] = ["probe"],
  prefix: string[] = [],
): Promise<AbuseServer> {
  const dir = await Deno.makeTempDir({ prefix: "parley-abuse-" });
  const config = merge({
    data_dir: dir,
    log: { level: "info" },
    hosts: [{ domain: "localhost" }],
    auth: { scram_iterations: 4096 },
    listeners: [
      { type: "c2s", bind: "127.0.0.1", port: 0, starttls: "optional", plain_without_tls: true },
      { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
    ],
  }, overrides);
  const store = new SqliteStore(join(dir, "parley.db"));
  const iterations = (config.auth as { scram_iterations: number }).scram_iterations;
  for (const u of users) {
    await store.createAccount(u, "localhost", (await deriveCredentials("secret", iterations))!);
  }
  await store.close();
  const file = join(dir, "parley.yaml");
  await Deno.writeTextFile(file, stringify(config));
  const running = await serveProcess(file, prefix);
  return {
    ...running,
    dataDir: dir,
    port: running.ports[0],
    tlsPort: running.ports[1],
    async stop() {
      try {
        running.child.kill("SIGTERM");
      } catch { /* already gone */ }
      await running.exited;
      await running.logsDone;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

export interface StallProbe {
  /** Stops pinging; the longest time any ping waited for its pong (ms), unanswered ones included. */
  stop(): Promise<{ maxWaitMs: number; pings: number }>;
}

/** Logs in `user` and pings the server every `everyMs` until stopped. */
export async function stallProbe(port: number, user = "probe", everyMs = 100): Promise<StallProbe> {
  const c = await RawClient.login(port, user, "secret", { starttls: false, mech: "PLAIN" });
  const sent = new Map<string, number>();
  let maxWaitMs = 0;
  let pings = 0;
  let seq = 0;
  c.socket.on("data", () => {
    // Answers are matched as they arrive, so a pong is timed when its bytes land, not when a test
    // gets round to looking.
    for (const el of c.received.splice(0)) {
      const at = sent.get(el.attrs.id ?? "");
      if (at === undefined) continue;
      sent.delete(el.attrs.id!);
      maxWaitMs = Math.max(maxWaitMs, performance.now() - at);
    }
  });
  const timer = setInterval(() => {
    const id = `probe-${++seq}`;
    sent.set(id, performance.now());
    pings++;
    c.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='${NS.ping}'/></iq>`);
  }, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      // Give the last pings their chance to be answered (bounded), then count what is left.
      const deadline = performance.now() + 2000;
      while (sent.size && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const now = performance.now();
      for (const at of sent.values()) maxWaitMs = Math.max(maxWaitMs, now - at);
      c.close();
      return { maxWaitMs, pings };
    },
  };
}

/** The abuse suite's bound: no user may wait longer than this for the server during an attack. */
export const MAX_STALL_MS = 1000;

/** The probe pinged during the attack, and never waited past MAX_STALL_MS for a pong. */
export function assertUnstalled(stall: { maxWaitMs: number; pings: number }): void {
  assert.ok(stall.pings > 0, "the probe pinged during the attack");
  assert.ok(
    stall.maxWaitMs < MAX_STALL_MS,
    `a logged-in user waited ${stall.maxWaitMs.toFixed(0)} ms for a pong`,
  );
}

/** Waits until no connection of `conns` is still open, or `ms` have passed. */
export async function allClosed<T>(conns: T[], open: (c: T) => boolean, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (conns.some(open) && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
}
