// Faults under a running cluster of `parley serve` processes: a node killed with SIGKILL, a cut
// link and a blackholed link (through a fault-injecting proxy), nodes started in any order, and a
// ten-node cluster forming from one static peer list. heartbeat 200ms, dead_after 1s.
import assert from "node:assert/strict";
import { clusterTest, presenceFrom, startCluster, usersOnline } from "../helpers/cluster.ts";
import { FaultProxy } from "../helpers/fault_proxy.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import type { MemberStatus } from "../../src/cluster/node.ts";
import { parley } from "../helpers/process.ts";

const DEAD_AFTER_MS = 1000;

clusterTest(
  "kill -9 of a node: others keep working, see its users go within dead_after + 1 s, and its users log in again on a survivor at once",
  async () => {
    const c = await startCluster(3);
    const clients: RawClient[] = [];
    try {
      for (const u of ["alice", "bob", "carol"]) await c.addUser(u);
      await c.befriend("alice", "bob");
      await c.befriend("alice", "carol");
      await c.formed();
      const { alice, carol } = await usersOnline(
        c,
        [["alice", 0], ["bob", 1], ["carol", 2]],
        clients,
      );
      await alice.waitFor(presenceFrom("bob@localhost/r"), 5000, "bob online");
      await alice.waitFor(presenceFrom("carol@localhost/r"), 5000, "carol online");

      const killed = performance.now();
      await c.kill(1);
      // bob logs in again on n3 at once, before n2 is even declared dead.
      const bob = await c.login(2, "bob", "again");
      clients.push(bob);
      bob.send("<presence/>");
      await alice.waitFor(presenceFrom("bob@localhost/again"), 5000, "bob back on n3");
      await alice.waitFor(
        presenceFrom("bob@localhost/r", "unavailable"),
        DEAD_AFTER_MS + 1000,
        "bob/r unavailable",
      );
      const told = performance.now() - killed;
      assert.ok(told <= DEAD_AFTER_MS + 1000, `told after ${told} ms`);
      // Users on the survivors keep talking, both ways.
      alice.send(
        "<message to='carol@localhost' type='chat' id='x1'><body>still here</body></message>",
      );
      await carol.waitFor((e) => e.attrs.id === "x1", 5000, "alice to carol");
      bob.send("<message to='alice@localhost/r' type='chat' id='x2'><body>back</body></message>");
      await alice.waitFor((e) => e.attrs.id === "x2", 5000, "bob to alice");
      const members = await c.status(0);
      assert.equal(members.find((m) => m.node === "n2")?.state === "up", false);
      assert.equal(members.find((m) => m.node === "n3")?.sessions, 2);
    } finally {
      for (const r of clients) r.close();
      await c.stop();
    }
  },
);

/**
 * Two nodes whose link runs through two proxies (one per dialling direction), so that the
 * proxies can cut or blackhole it; alice on n1, bob and dave on n2.
 */
async function partitionTest(mode: "cut" | "blackhole"): Promise<void> {
  const c = await startCluster(2, { start: [] });
  const [n1, n2] = c.nodes;
  const toN2 = await FaultProxy.start({ host: n2.host, port: n2.clusterPort });
  const toN1 = await FaultProxy.start({ host: n1.host, port: n1.clusterPort });
  c.peerAddresses = { n1: { n2: toN2.address }, n2: { n1: toN1.address } };
  await c.start(0);
  await c.start(1);
  const clients: RawClient[] = [];
  try {
    for (const u of ["alice", "bob", "dave"]) await c.addUser(u);
    await c.befriend("alice", "bob");
    await c.befriend("alice", "dave");
    await c.formed();
    const { alice, bob, dave } = await usersOnline(
      c,
      [["alice", 0], ["bob", 1], ["dave", 1]],
      clients,
    );
    await alice.waitFor(presenceFrom("bob@localhost/r"), 5000, "bob online");
    await alice.waitFor(presenceFrom("dave@localhost/r"), 5000, "dave online");
    await dave.waitFor(presenceFrom("alice@localhost/r"), 5000, "alice online");

    for (const p of [toN1, toN2]) p.set(mode);
    // Sent into the partition before it is noticed: stored offline, never lost.
    alice.send("<message to='bob@localhost/r' type='chat' id='lost'><body>where</body></message>");
    await alice.waitFor(presenceFrom("bob@localhost/r", "unavailable"), DEAD_AFTER_MS + 1000);
    await dave.waitFor(presenceFrom("alice@localhost/r", "unavailable"), DEAD_AFTER_MS + 1000);
    // bob leaves while the nodes cannot talk: after healing, n1 must not keep a ghost of him.
    bob.close();
    for (const p of [toN1, toN2]) p.set("pass");
    await c.formed();
    // Heal: each side gets the current presence of the other's users again.
    await alice.waitFor(presenceFrom("dave@localhost/r"), 5000, "dave's presence again");
    await dave.waitFor(presenceFrom("alice@localhost/r"), 5000, "alice's presence again");
    const n1view = (await c.status(0)).find((m) => m.node === "n2")!;
    const n2view = (await c.status(1)).find((m) => m.node === "n1")!;
    assert.equal(n1view.sessions, 1, "n1 sees dave only on n2 (no ghost of bob)");
    assert.equal(n2view.sessions, 1, "n2 sees alice on n1");
    assert.ok(
      !alice.received.some(presenceFrom("bob@localhost/r")),
      "a ghost of bob was announced",
    );
    // The message sent into the partition waited in offline storage.
    const bob2 = await c.login(1, "bob", "r2");
    clients.push(bob2);
    bob2.send("<presence/>");
    const kept = await bob2.waitFor((e) => e.attrs.id === "lost", 5000, "the partition message");
    assert.ok(kept.child("delay"));
  } finally {
    for (const r of clients) r.close();
    await c.stop();
    await Promise.all([toN1.close(), toN2.close()]);
  }
}

clusterTest(
  "a cut link: both sides see the other's users go, then heal with no ghosts",
  () => partitionTest("cut"),
);

clusterTest(
  "a blackholed link (open sockets, no packets): detected, healed with no ghosts",
  () => partitionTest("blackhole"),
);

clusterTest(
  "nodes started in reverse order, then in a random order, form the cluster",
  async () => {
    for (const order of [[2, 1, 0], [1, 2, 0].sort(() => Math.random() - 0.5)]) {
      const c = await startCluster(3, { start: order });
      try {
        await c.formed();
      } finally {
        await c.stop();
      }
    }
  },
);

clusterTest(
  "parley cluster status --node NAME: each member's link state, RTT, queue, sessions",
  async () => {
    const c = await startCluster(2);
    try {
      await c.formed();
      const out = await parley([
        "cluster",
        "status",
        "--json",
        "--config",
        c.configFile,
        "--node",
        "n2",
      ]);
      assert.equal(out.code, 0, out.stderr);
      const members = JSON.parse(out.stdout) as MemberStatus[];
      assert.deepEqual(members.map((m) => [m.node, m.state]), [["n2", "self"], ["n1", "up"]]);
      assert.equal(typeof members[1].rttMs, "number");
      const text = await parley(["cluster", "status", "--config", c.configFile, "--node", "n1"]);
      // (Services add their columns between SESSIONS and SINCE.)
      assert.match(text.stdout, /^NODE\s+STATE\s+ADDRESS\s+RTT\s+QUEUED\s+SESSIONS\s.*\sSINCE/);
      assert.match(text.stdout, /\nn2\s+up\s+127\.0\.0\.2:/);
    } finally {
      await c.stop();
    }
  },
);

clusterTest("ten nodes form a full mesh from one static peer list within 10 s", async () => {
  const c = await startCluster(10, { start: [] });
  try {
    await Promise.all(c.nodes.map((_, i) => c.start(i)));
    const started = performance.now();
    await c.formed(10_000);
    const ms = performance.now() - started;
    assert.ok(ms < 10_000, `formed in ${ms} ms`);
    for (let i = 0; i < 10; i++) {
      const members = await c.status(i);
      assert.equal(members.filter((m) => m.state === "up").length, 9);
    }
  } finally {
    await c.stop();
  }
});

clusterTest(
  "start-up, a restart and a wake from a stall log no warning: simultaneous dials settle quietly",
  async () => {
    const c = await startCluster(3);
    try {
      await c.formed();
      await c.restart(1);
      await c.formed();
      // A stall shorter than dead_after: the links stay, nothing to say.
      const pid = c.nodes[2].process!.child.pid;
      Deno.kill(pid, "SIGSTOP");
      await new Promise((r) => setTimeout(r, DEAD_AFTER_MS / 2));
      Deno.kill(pid, "SIGCONT");
      await c.formed();
      for (const [i, node] of c.nodes.entries()) {
        const loud = node.process!.logs.filter((r) => r.level === "WARNING" || r.level === "ERROR");
        assert.deepEqual(loud.map((r) => r.message), [], `n${i + 1} warned`);
      }
    } finally {
      await c.stop();
    }
  },
);
