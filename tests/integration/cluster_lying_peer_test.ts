// A peer that lies (a process holding a valid node certificate): a node believes it only about
// what it may own. Against running nodes (their own processes): records for another node's
// session, from the future, for a domain the cluster does not serve, over
// cluster.max_records_per_peer, a flood of records and of unknown frames, a CLOSE for a user who
// has an account; and the backoff of a peer whose links keep sending invalid input.
import assert from "node:assert/strict";
import { clusterTest, presenceFrom, startCluster, type TestCluster } from "../helpers/cluster.ts";
import { RoguePeer } from "../helpers/rogue_peer.ts";
import { MAX_STALL_MS, stallProbe } from "../helpers/abuse.ts";
import { until } from "../helpers/until.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import { CLOSE, RECORD, type WireRecord } from "../../src/cluster/wire.ts";

const record = (jid: string, extra: Partial<WireRecord> = {}): string =>
  JSON.stringify({ ...JSON.parse(RECORD.example), jid, boundAt: Date.now(), ...extra });

/** How many sessions node i holds for `peer`, as `parley cluster status` says. */
async function sessionsOf(c: TestCluster, i: number, peer: string): Promise<number> {
  return (await c.status(i)).find((m) => m.node === peer)?.sessions ?? 0;
}

/** Resident memory of node i's process, in bytes. */
async function rss(c: TestCluster, i: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${c.nodes[i].process!.child.pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** Sends a chat message from `a` to `to` and waits for `b` to get it. */
async function reaches(a: RawClient, b: RawClient, to: string, body: string): Promise<void> {
  a.send(`<message to='${to}' type='chat'><body>${body}</body></message>`);
  await b.waitFor((el) => el.name === "message" && el.childText("body") === body, 5000, body);
}

clusterTest(
  "a lying peer is believed only about what it may own, and its floods are bounded",
  async () => {
    const c = await startCluster(3, {
      start: [0, 1],
      overrides: { cluster: { max_records_per_peer: 1000, invalid_input_backoff: "100ms" } },
    });
    const clients: RawClient[] = [];
    let rogue: RoguePeer | undefined;
    try {
      for (const u of ["alice", "bob", "probe"]) await c.addUser(u);
      await c.befriend("alice", "bob");
      await c.formed();
      const alice = await c.login(0, "alice", "r");
      const bob = await c.login(1, "bob", "r");
      clients.push(alice, bob);
      alice.send("<presence/>");
      bob.send("<presence/>");
      await alice.waitFor(presenceFrom("bob@localhost/r"), 5000, "bob online");
      const probe = await stallProbe(c.nodes[0].port);
      rogue = await RoguePeer.start(c, "n3", 0);
      const before = await rss(c, 0);

      // Another node's session, bound earlier than the real one: not taken over.
      rogue.send(RECORD.type, record("bob@localhost/r", { boundAt: 1000, priority: 127 }));
      // A session of a domain the cluster does not serve, and one bound in the future.
      rogue.send(RECORD.type, record("mallory@elsewhere.example/x"));
      rogue.send(RECORD.type, record("alice@localhost/r", { boundAt: Date.now() + 3_600_000 }));
      // A removal of an account that exists.
      rogue.send(
        CLOSE.type,
        JSON.stringify({ jid: "alice@localhost/r", condition: "not-authorized", text: "no" }),
      );
      await until(
        () => c.logs(0).some((l) => l.includes("asked to close it, but its account exists")),
        "the CLOSE refused",
      );
      assert.equal(await sessionsOf(c, 0, "n3"), 0);
      await reaches(alice, bob, "bob@localhost/r", "still bob's");
      await reaches(bob, alice, "alice@localhost/r", "still alice's");
      assert.ok(!alice.closed, "alice's stream stays open");

      // A flood of records: the cap closes the link at max_records_per_peer; the node's memory
      // stays bounded and its users are answered in time.
      let sent = 0;
      const deadline = performance.now() + 8000;
      while (sent < 200_000 && performance.now() < deadline) {
        if (!rogue.linked) {
          await rogue.up();
          continue;
        }
        for (let i = 0; i < 2000 && rogue.linked; i++) {
          rogue.send(RECORD.type, record(`user${sent++}@localhost/flood`));
        }
        await new Promise((r) => setTimeout(r, 0));
      }
      assert.ok(sent >= 20_000, `sent ${sent}`);
      await rogue.up();
      assert.ok(await sessionsOf(c, 0, "n3") <= 1000);
      // Frames of a type nobody knows: the first closes the link.
      const downs = rogue.downs;
      for (let i = 0; i < 100_000 && rogue.linked; i++) rogue.send(200, "?");
      await until(() => rogue!.downs > downs, "unknown frames refused");
      const { maxWaitMs } = await probe.stop();
      assert.ok(maxWaitMs < MAX_STALL_MS, `a user waited ${maxWaitMs} ms`);
      const grown = (await rss(c, 0)) - before;
      assert.ok(grown < 64 << 20, `RSS grew by ${grown >> 20} MiB`);
      const warned = c.logs(0).filter((l) => l.includes("n3")).length;
      assert.ok(warned < 200, `${warned} log lines about n3`);
      await reaches(alice, bob, "bob@localhost/r", "after the flood");
    } finally {
      await rogue?.stop();
      for (const cl of clients) cl.close();
      await c.stop();
    }
  },
);

clusterTest(
  "a peer whose links keep sending invalid input is refused for longer each time",
  async () => {
    const c = await startCluster(2, {
      start: [0],
      overrides: { cluster: { invalid_input_backoff: "400ms" } },
    });
    const rogue = await RoguePeer.start(c, "n2", 0);
    try {
      const gaps: number[] = [];
      for (let i = 0; i < 3; i++) {
        const downs = rogue.downs;
        rogue.send(RECORD.type, "{bad");
        await until(() => rogue.downs > downs, "refused");
        const down = performance.now();
        await rogue.up();
        gaps.push(performance.now() - down);
      }
      // Measured from when the rogue saw its link close, a moment after the node refused it.
      const slack = 50;
      assert.ok(gaps[0] >= 400 - slack, `first gap ${gaps[0]}`);
      assert.ok(gaps[1] >= 800 - slack, `second gap ${gaps[1]}`);
      assert.ok(gaps[2] >= 1600 - slack, `third gap ${gaps[2]}`);
      const status = (await c.status(0)).find((m) => m.node === "n2")!;
      assert.equal(status.invalidInput, 3);
    } finally {
      await rogue.stop();
      await c.stop();
    }
  },
);
