// /metrics of a three-node cluster of processes: each node shows each configured peer up, the
// sessions of the whole cluster, and a peer killed with SIGKILL as down within dead_after + 1 s.
import assert from "node:assert/strict";
import { C2S_LISTENER, clusterTest, startCluster, type TestCluster } from "../helpers/cluster.ts";
import { scrape } from "../helpers/metrics.ts";
import { eventually } from "../helpers/until.ts";
import type { RawClient } from "../helpers/raw_client.ts";

const DEAD_AFTER_MS = 1000;
const NAMES = ["n1", "n2", "n3"];

/** Each node's http listener, the second of its listeners. */
const LISTENERS = [C2S_LISTENER, { type: "http", bind: "{node_host}", port: 0 }];

const metricsOf = async (c: TestCluster, i: number) => {
  const node = c.nodes[i];
  const s = await scrape(`http://${node.host}:${node.process!.ports[1]}`);
  assert.equal(s.status, 200);
  return s.samples;
};
const up = (peer: string) => `parley_cluster_peer_up{peer="${peer}"}`;

clusterTest("cluster metrics: peers up, cluster sessions, a killed peer down in time", async () => {
  const c = await startCluster(3, {
    overrides: { listeners: LISTENERS },
    deadAfter: `${DEAD_AFTER_MS}ms`,
  });
  const clients: RawClient[] = [];
  try {
    await c.formed();
    for (let i = 0; i < 3; i++) {
      const peers = NAMES.filter((_, j) => j !== i);
      await eventually(async () => {
        const m = await metricsOf(c, i);
        return peers.every((p) =>
          m.get(up(p)) === 1 && m.has(`parley_cluster_peer_rtt_seconds{peer="${p}"}`)
        );
      }, `n${i + 1} to show its peers up`);
      const m = await metricsOf(c, i);
      assert.equal(m.has(up(NAMES[i])), false, "a node is not its own peer");
      for (const p of peers) {
        assert.ok(m.get(`parley_cluster_peer_rtt_seconds{peer="${p}"}`)! >= 0);
        assert.ok(m.has(`parley_cluster_queued_bytes{peer="${p}"}`));
      }
    }

    await c.addUser("alice");
    clients.push(await c.login(0, "alice", "r"));
    for (let i = 0; i < 3; i++) {
      await eventually(
        async () => (await metricsOf(c, i)).get("parley_cluster_sessions") === 1,
        `n${i + 1} to count alice's session in the cluster`,
      );
      const local = (await metricsOf(c, i)).get('parley_sessions{transport="tcp"}');
      assert.equal(local, i === 0 ? 1 : 0);
    }

    await c.kill(2);
    const killedAt = Date.now();
    await eventually(
      async () => {
        const [m1, m2] = await Promise.all([metricsOf(c, 0), metricsOf(c, 1)]);
        return m1.get(up("n3")) === 0 && m2.get(up("n3")) === 0;
      },
      "n1 and n2 to show n3 down",
      DEAD_AFTER_MS + 1000,
    );
    assert.ok(Date.now() - killedAt <= DEAD_AFTER_MS + 1000);
    // Still configured: its series stays, at 0, beside the peers still up.
    assert.equal((await metricsOf(c, 0)).get(up("n2")), 1);
    assert.equal((await metricsOf(c, 1)).get(up("n1")), 1);
  } finally {
    for (const cl of clients) cl.close();
    await c.stop();
  }
});
