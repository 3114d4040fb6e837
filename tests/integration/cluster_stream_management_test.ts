// XEP-0198 stream management over a cluster of `parley serve` processes (heartbeat 200ms,
// dead_after 1s): a session resumed on another node after its connection is cut, or after its
// node is killed with SIGKILL, with 500 messages at 100/s each way, each delivered exactly once and
// in order, and its contact never shown it leaving; two resumptions of one session at once on two
// nodes (one wins); and a detached session's timeout across two nodes (unavailable then, its
// messages kept offline for the next login, on either node).
import assert from "node:assert/strict";
import { clusterTest, startCluster, type TestCluster, until } from "../helpers/cluster.ts";
import {
  clusterLogs,
  LOOPBACK_C2S,
  numbered,
  paced,
  replicasOn,
  resourceWithReplicaOn,
  ResumingClient,
  selfStatus,
  sequenceProblems,
  SM_SETTINGS,
} from "../helpers/cluster_sm.ts";
import { FaultProxy } from "../helpers/fault_proxy.ts";
import {
  bodies,
  failedCondition,
  messageWithBody,
  presence,
  SmClient,
} from "../helpers/sm_client.ts";
import type { Element } from "../../src/xml/element.ts";
import { NS } from "../../src/xml/ns.ts";

const COUNT = 500;
const RATE = 100;
const CUT_AFTER = 150;
const DEAD_AFTER_MS = 1000;

const bounced = (e: Element) => e.name === "message" && e.attrs.type === "error";
const from = (jid: string) => (e: Element) => e.attrs.from === jid;
/** Server log lines worth showing when a scenario fails. */
const SM_LOGS = /resum|session|took over|link|replica|sm |error|failed|invalid/i;

/** How many stanzas of each kind, e.g. "presence 2, message 149". */
function countsOf(els: Element[]): string {
  const n = new Map<string, number>();
  for (const e of els) n.set(e.name, (n.get(e.name) ?? 0) + 1);
  return [...n].map(([k, v]) => `${k} ${v}`).join(", ");
}

async function smCluster(n: number, sm: Record<string, unknown> = {}): Promise<TestCluster> {
  const c = await startCluster(n, {
    overrides: { ...LOOPBACK_C2S, stream_management: { ...SM_SETTINGS, ...sm } },
  });
  try {
    for (const u of ["alice", "bob"]) await c.addUser(u);
    await c.befriend("alice", "bob");
    await c.formed();
  } catch (e) {
    await c.stop();
    throw e;
  }
  return c;
}

/** Both available, each shown the other. */
/**
 * Three nodes; alice, resumable, on n1 through a fault proxy, and bob on n3, each available to
 * the other. `stop` closes the clients (and those added to `closers`), the proxy and the nodes.
 */
async function aliceBehindProxy() {
  const c = await smCluster(3);
  const proxy = await FaultProxy.start({ host: "127.0.0.1", port: c.nodes[0].port });
  const closers: { close(): void }[] = [];
  const stop = async () => {
    for (const x of closers) x.close();
    await proxy.close();
    await c.stop();
  };
  try {
    const a = await ResumingClient.login(proxy.port, "alice", "phone");
    closers.push(a);
    const b = await SmClient.login(c.nodes[2].port, "bob", { resource: "desk" });
    closers.push(b);
    await online(a, b);
    return { c, proxy, a, b, closers, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function online(a: ResumingClient, b: SmClient): Promise<void> {
  a.send("<presence/>");
  b.send("<presence/>");
  await b.waitFor(presence(undefined, a.jid), 5000, "alice's presence at bob");
  await a.current.waitFor(presence(undefined, b.jid), 5000, "bob's presence at alice");
}

interface Fault {
  kind: "cut" | "kill";
  /** The node keeping alice's replica (1 or 2; alice is on n1). */
  replica: number;
  /** Where alice resumes. */
  resumeOn: number;
}

/**
 * Alice (stream-managed, resumable) on n1, bob on n3, contacts; bob sends alice 500 numbered
 * messages at 100/s and she sends him 500; after bob's 150th her connection is cut (through a
 * proxy) or n1 is killed; she resumes on another node with the h she has, and sends again what
 * the server's <resumed h/> says it did not handle. Each side gets every message once, in order;
 * bob never sees alice unavailable.
 */
async function exactlyOnceAcross(f: Fault): Promise<void> {
  const c = await smCluster(3);
  const [n1, , n3] = c.nodes;
  const proxy = await FaultProxy.start({ host: "127.0.0.1", port: n1.port });
  const closers: { close(): void }[] = [];
  try {
    const resource = resourceWithReplicaOn("alice", ["n2", "n3"], c.nodes[f.replica].name);
    const a = await ResumingClient.login(
      f.kind === "cut" ? proxy.port : n1.port,
      "alice",
      resource,
    );
    closers.push(a);
    const b = await SmClient.login(n3.port, "bob", { resource: "desk" });
    closers.push(b);
    await online(a, b);
    await replicasOn(c, f.replica, 1);

    let bSent = 0;
    let faultAt = 0;
    let sentAtFault = 0;
    let killed: Promise<void> | undefined;
    const started = performance.now();
    const toAlice = paced(COUNT, RATE, (i) => {
      b.message(a.jid, `b${i}`, "chat", `b-${i}`);
      bSent = i;
    }, (i) => {
      if (i !== CUT_AFTER) return;
      faultAt = performance.now();
      sentAtFault = i;
      if (f.kind === "cut") proxy.set("cut");
      else killed = c.kill(0);
    });
    const toBob = paced(COUNT, RATE, (i) => a.message(b.jid, `a${i}`, `a-${i}`));

    // Alice sees her connection go; after a kill she comes back once bob sent 20 more (sent
    // while n1 is dead and before she resumes).
    await until(() => faultAt > 0 && a.current.closed, "alice's connection to close", 10_000);
    if (f.kind === "kill") await until(() => bSent >= sentAtFault + 20, "20 more from bob");
    const hBefore = a.h;
    const sentBeforeResume = bSent;
    const resumed = await a.resume(c.nodes[f.resumeOn].port);
    const sentAtResume = bSent;
    const faultToResumed = performance.now() - faultAt;
    const diag = () =>
      `alice ${a.jid} resumed ${
        JSON.stringify(a.resumptions)
      } (h ${hBefore}); answer ${resumed}\n` +
      `before: ${countsOf(a.received().slice(0, hBefore))}; last 3 before: ` +
      `${a.connections[0].log.slice(-3).join(" ")}\nfirst 5 after: ` +
      `${a.received().slice(hBefore, hBefore + 5).join(" ")}\n` + clusterLogs(c, SM_LOGS);
    assert.equal(resumed.name, "resumed", `resumption refused: ${diag()}`);
    assert.equal(resumed.attrs.previd, a.id);
    // The path the scenario says: held on the node resumed on; after a kill, taken over from the
    // replica by the replica's node (then, if elsewhere, given to the node resumed on).
    assert.equal((await selfStatus(c, f.resumeOn)).resumable, 1, diag());
    if (f.kind === "kill") assert.equal((await selfStatus(c, f.replica)).adopted, 1, diag());
    await Promise.all([toAlice, toBob]);
    // The end of each side's traffic; order per sender–recipient pair is kept, so once the
    // marker is in, every numbered message (and any duplicate of one) is too.
    b.message(a.jid, "end", "chat", "b-end");
    a.message(b.jid, "end", "a-end");
    const aliceDone = () => a.received().some((e) => messageWithBody("end")(e) && from(b.jid)(e));
    const bobDone = () => b.log.some((e) => messageWithBody("end")(e) && from(a.jid)(e));
    const timedOut = await until(() => aliceDone() && bobDone(), "both ends", 10_000)
      .then(() => "", (e: Error) => e.message);
    const ms = performance.now() - started;
    if (killed) await killed;
    await b.sync();
    await a.sync();

    const toA = numbered(a.received().filter(from(b.jid)), "b");
    const toB = numbered(b.log.filter(from(a.jid)), "a");
    const problems = [
      timedOut,
      sequenceProblems(toA, COUNT) && `alice got: ${sequenceProblems(toA, COUNT)}`,
      sequenceProblems(toB, COUNT) && `bob got: ${sequenceProblems(toB, COUNT)}`,
    ].filter(Boolean);
    assert.deepEqual(problems, [], `${problems.join("\n")}\n${diag()}`);
    // Bob never saw alice go, during the cut or while n1 was being declared dead (by now
    // longer ago than dead_after + 1 s); nothing bounced either way.
    assert.ok(performance.now() - faultAt > DEAD_AFTER_MS + 1000);
    const shown = b.log.filter((e) => e.name === "presence" && from(a.jid)(e));
    assert.deepEqual(
      shown.filter((e) => e.attrs.type !== undefined).map(String),
      [],
      `bob was shown alice going\n${diag()}`,
    );
    assert.deepEqual(b.log.filter(bounced).map(String), []);
    assert.deepEqual(a.log().filter(bounced).map(String), []);
    assert.deepEqual(a.current.streamErrors().map(String), []);
    assert.equal(a.resumptions.length, 1);
    // What bob sent after the fault and before alice resumed came after the resumption.
    const after = numbered(a.connections[1].log.filter(from(b.jid)), "b");
    for (let i = sentAtFault + 1; i <= sentBeforeResume; i++) {
      assert.ok(after.includes(i), `b${i}, sent while alice was away, came after <resumed/>`);
    }
    const [{ h, resent }] = a.resumptions;
    console.log(
      `  ${f.kind} at b${sentAtFault}; alice resumed on ${c.nodes[f.resumeOn].name} (replica on ` +
        `${c.nodes[f.replica].name}) ${faultToResumed.toFixed(0)} ms later with h=${hBefore}; ` +
        `the server had handled ${h} of hers, she sent ${resent} again; bob had sent ` +
        `b${sentAtResume} by then; ${ms.toFixed(0)} ms for 2×${COUNT} messages; bob was shown ` +
        `${shown.length} available presence(s) of alice`,
    );
  } finally {
    for (const x of closers) x.close();
    await proxy.close();
    await c.stop();
  }
}

clusterTest(
  "SM across nodes: a cut connection resumed on another node; 500 messages each way at 100/s arrive once each, in order; the contact sees no unavailable",
  () => exactlyOnceAcross({ kind: "cut", replica: 2, resumeOn: 1 }),
);

clusterTest(
  "SM across nodes: kill -9 of the session's node, resumed on the replica's node; 500 each way once, in order; no unavailable",
  () => exactlyOnceAcross({ kind: "kill", replica: 1, resumeOn: 1 }),
);

clusterTest(
  "SM across nodes: kill -9 of the session's node, resumed on a node that takes it from the replica's node; 500 each way once, in order; no unavailable",
  () => exactlyOnceAcross({ kind: "kill", replica: 2, resumeOn: 1 }),
);

clusterTest(
  "SM across nodes: two resumptions of one session at once on n2 and n3: one <resumed/>, the other <failed/> item-not-found (four rounds)",
  async () => {
    const { c, proxy, a, b, closers, stop } = await aliceBehindProxy();
    const [n1, n2, n3] = c.nodes;
    try {
      const id = a.id;
      const outcomes: string[] = [];
      // Round 1: the holder (n1) is cut off from its client and both ask it; later rounds:
      // the winner's connection drops and the holder is one of the two.
      let holder: SmClient = a.current;
      for (let round = 1; round <= 4; round++) {
        b.message(a.jid, `before ${round}`);
        await holder.waitFor(messageWithBody(`before ${round}`));
        if (round === 1) proxy.set("cut");
        else holder.drop();
        await until(() => holder.closed, "the holder's connection to close");
        const h = holder.inbound;
        // Three streams, all authenticated before any resumption: two race, one comes after.
        const [x, y, late] = await Promise.all(
          [n2, n3, n1].map((n) => SmClient.auth(n.port, "alice")),
        );
        closers.push(x, y, late);
        const [rx, ry] = await Promise.all([x.resume(id, h), y.resume(id, h)]);
        const names = `n2: ${rx}, n3: ${ry}\n${clusterLogs(c, SM_LOGS)}`;
        assert.deepEqual([rx.name, ry.name].sort(), ["failed", "resumed"], names);
        const [winner, loser, lost] = rx.name === "resumed" ? [x, y, ry] : [y, x, rx];
        outcomes.push(rx.name === "resumed" ? "n2" : "n3");
        assert.equal(failedCondition(lost), "item-not-found", names);
        winner.autoAck = true;
        winner.jid = a.jid;
        // The loser's stream goes on: it binds a resource of its own.
        assert.equal(await loser.bind(`laptop${round}`), `alice@localhost/laptop${round}`);
        loser.close();
        // Once resumed, the id resumes nothing more for a stream that started before.
        assert.equal(failedCondition(await late.resume(id, h)), "item-not-found");
        late.close();
        // The winner holds the session: messages both ways, from alice's full JID.
        b.message(a.jid, `after ${round}`);
        await winner.waitFor(messageWithBody(`after ${round}`));
        winner.message(b.jid, `resumed ${round}`);
        const got = await b.waitFor(messageWithBody(`resumed ${round}`));
        assert.equal(got.attrs.from, a.jid);
        await winner.sync();
        assert.deepEqual(winner.streamErrors().map(String), []);
        holder = winner;
      }
      // The winner's count went on from each h: what bob sent came once per round.
      const all = bodies(b.log);
      assert.equal(all.filter((t) => t.startsWith("resumed ")).length, 4);
      assert.deepEqual(b.log.filter(presence("unavailable", a.jid)).map(String), []);
      assert.deepEqual(b.log.filter(bounced).map(String), []);
      console.log(`  winners by round: ${outcomes.join(", ")}`);
      holder.close();
    } finally {
      await stop();
    }
  },
);

/**
 * Two nodes, resume_timeout 2s: alice on n1 (through a proxy) is cut off; bob on n2 is shown her
 * unavailable only once the timeout has passed; what she was sent and never acknowledged, and
 * what bob sent while she was away, comes at her next login (on node `loginOn`) after her initial
 * presence, from offline storage.
 */
async function detachedTimesOut(loginOn: number): Promise<void> {
  const c = await smCluster(2, { resume_timeout: "2s" });
  const [n1, n2] = c.nodes;
  const proxy = await FaultProxy.start({ host: "127.0.0.1", port: n1.port });
  const closers: { close(): void }[] = [];
  try {
    const a = await SmClient.login(proxy.port, "alice", { resource: "phone" });
    closers.push(a);
    const b = await SmClient.login(n2.port, "bob", { resource: "desk" });
    closers.push(b);
    const id = await a.enableResume();
    a.send("<presence/>");
    b.send("<presence/>");
    await b.waitFor(presence(undefined, a.jid), 5000, "alice's presence at bob");
    await a.waitFor(presence(undefined, b.jid), 5000, "bob's presence at alice");
    b.message(a.jid, "m0");
    await a.waitFor(messageWithBody("m0")); // received, never acknowledged
    const cut = performance.now();
    proxy.set("cut");
    await a.waitClosed();
    b.message(a.jid, "m1"); // chat, to the full JID
    b.message("alice@localhost", "m2"); // chat, to the bare JID
    b.message(a.jid, "m3", undefined); // normal
    await b.sync();
    const gone = await b.waitFor(presence("unavailable", a.jid), 6000, "alice's unavailable");
    const waited = performance.now() - cut;
    const diag = `after ${waited.toFixed(0)} ms\n${clusterLogs(c, SM_LOGS)}`;
    // The sweep runs each second: between 2 s and 3 s, and the frame to n2.
    assert.ok(waited >= 1900, `unavailable too early, ${diag}`);
    assert.ok(waited <= 3500, `unavailable too late, ${diag}`);
    assert.equal(gone.attrs.type, "unavailable");
    // A fresh login: the old id resumes nothing; nothing comes before initial presence.
    const a2 = await SmClient.auth(c.nodes[loginOn].port, "alice");
    closers.push(a2);
    assert.equal(failedCondition(await a2.resume(id, a.inbound)), "item-not-found");
    await a2.bind("desk");
    await a2.iq("get", `<query xmlns='${NS.roster}'/>`);
    await a2.sync();
    assert.deepEqual(bodies(a2.log), [], "nothing before initial presence");
    a2.send("<presence/>");
    await a2.waitFor(messageWithBody("m3"), 5000, "m3 from offline storage");
    await a2.sync();
    const got = a2.log.filter((e) => e.name === "message");
    assert.deepEqual(bodies(got), ["m0", "m1", "m2", "m3"], `${got.join("\n")}\n${diag}`);
    for (const m of got) {
      assert.equal(m.attrs.from, "bob@localhost/desk", `${m}`);
      assert.ok(m.child("delay", "urn:xmpp:delay"), `no <delay/> in ${m}`);
    }
    // Bob was told once, and nothing bounced.
    await b.sync();
    assert.equal(b.log.filter(presence("unavailable", a.jid)).length, 1);
    assert.deepEqual(b.log.filter(bounced).map(String), []);
    console.log(`  unavailable ${waited.toFixed(0)} ms after the cut`);
  } finally {
    for (const x of closers) x.close();
    await proxy.close();
    await c.stop();
  }
}

clusterTest(
  "SM on two nodes, resume_timeout 2s: the contact is told unavailable only after the timeout; what it sent comes at the next login on the same node, after initial presence",
  () => detachedTimesOut(0),
);

clusterTest(
  "SM on two nodes, resume_timeout 2s: the contact is told unavailable only after the timeout; what it sent comes at the next login on the other node, after initial presence",
  () => detachedTimesOut(1),
);

clusterTest(
  "SM across nodes: a session resumed on another node is still told when a contact's node dies later",
  async () => {
    const { c, proxy, a, b, stop } = await aliceBehindProxy();
    const n2 = c.nodes[1];
    try {
      proxy.set("cut");
      await until(() => a.current.closed, "alice's connection to close", 10_000);
      const resumed = await a.resume(n2.port);
      assert.equal(resumed.name, "resumed", `${resumed}`);
      const mark = a.current.log.length;
      // Bob's node dies: n2, now holding alice's session, tells her bob is gone.
      await c.kill(2);
      await until(
        () => a.current.log.slice(mark).some((e) => presence("unavailable", b.jid)(e)),
        "bob's unavailable at alice, resumed on n2",
        DEAD_AFTER_MS + 4000,
      );
    } finally {
      await stop();
    }
  },
);
