// A cluster of `parley serve` processes for tests: node i is n<i+1> on the loopback alias
// 127.0.0.<i+1>, every node started from one configuration file (with `--node`), certificates
// from Parley's own PKI, one throwaway PostgreSQL database shared by all. Clients log in with
// `login(i, user)` on a node's own address.
import { join } from "node:path";
import { stringify } from "yaml";
import { type RunningServer, serveProcess } from "./process.ts";
import { type TestPki, testPki } from "./cluster_pki.ts";
import { sharedPostgres } from "./postgres.ts";
import { merge, type Tree } from "./server.ts";
import { RawClient } from "./raw_client.ts";
import { until } from "./until.ts";
import { adminRequest } from "../../src/admin/socket.ts";
import type { MemberStatus } from "../../src/cluster/node.ts";
import { parseConfig } from "../../src/config/load.ts";
import { openStore } from "../../src/storage/open.ts";
import { deriveCredentials } from "../../src/sasl/scram_keys.ts";
import type { Element } from "../../src/xml/element.ts";

export interface ClusterOptions {
  /** Merged into the configuration of every node. */
  overrides?: Tree;
  /** Merged into the configuration of one node, by name (e.g. { n3: { … } }). */
  nodeOverrides?: Record<string, Tree>;
  /** Which nodes to start, in order (default: all, in order; [] starts none). */
  start?: number[];
  heartbeat?: string;
  deadAfter?: string;
}

export interface TestNode {
  name: string;
  host: string;
  /** Where peers reach this node. */
  clusterPort: number;
  dataDir: string;
  process: RunningServer | undefined;
  /** The c2s port, once started. */
  port: number;
}

export interface TestCluster {
  nodes: TestNode[];
  pki: TestPki;
  /** The configuration file every node starts from. */
  configFile: string;
  /**
   * Peer addresses one node dials instead, e.g. { n1: { n2: "127.0.0.1:4000" } } (a fault
   * proxy); read when the node starts.
   */
  peerAddresses: Record<string, Record<string, string>>;
  start(i: number): Promise<void>;
  /** Sends a signal (default SIGKILL) and waits for the process to end. */
  kill(i: number, signal?: Deno.Signal): Promise<void>;
  restart(i: number): Promise<void>;
  /** `parley cluster status` of node i, through its admin socket. */
  status(i: number): Promise<MemberStatus[]>;
  /** Waits until each running node has a link up to each other running node. */
  formed(ms?: number): Promise<void>;
  addUser(user: string): Promise<void>;
  /** Makes two users contacts subscribed both ways. */
  befriend(a: string, b: string): Promise<void>;
  login(i: number, user: string, resource?: string): Promise<RawClient>;
  /** Log messages of node i (its current or last process). */
  logs(i: number): string[];
  stop(): Promise<void>;
}

/** A port free on every alias of the cluster (checked by binding it on each). */
export function freePort(hosts: string[]): number {
  for (;;) {
    const l = Deno.listen({ hostname: hosts[0], port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    try {
      for (const host of hosts.slice(1)) Deno.listen({ hostname: host, port }).close();
      return port;
    } catch { /* taken somewhere: try another */ }
  }
}

export const DOMAIN = "localhost";

/** Each node's c2s listener, on its own address (for tests that list more listeners). */
export const C2S_LISTENER = {
  type: "c2s",
  bind: "{node_host}",
  port: 0,
  starttls: "optional",
  plain_without_tls: true,
};

export async function startCluster(n: number, opts: ClusterOptions = {}): Promise<TestCluster> {
  const names = Array.from({ length: n }, (_, i) => `n${i + 1}`);
  const hosts = names.map((_, i) => `127.0.0.${i + 1}`);
  const dir = await Deno.makeTempDir({ prefix: "parley-cluster-" });
  const pki = await testPki(names);
  const url = await (await sharedPostgres()).database();
  const port = freePort(hosts);
  const base = merge({
    data_dir: join(dir, "{node}"),
    log: { level: "info" },
    hosts: [{ domain: DOMAIN }],
    auth: { scram_iterations: 64 },
    timeouts: { auth_failure_delay_ms: 10 },
    storage: { type: "postgres", url, pool: 4 },
    listeners: [C2S_LISTENER],
    cluster: {
      peers: names.map((node, i) => ({ node, address: `${hosts[i]}:${port}` })),
      tls: {
        ca: join(pki.dir, "cluster-ca.pem"),
        cert: join(pki.dir, "{node}.pem"),
        key: join(pki.dir, "{node}.key"),
      },
      heartbeat: opts.heartbeat ?? "200ms",
      dead_after: opts.deadAfter ?? "1s",
    },
  }, opts.overrides ?? {});
  const configFile = join(dir, "parley.yaml");
  await Deno.writeTextFile(configFile, stringify(base));
  // A node whose peers are reached elsewhere (through a proxy) gets a file of its own.
  const fileOf = async (name: string): Promise<string> => {
    const over = cluster.peerAddresses[name];
    const own = opts.nodeOverrides?.[name];
    if (!over && !own) return configFile;
    const section = base.cluster as { peers: { node: string; address: string }[] };
    const peers = section.peers.map((p) => ({ ...p, address: over?.[p.node] ?? p.address }));
    const file = join(dir, `${name}.yaml`);
    const config = merge(merge(base, own ?? {}), { cluster: { ...section, peers } });
    await Deno.writeTextFile(file, stringify(config));
    return file;
  };
  const nodes: TestNode[] = names.map((name, i) => ({
    name,
    host: hosts[i],
    clusterPort: port,
    dataDir: join(dir, name),
    process: undefined,
    port: 0,
  }));
  const lastLogs = new Map<number, Record<string, unknown>[]>();
  // The test's own connection to the shared store, to create accounts (hosts may hold
  // per-node `{node_host}` settings, which need the cluster section: the store needs neither).
  const storeConfig = {
    ...base,
    cluster: undefined,
    listeners: undefined,
    hosts: undefined,
    data_dir: dir,
  };
  const store = await openStore(parseConfig(stringify(storeConfig), "store.yaml"));

  const cluster: TestCluster = {
    nodes,
    pki,
    configFile,
    peerAddresses: {},
    async start(i) {
      const node = nodes[i];
      node.process = await serveProcess(await fileOf(node.name), [], ["--node", node.name]);
      lastLogs.set(i, node.process.logs);
      node.port = node.process.ports[0];
    },
    async kill(i, signal = "SIGKILL") {
      const p = nodes[i].process;
      if (!p) return;
      nodes[i].process = undefined;
      try {
        p.child.kill(signal);
      } catch { /* already gone */ }
      await p.exited;
      await p.logsDone;
    },
    async restart(i) {
      await cluster.kill(i, "SIGTERM");
      await cluster.start(i);
    },
    async status(i) {
      return await adminRequest(nodes[i].dataDir, { cmd: "cluster" }) as MemberStatus[];
    },
    async formed(ms = 10_000) {
      const running = nodes.map((nd, i) => ({ nd, i })).filter(({ nd }) => nd.process);
      const want = new Set(running.map(({ nd }) => nd.name));
      const ok = new Map<number, boolean>();
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        for (const { i } of running) {
          const members = await cluster.status(i).catch(() => []);
          ok.set(
            i,
            members.filter((m) => want.has(m.node) && (m.state === "up" || m.state === "self"))
              .length === want.size,
          );
        }
        if ([...ok.values()].every(Boolean)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`the cluster did not form in ${ms} ms`);
    },
    async addUser(user) {
      await store.createAccount(user, DOMAIN, (await deriveCredentials("secret", 64))!);
    },
    async befriend(a, b) {
      for (const [u, c] of [[a, b], [b, a]]) {
        await store.updateRosterItem(u, DOMAIN, `${c}@${DOMAIN}`, () => ({
          jid: `${c}@${DOMAIN}`,
          subscription: "both",
          ask: false,
          groups: [],
        }));
      }
    },
    async login(i, user, resource) {
      const c = await RawClient.connect(nodes[i].port, { host: nodes[i].host });
      await c.open();
      if (!await c.scram(user, "secret")) throw new Error(`login of ${user} on n${i + 1} failed`);
      await c.open();
      await c.bind(resource);
      return c;
    },
    logs(i) {
      return (lastLogs.get(i) ?? []).map((l) => String(l.message ?? l.raw));
    },
    async stop() {
      await Promise.all(nodes.map((_, i) => cluster.kill(i, "SIGTERM")));
      await store.close();
      await pki.remove();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    for (const i of opts.start ?? nodes.map((_, i) => i)) await cluster.start(i);
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

/** A test of processes and sockets that outlive single steps: no op/resource sanitizers. */
export function clusterTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false });
}

/** Matches presence from `full` of `type` (available when undefined). */
export const presenceFrom = (full: string, type?: string) => (el: Element) =>
  el.name === "presence" && el.attrs.from === full && el.attrs.type === type;

export { until };

/** Logs users in, each on its node as resource `r`, available; returns them by name. */
export async function usersOnline(
  c: TestCluster,
  users: [string, number][],
  clients: RawClient[],
): Promise<Record<string, RawClient>> {
  const out: Record<string, RawClient> = {};
  for (const [user, i] of users) {
    const r = await c.login(i, user, "r");
    clients.push(r);
    r.send("<presence/>");
    out[user] = r;
  }
  return out;
}
