// Multi-User Chat over three `parley serve` processes: groupchat sent while the room's node is
// stalled (SIGSTOP for 2 × dead_after, then SIGCONT) or cut off (its links blackholed for as long)
// is neither lost nor doubled. Stanzas forwarded to a room's node are kept until it acknowledges
// them and go to the node that takes the room over: every message reaches every occupant on the
// other nodes exactly once, or its sender gets an error for it.
import assert from "node:assert/strict";
import { clusterTest, startCluster, type TestCluster } from "../helpers/cluster.ts";
import { counters, mucHost, oneRoom, poll, roomOn } from "../helpers/cluster_muc.ts";
import { FaultProxy } from "../helpers/fault_proxy.ts";
import { createRoom, isPresence, join, MUC } from "../helpers/muc.ts";
import type { RawClient } from "../helpers/raw_client.ts";

const DEAD_AFTER_MS = 1000;
/** Each sender sends one message this often: 10 a second. */
const EVERY_MS = 100;

type Fault = "stall" | "partition";

/**
 * Three nodes; for a partition, every link of n2 runs through a proxy (one per dialling
 * direction) that can blackhole it.
 */
async function cluster(fault: Fault): Promise<{ c: TestCluster; proxies: FaultProxy[] }> {
  const c = await startCluster(3, {
    overrides: mucHost(),
    heartbeat: "200ms",
    deadAfter: `${DEAD_AFTER_MS}ms`,
    start: [],
  });
  const proxies: FaultProxy[] = [];
  const via = async (from: number, to: number) => {
    const target = c.nodes[to];
    const p = await FaultProxy.start({ host: target.host, port: target.clusterPort });
    proxies.push(p);
    (c.peerAddresses[c.nodes[from].name] ??= {})[target.name] = p.address;
  };
  if (fault === "partition") {
    for (const [from, to] of [[0, 1], [2, 1], [1, 0], [1, 2]]) await via(from, to);
  }
  for (const i of [0, 1, 2]) await c.start(i);
  for (const u of ["a", "b", "z"]) await c.addUser(u);
  await c.formed();
  return { c, proxies };
}

async function groupchatThroughFault(fault: Fault): Promise<void> {
  const { c, proxies } = await cluster(fault);
  const clients: RawClient[] = [];
  let timer: ReturnType<typeof setInterval> | undefined;
  const login = async (user: string, i: number) => {
    const r = await c.login(i, user, "r");
    clients.push(r);
    r.send("<presence/>");
    return r;
  };
  try {
    // The room runs on n2; occupants on n1 (a), n3 (b) and n2 (z).
    const name = await roomOn(c, 1, fault);
    const ROOM = `${name}@${MUC}`;
    const a = await login("a", 0);
    const b = await login("b", 2);
    const z = await login("z", 1);
    await createRoom(a, name, "A");
    await join(b, name, "B");
    await join(z, name, "Z");
    await a.waitFor(isPresence(`${ROOM}/Z`));
    let replica = -1;
    await poll(async () => {
      for (const i of [0, 2]) if ((await counters(c, i)).replicas === 1) replica = i;
      return replica !== -1;
    }, "the room's replica");

    // a and b each send a numbered message every 100 ms, from before the fault until it ends.
    const senders: [string, RawClient][] = [["a", a], ["b", b]];
    const sent: [string, RawClient][] = [];
    let n = 0;
    const send = () => {
      for (const [u, r] of senders) {
        const id = `${u}-${n}`;
        r.send(`<message to='${ROOM}' type='groupchat' id='${id}'><body>${id}</body></message>`);
        sent.push([id, r]);
      }
      n++;
    };
    const got = (r: RawClient, id: string) =>
      r.received.filter((e) =>
        e.name === "message" && e.attrs.type === "groupchat" && e.attrs.id === id &&
        e.attrs.from?.startsWith(`${ROOM}/`) === true
      ).length;
    const refused = (r: RawClient, id: string) =>
      r.received.some((e) => e.name === "message" && e.attrs.type === "error" && e.attrs.id === id);
    timer = setInterval(send, EVERY_MS);
    // The fault comes right after n2 fanned out a-2 and b-2, most often before its
    // acknowledgement (10 ms later) went out: only the count in its fan-out frames keeps n1 and
    // n3 from sending them again.
    await poll(() => Promise.resolve(n >= 3 && got(a, "b-2") === 1), "the first messages");

    const node2 = c.nodes[1].process!.child;
    const since = performance.now();
    if (fault === "stall") node2.kill("SIGSTOP");
    else for (const p of proxies) p.set("blackhole");
    const before = n;
    await poll(
      async () => (await counters(c, replica)).takeovers === 1,
      "the takeover",
      DEAD_AFTER_MS + 3000,
    );
    await poll(
      () => Promise.resolve(performance.now() - since >= 2 * DEAD_AFTER_MS),
      "2 × dead_after",
    );
    clearInterval(timer);
    timer = undefined;
    const during = n - before;
    if (fault === "stall") node2.kill("SIGCONT");
    else for (const p of proxies) p.set("pass");
    await c.formed(15_000);

    // The two copies of the room (n2's, and the one taken over) are one again.
    await oneRoom(c, ROOM, 3);
    // Each message has reached a and b, or was refused to its sender.
    const settledFor = ([id, sender]: [string, RawClient]) =>
      refused(sender, id) || (got(a, id) >= 1 && got(b, id) >= 1);
    await poll(
      () => Promise.resolve(sent.every(settledFor)),
      "every message delivered or refused",
      10_000,
    ).catch(() => {}); // the check below says which are not
    // A last message from each, after all others on its way: nothing is still coming.
    for (const [u, r] of senders) {
      r.send(`<message to='${ROOM}' type='groupchat' id='${u}-end'><body>end</body></message>`);
    }
    for (const r of [a, b]) {
      for (const u of ["a", "b"]) {
        await poll(() => Promise.resolve(got(r, `${u}-end`) === 1), `${u}-end`, 10_000);
      }
    }

    const wrong: string[] = [];
    let errors = 0;
    for (const [id, sender] of sent) {
      const counts = [got(a, id), got(b, id)];
      if (refused(sender, id)) {
        errors++;
        if (counts.some((k) => k !== 0)) wrong.push(`${id}: refused, yet delivered ${counts}`);
      } else if (counts.some((k) => k !== 1)) wrong.push(`${id}: delivered ${counts} times`);
      // z, on n2, was out of the room taken over: it has the messages n2 handled, none twice.
      if (got(z, id) > 1) wrong.push(`${id}: delivered ${got(z, id)} times to z`);
    }
    const resent = (await counters(c, 0)).resent + (await counters(c, 2)).resent;
    console.log(
      `${fault}: ${sent.length} messages, ${during * 2} sent during the fault, ` +
        `${resent} sent again to the room's new node, ${errors} refused`,
    );
    assert.deepEqual(wrong, [], `to a and b (counts as [a, b]), of ${sent.length} messages`);
    assert.ok(during * 2 >= 30, `only ${during * 2} messages sent during the fault`);
  } finally {
    if (timer !== undefined) clearInterval(timer);
    try {
      c.nodes[1].process?.child.kill("SIGCONT");
    } catch { /* gone */ }
    for (const r of clients) r.close();
    await c.stop();
    await Promise.all(proxies.map((p) => p.close()));
  }
}

clusterTest(
  "MUC: groupchat sent while the room's node is stalled for 2 × dead_after reaches every occupant elsewhere once, or is refused",
  () => groupchatThroughFault("stall"),
);

clusterTest(
  "MUC: groupchat sent while the room's node is cut off (blackholed) for 2 × dead_after reaches every occupant elsewhere once, or is refused",
  () => groupchatThroughFault("partition"),
);
