// XEP-0198 stream management with real clients across a cluster of three `parley serve`
// processes (tests/helpers/cluster.ts; heartbeat 200ms, dead_after 1s): the scenario of
// tests/interop/stream_management_clients_test.ts (tests/helpers/sm_load.ts: 500 numbered
// messages at 100/s, each to arrive exactly once and in order, no `unavailable` of the client's
// full JID shown to its contact, the session resumed rather than bound anew), with the client on
// n1, its contact on n3, and the client resuming on n2:
// - a cut: the client reaches n1 through a FaultProxy, which blackholes the connection after 150
//   messages (stanzas of both sides lost in flight) and cuts it 20 later; n2 takes the session
//   from n1, which is alive;
// - a kill: n1 is killed with SIGKILL after 150 messages; the session's replica (placed on n2 or
//   n3 by the client's resource, cluster_sm.ts: resourceWithReplicaOn) is taken over, and n2
//   resumes it, from itself or from n3.
// slixmpp runs both directions in each test at once (two accounts, two clients, one cluster, one
// fault per client's connection, or one kill for both); @xmpp/client (which reconnects to the
// service it was given) goes through a proxy whose target moves from n1 to n2 before n1 dies.
// About 8 s each. SM_DEBUG=1 prints what each client went through.
import assert from "node:assert/strict";
import { clusterTest, startCluster, type TestCluster } from "../helpers/cluster.ts";
import {
  clusterLogs,
  resourceWithReplicaOn,
  selfStatus,
  SM_SETTINGS,
} from "../helpers/cluster_sm.ts";
import { FaultProxy } from "../helpers/fault_proxy.ts";
import {
  endpoint,
  runSmScenario,
  type SmClientKind,
  type SmDeployment,
  type SmDirection,
  type SmReport,
} from "../helpers/sm_load.ts";
import { eventually } from "../helpers/until.ts";

/** Server log lines worth showing when a run fails. */
const SM_LOGS = /resum|session|took over|link|replica|sm |error|failed|invalid|dead/i;

/** Three nodes, each its own process, resumable sessions kept 300 s; the cluster formed. */
async function smCluster(): Promise<TestCluster> {
  const c = await startCluster(3, { overrides: { stream_management: SM_SETTINGS } });
  try {
    await c.formed();
  } catch (e) {
    await c.stop();
    throw e;
  }
  return c;
}

/** One run of the scenario, and where its session's replica is kept (a node's index). */
interface Run {
  kind: SmClientKind;
  direction: SmDirection;
  replica: number;
  deployment: SmDeployment;
}

/**
 * What every run shares on cluster `c`: the client's session on n1 with its replica on node
 * `replica`, its contact on n3, accounts in the shared store.
 */
function onCluster(
  c: TestCluster,
  replica: number,
  d: Pick<SmDeployment, "first" | "reconnect" | "stall" | "fault">,
): SmDeployment {
  const holderPeers = c.nodes.slice(1).map((n) => n.name);
  return {
    ...d,
    addUser: (user) => c.addUser(user),
    befriend: (a, b) => c.befriend(a, b),
    peerLogin: (user, resource) => c.login(2, user, resource),
    resource: (user) => resourceWithReplicaOn(user, holderPeers, c.nodes[replica].name),
  };
}

/**
 * Runs `runs` at once on `c`; fails with every failed run's error and the nodes' logs. Returns the
 * reports in the order of `runs`.
 */
async function runAll(c: TestCluster, runs: Run[]): Promise<SmReport[]> {
  const results = await Promise.allSettled(
    runs.map((r) => runSmScenario(r.deployment, r.kind, r.direction)),
  );
  const failed = results.flatMap((r, i) =>
    r.status === "rejected"
      ? [`${runs[i].kind} ${runs[i].direction}: ${r.reason?.stack ?? r.reason}`]
      : []
  );
  if (failed.length) assert.fail(`${failed.join("\n\n")}\n\n${clusterLogs(c, SM_LOGS)}`);
  const reports = results.map((r) => (r as PromiseFulfilledResult<SmReport>).value);
  reports.forEach((r, i) => {
    const resumed = Math.round(r.faultToResumedMs);
    console.log(
      `  ${r.kind} ${r.direction} (replica on ${c.nodes[runs[i].replica].name}): ${r.ms} ms ` +
        `for 500 messages, resumed ${r.resumptions}× ${resumed} ms after its fault call, ` +
        `${r.delayed} with <delay/>`,
    );
  });
  return reports;
}

/**
 * One action for `n` callers: each call waits until all `n` have called (or `ms` passed, when a
 * run failed before getting there), then the action runs once and every call resolves with it.
 */
function together(n: number, action: () => Promise<void>, ms = 5000): () => Promise<void> {
  let arrived = 0;
  let done: Promise<void> | undefined;
  const all = Promise.withResolvers<void>();
  return async () => {
    if (++arrived === n) all.resolve();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([all.promise, new Promise((r) => timer = setTimeout(r, ms))]);
    clearTimeout(timer);
    await (done ??= action());
  };
}

/** Waits until node i keeps `n` replicas of other nodes' sessions. */
function replicas(c: TestCluster, i: number, n: number): Promise<void> {
  return eventually(
    async () => (await selfStatus(c, i)).replicas === n,
    `${n} session replica(s) on ${c.nodes[i].name}`,
    5000,
  );
}

clusterTest(
  "SM with real clients across nodes: slixmpp gets 500 messages at 100/s and sends 500 across a cut of its connection to n1, resuming on n2; each arrives once, in order; the contact on n3 sees no unavailable",
  async () => {
    const c = await smCluster();
    const [n1, n2] = c.nodes;
    const proxies: FaultProxy[] = [];
    try {
      // Each client through a proxy of its own, blackholed then cut when its run says.
      const cutRun = async (direction: SmDirection, replica: number): Promise<Run> => {
        const proxy = await FaultProxy.start({ host: n1.host, port: n1.port });
        proxies.push(proxy);
        return {
          kind: "slixmpp",
          direction,
          replica,
          deployment: onCluster(c, replica, {
            first: endpoint(proxy.host, proxy.port),
            reconnect: endpoint(n2.host, n2.port),
            stall: () => Promise.resolve(proxy.set("blackhole")),
            fault: () => Promise.resolve(proxy.set("cut")),
          }),
        };
      };
      // n2 takes one session from n1 with the replica on n3, the other with it on n2 itself.
      await runAll(c, [await cutRun("to-client", 2), await cutRun("from-client", 1)]);
    } finally {
      for (const p of proxies) await p.close();
      await c.stop();
    }
  },
);

clusterTest(
  "SM with real clients across nodes: slixmpp gets 500 messages at 100/s and sends 500 across kill -9 of n1, its session's node, resuming on n2 (the replica's node, or taken from n3's replica); each arrives once, in order; no unavailable",
  async () => {
    const c = await smCluster();
    const [n1, n2] = c.nodes;
    try {
      // One kill for both clients, once both runs got to their fault (150 messages each), with
      // each session's replica where the run says.
      const kill = together(2, async () => {
        await replicas(c, 1, 1);
        await replicas(c, 2, 1);
        await c.kill(0);
      });
      const killRun = (direction: SmDirection, replica: number): Run => ({
        kind: "slixmpp",
        direction,
        replica,
        deployment: onCluster(c, replica, {
          first: endpoint(n1.host, n1.port),
          reconnect: endpoint(n2.host, n2.port),
          fault: kill,
        }),
      });
      await runAll(c, [killRun("to-client", 1), killRun("from-client", 2)]);
      // Each replica's node took its session over: n2 resumed one there, and the other from n3.
      const adopted = [1, 2].map(async (i) => (await selfStatus(c, i)).adopted);
      assert.deepEqual(await Promise.all(adopted), [1, 1], clusterLogs(c, SM_LOGS));
    } finally {
      await c.stop();
    }
  },
);

clusterTest(
  "SM with real clients across nodes: @xmpp/client gets 500 messages at 100/s across kill -9 of its node, reconnecting through a proxy moved to another node; each once, in order; no unavailable",
  async () => {
    const c = await smCluster();
    const [n1, n2] = c.nodes;
    // The proxy connects each new connection to `target` as it is then (fault_proxy.ts reads the
    // object it was given on every accept): moved to n2 before n1 dies, the client's
    // reconnection to the same service reaches n2.
    const target = { host: n1.host, port: n1.port };
    const proxy = await FaultProxy.start(target);
    try {
      const at = endpoint(proxy.host, proxy.port);
      const replica = 2;
      const run: Run = {
        kind: "xmpp.js",
        direction: "to-client",
        replica,
        deployment: onCluster(c, replica, {
          first: at,
          reconnect: at,
          async fault() {
            await replicas(c, replica, 1);
            Object.assign(target, { host: n2.host, port: n2.port });
            await c.kill(0);
          },
        }),
      };
      await runAll(c, [run]);
      assert.equal((await selfStatus(c, replica)).adopted, 1, clusterLogs(c, SM_LOGS));
    } finally {
      await proxy.close();
      await c.stop();
    }
  },
);
