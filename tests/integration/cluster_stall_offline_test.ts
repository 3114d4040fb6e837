// Messages stored offline while a node was stalled (SIGSTOP) or partitioned away reach its users
// when it comes back, on the same connection, exactly once, and leave the store (issue 14, 3).
// heartbeat 200ms, dead_after 1s.
import assert from "node:assert/strict";
import {
  clusterTest,
  presenceFrom,
  startCluster,
  type TestCluster,
  usersOnline,
} from "../helpers/cluster.ts";
import { offlineView } from "../helpers/cluster_offline.ts";
import { FaultProxy } from "../helpers/fault_proxy.ts";
import type { RawClient } from "../helpers/raw_client.ts";

const DEAD_AFTER_MS = 1000;

/** Resolves once `pred` holds (asked every 50 ms); fails after `ms`. */
async function eventually(pred: () => Promise<boolean>, what: string, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!await pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Until node i no longer has a link up to `peer`. */
function peerDown(c: TestCluster, i: number, peer: string): Promise<void> {
  return eventually(
    async () => (await c.status(i)).find((m) => m.node === peer)?.state !== "up",
    `n${i + 1} to see ${peer} down`,
  );
}

/**
 * Sends chat message number `k` from `from` to `to` (the even ones to the bare JID, the odd ones
 * to the full JID `to/r`); returns its id.
 */
function sendOne(from: RawClient, to: string, prefix: string, k: number): string {
  const id = `${prefix}${k}`;
  const addr = k % 2 ? `${to}/r` : to;
  from.send(`<message to='${addr}' type='chat' id='${id}'><body>${id}</body></message>`);
  return id;
}

/** Sends `n` numbered chat messages from `from` to `to`; returns their ids. */
function sendNumbered(from: RawClient, to: string, prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, k) => sendOne(from, to, prefix, k));
}

interface Stream {
  sent(): number;
  /** Stops sending (again, harmlessly); the ids sent. */
  stop(): string[];
}

/** Streams still sending, stopped at the end of each test whatever its outcome. */
const running = new Set<Stream>();

/**
 * Sends numbered chat messages from `from` to `to` every 5 ms until stopped: across a heal, some
 * are stored, some are being stored while the recipient's node comes back, some are routed to
 * it.
 */
function stream(from: RawClient, to: string, prefix: string): Stream {
  const ids: string[] = [];
  const timer = setInterval(() => ids.push(sendOne(from, to, prefix, ids.length)), 5);
  const s: Stream = {
    sent: () => ids.length,
    stop() {
      clearInterval(timer);
      running.delete(s);
      return ids;
    },
  };
  running.add(s);
  return s;
}

/** Stops `streams` once each has sent `more` messages after this call; the ids of each. */
async function afterwards(streams: Stream[], more: number): Promise<string[][]> {
  const from = streams.map((s) => s.sent());
  await eventually(
    () => Promise.resolve(streams.every((s, i) => s.sent() >= from[i] + more)),
    "messages sent after the return",
  );
  return streams.map((s) => s.stop());
}

/**
 * Waits until `client` has every message of `ids`, then, once a marker sent after them by
 * `sender` has arrived too, checks that none came twice; those of `stored` must have come from
 * offline storage.
 */
async function receivedOnce(
  client: RawClient,
  sender: RawClient,
  full: string,
  ids: string[],
  stored: string[],
  what: string,
): Promise<void> {
  const count = (id: string) =>
    client.received.filter((e) => e.name === "message" && e.attrs.id === id).length;
  try {
    await eventually(() => Promise.resolve(ids.every((id) => count(id) > 0)), what, 15_000);
  } catch (e) {
    throw new Error(`${(e as Error).message}: missing ${ids.filter((id) => !count(id))}`);
  }
  const marker = `marker-${crypto.randomUUID()}`;
  sender.send(`<message to='${full}' type='chat' id='${marker}'><body>end</body></message>`);
  await client.waitFor((e) => e.attrs.id === marker, 5000, `${what}: the marker`);
  assert.deepEqual(ids.filter((id) => count(id) !== 1), [], `${what}: each exactly once`);
  for (const id of stored) {
    const el = client.received.find((e) => e.attrs.id === id)!;
    assert.ok(el.child("delay"), `${id} came from offline storage`);
  }
  assert.equal(client.closed, false, `${what}: the same connection`);
}

clusterTest(
  "a node stopped for 2 × dead_after: what was stored offline for its users meanwhile reaches them when it is back, exactly once, without a new login",
  async () => {
    const c = await startCluster(3, { heartbeat: "200ms", deadAfter: "1s" });
    const view = await offlineView(c);
    const clients: RawClient[] = [];
    let stoppedPid: number | undefined;
    try {
      for (const u of ["alice", "bob", "carol"]) await c.addUser(u);
      await c.befriend("alice", "bob");
      await c.befriend("carol", "bob");
      await c.formed();
      const { alice, bob, carol } = await usersOnline(
        c,
        [["alice", 0], ["bob", 1], ["carol", 2]],
        clients,
      );
      for (const client of [alice, carol]) {
        await client.waitFor(presenceFrom("bob@localhost/r"), 5000, "bob online");
      }
      await bob.waitFor(presenceFrom("alice@localhost/r"), 5000, "alice online");
      await bob.waitFor(presenceFrom("carol@localhost/r"), 5000, "carol online");

      const pid = c.nodes[1].process!.child.pid;
      Deno.kill(pid, "SIGSTOP");
      stoppedPid = pid;
      const stoppedAt = performance.now();
      for (const client of [alice, carol]) {
        await client.waitFor(
          presenceFrom("bob@localhost/r", "unavailable"),
          DEAD_AFTER_MS + 3000,
          "bob unavailable",
        );
      }
      await peerDown(c, 0, "n2");
      await peerDown(c, 2, "n2");
      // Stored by n1 and by n3.
      const ids = [
        ...sendNumbered(alice, "bob@localhost", "a", 20),
        ...sendNumbered(carol, "bob@localhost", "c", 10),
      ];
      await eventually(async () => await view.count("bob") === ids.length, "30 stored");
      await eventually(
        () => Promise.resolve(performance.now() - stoppedAt >= 2 * DEAD_AFTER_MS),
        "2 × dead_after",
      );
      // And more, sent throughout the node's return.
      const streams = [stream(alice, "bob@localhost", "as"), stream(carol, "bob@localhost", "cs")];
      Deno.kill(pid, "SIGCONT");
      stoppedPid = undefined;

      await c.formed();
      await alice.waitFor(presenceFrom("bob@localhost/r"), 5000, "bob available again");
      await carol.waitFor(presenceFrom("bob@localhost/r"), 5000, "bob available again");
      const streamed = (await afterwards(streams, 20)).flat();
      await receivedOnce(bob, alice, "bob@localhost/r", [...ids, ...streamed], ids, "bob");
      assert.equal(await view.count("bob"), 0, "nothing left in offline storage");
    } finally {
      if (stoppedPid !== undefined) Deno.kill(stoppedPid, "SIGCONT");
      for (const s of running) s.stop();
      for (const r of clients) r.close();
      await view.close();
      await c.stop();
    }
  },
);

clusterTest(
  "a partition longer than dead_after: what each side stored for the other's users reaches them after the heal, exactly once, without a new login",
  async () => {
    const c = await startCluster(2, { start: [], heartbeat: "200ms", deadAfter: "1s" });
    const [n1, n2] = c.nodes;
    const toN2 = await FaultProxy.start({ host: n2.host, port: n2.clusterPort });
    const toN1 = await FaultProxy.start({ host: n1.host, port: n1.clusterPort });
    c.peerAddresses = { n1: { n2: toN2.address }, n2: { n1: toN1.address } };
    const view = await offlineView(c);
    const clients: RawClient[] = [];
    try {
      await c.start(0);
      await c.start(1);
      for (const u of ["alice", "bob"]) await c.addUser(u);
      await c.befriend("alice", "bob");
      await c.formed();
      const { alice, bob } = await usersOnline(c, [["alice", 0], ["bob", 1]], clients);
      await alice.waitFor(presenceFrom("bob@localhost/r"), 5000, "bob online");
      await bob.waitFor(presenceFrom("alice@localhost/r"), 5000, "alice online");

      for (const p of [toN1, toN2]) p.set("blackhole");
      await alice.waitFor(presenceFrom("bob@localhost/r", "unavailable"), DEAD_AFTER_MS + 3000);
      await bob.waitFor(presenceFrom("alice@localhost/r", "unavailable"), DEAD_AFTER_MS + 3000);
      await peerDown(c, 0, "n2");
      await peerDown(c, 1, "n1");
      const toBob = sendNumbered(alice, "bob@localhost", "a", 20);
      const toAlice = sendNumbered(bob, "alice@localhost", "b", 20);
      await eventually(
        async () => await view.count("bob") === 20 && await view.count("alice") === 20,
        "20 stored on each side",
      );
      // And more, sent throughout the heal.
      const toBobStream = stream(alice, "bob@localhost", "as");
      const toAliceStream = stream(bob, "alice@localhost", "bs");
      for (const p of [toN1, toN2]) p.set("pass");

      await c.formed();
      await alice.waitFor(presenceFrom("bob@localhost/r"), 5000, "bob available again");
      await bob.waitFor(presenceFrom("alice@localhost/r"), 5000, "alice available again");
      const [streamedToBob, streamedToAlice] = await afterwards([toBobStream, toAliceStream], 20);
      await receivedOnce(bob, alice, "bob@localhost/r", [...toBob, ...streamedToBob], toBob, "bob");
      await receivedOnce(
        alice,
        bob,
        "alice@localhost/r",
        [...toAlice, ...streamedToAlice],
        toAlice,
        "alice",
      );
      assert.equal(await view.count("bob"), 0, "nothing left for bob");
      assert.equal(await view.count("alice"), 0, "nothing left for alice");
    } finally {
      for (const s of running) s.stop();
      for (const r of clients) r.close();
      await view.close();
      await c.stop();
      await Promise.all([toN1.close(), toN2.close()]);
    }
  },
);
