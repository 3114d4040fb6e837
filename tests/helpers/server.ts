// Starts a Parley server in this process on ephemeral loopback ports, with its own data dir.
import { stringify } from "yaml";
import { parseConfig } from "../../src/config/load.ts";
import { Server } from "../../src/server/server.ts";
import { setupLogging } from "../../src/log/logger.ts";
import { deriveCredentials } from "../../src/sasl/scram_keys.ts";

export interface TestServer {
  server: Server;
  port: number;
  tlsPort: number;
  /** The http listener's port (WebSocket, BOSH, discovery), when the server has one. */
  httpPort: number;
  dataDir: string;
  domain: string;
  addUser(user: string, password?: string): Promise<void>;
  restart(): Promise<TestServer>;
  stop(): Promise<void>;
}

let logging = false;

export type Tree = { [k: string]: unknown };

export function merge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = b && typeof b === "object" && !Array.isArray(b) && v && typeof v === "object" &&
        !Array.isArray(v)
      ? merge(b as Tree, v as Tree)
      : v;
  }
  return out;
}

/** Starts a server; `overrides` are merged into the test configuration (lists replace). */
export async function startServer(overrides: Tree = {}, dataDir?: string): Promise<TestServer> {
  if (!logging) {
    setupLogging((Deno.env.get("PARLEY_TEST_LOG") as "debug" | undefined) ?? "error");
    logging = true;
  }
  const dir = dataDir ?? await Deno.makeTempDir({ prefix: "parley-test-" });
  const config = merge({
    data_dir: dir,
    hosts: [{ domain: "localhost" }],
    auth: { scram_iterations: 64 },
    timeouts: { auth_failure_delay_ms: 10 },
    listeners: [
      { type: "c2s", bind: "127.0.0.1", port: 0, starttls: "optional", plain_without_tls: true },
      { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
      { type: "http", bind: "127.0.0.1", port: 0 },
    ],
  }, overrides);
  const server = await Server.start(parseConfig(stringify(config), "test.yaml"));
  const t: TestServer = {
    server,
    port: server.addresses[0].port,
    tlsPort: server.addresses[1].port,
    httpPort: server.addresses.find((a) => a.type === "http")?.port ?? 0,
    dataDir: dir,
    domain: "localhost",
    async addUser(user, password = "secret") {
      await server.store.createAccount(user, "localhost", (await deriveCredentials(password, 64))!);
    },
    async restart() {
      await server.stop();
      return startServer(overrides, dir);
    },
    stop: () => server.stop(),
  };
  return t;
}

/**
 * Listeners for tests driving slixmpp, which cannot verify our self-signed certificate: STARTTLS
 * is offered but optional, and PLAIN stays off without TLS, so it authenticates with SCRAM as a
 * client on a real deployment would.
 */
export const SLIXMPP_LISTENERS = [
  { type: "c2s", bind: "127.0.0.1", port: 0, starttls: "optional" },
  { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
];

/** A test with its own server (configured with `overrides`), stopped whatever the outcome. */
export function withServer(
  name: string,
  overrides: Tree,
  fn: (t: TestServer) => Promise<void>,
): void {
  serverTest(name, async () => {
    const t = await startServer(overrides);
    try {
      await fn(t);
    } finally {
      await t.stop();
    }
  });
}

/** Deno.test with the op/resource sanitizers off: the server under test outlives single ops. */
export function serverTest(name: string, fn: (t: Deno.TestContext) => Promise<void>): void {
  Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false });
}
