// XEP-0198 stream management and Multi-User Chat over a cluster of three `parley serve` processes
// (heartbeat 200ms, dead_after 1s): alice, with a resumable session on n1, is an occupant of a
// room run on n2; bob (on n3) and carol (on n2) are occupants too. Bob sends numbered room
// messages at a steady pace; n1 is killed with SIGKILL in the middle; alice resumes on another
// node. The other occupants never see alice leave (no unavailable presence, no status 333 for her
// nick); alice gets every room message sent across the fault exactly once and in order; her next
// room message reaches bob.
import assert from "node:assert/strict";
import { clusterTest, startCluster, type TestCluster, until } from "../helpers/cluster.ts";
import { lookup, mucHost, roomOn } from "../helpers/cluster_muc.ts";
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
import { messageWithBody, SmClient } from "../helpers/sm_client.ts";
import { createRoom, isPresence, join, MUC, statusCodes } from "../helpers/muc.ts";
import type { Element } from "../../src/xml/element.ts";
import { NS } from "../../src/xml/ns.ts";

/** Room messages bob sends, and how many a second. */
const COUNT = 200;
const RATE = 50;
/** n1 is killed right after bob's message number KILL_AFTER. */
const KILL_AFTER = 60;
/** Bob's messages sent after the kill before alice resumes (sent while she is away). */
const AWAY = 20;
/** Server log lines worth showing when the scenario fails. */
const LOGS = /resum|session|took over|link|replica|sm |error|failed|invalid|room/i;

const bounced = (e: Element) => e.attrs.type === "error";

interface Scenario {
  /** The node keeping alice's replica (1: n2, the room's node; 2: n3, bob's node). */
  replica: number;
  /** Where alice resumes (1 or 2). */
  resumeOn: number;
}

/** When each message (by body) reached `client`, in ms since the epoch. */
function arrivals(client: SmClient): Map<string, number> {
  const at = new Map<string, number>();
  const log = client.log;
  const push = log.push.bind(log);
  log.push = (...els: Element[]): number => {
    for (const e of els) if (e.name === "message") at.set(e.childText("body") ?? "", Date.now());
    return push(...els);
  };
  return at;
}

/**
 * For the messages alice missed: when bob sent each, when the room handed it out (its arrival at
 * carol, on the room's node) and when the survivors saw n1 go, in ms after the kill.
 */
function timeline(
  c: TestCluster,
  killAt: number,
  sentAt: Map<number, number>,
  atRoom: Map<string, number>,
  got: number[],
): string {
  const have = new Set(got);
  const missed = [...sentAt.keys()].filter((i) => !have.has(i)).slice(0, 10);
  const since = (t: number | undefined) => t === undefined ? "?" : `+${t - killAt} ms`;
  const downs = [1, 2].flatMap((k) =>
    (c.nodes[k].process?.logs ?? [])
      .filter((r) => /link to n1 down/.test(String(r.message)))
      .map((r) => `${c.nodes[k].name} saw n1 go at ${since(Date.parse(String(r["@timestamp"])))}`)
  );
  const lines = missed.map((i) =>
    `g${i} sent by bob at ${since(sentAt.get(i))}, handed out by the room at ` +
    since(atRoom.get(`g${i}`))
  );
  return `n1 killed at t=0; ${downs.join(", ")}\n${lines.join("\n")}`;
}

async function roomCluster(): Promise<TestCluster> {
  const c = await startCluster(3, {
    overrides: { ...LOOPBACK_C2S, ...mucHost(), stream_management: SM_SETTINGS },
  });
  try {
    for (const u of ["alice", "bob", "carol"]) await c.addUser(u);
    await c.formed();
  } catch (e) {
    await c.stop();
    throw e;
  }
  return c;
}

async function roomAcrossKill(s: Scenario): Promise<void> {
  const c = await roomCluster();
  const [n1, n2, n3] = c.nodes;
  const closers: { close(): void }[] = [];
  // Bob's paced traffic and the kill, settled before the cluster stops whatever happens.
  let traffic: Promise<void> = Promise.resolve();
  let killed: Promise<void> = Promise.resolve();
  let stopped = false;
  try {
    // A room run on n2, created by bob on n3; carol on n2 joins too.
    const name = await roomOn(c, 1);
    const room = `${name}@${MUC}`;
    const bob = await SmClient.login(n3.port, "bob", { resource: "desk" });
    closers.push(bob);
    const carol = await SmClient.login(n2.port, "carol", { resource: "desk" });
    closers.push(carol);
    await createRoom(bob.raw, name, "bob");
    assert.equal((await lookup(c, 0, room)).node, n2.name, "the room runs on n2");
    await join(carol.raw, name, "carol");
    // When carol, on the room's node, gets each room message: when the room handed it out.
    const atRoom = arrivals(carol);

    // Alice on n1, resumable, her replica where the scenario says; she joins through her
    // session (everything she sends goes through `a.send`, to be resent after resumption).
    const resource = resourceWithReplicaOn("alice", ["n2", "n3"], c.nodes[s.replica].name);
    const a = await ResumingClient.login(n1.port, "alice", resource);
    closers.push(a);
    a.send(`<presence to='${room}/alice'><x xmlns='${NS.muc}'/></presence>`);
    await a.current.waitFor(
      (e) => isPresence(`${room}/alice`)(e) && statusCodes(e).includes(110),
      5000,
      "alice's self-presence in the room",
    );
    await bob.waitFor(isPresence(`${room}/alice`), 5000, "alice joining, at bob");
    await carol.waitFor(isPresence(`${room}/alice`), 5000, "alice joining, at carol");
    await replicasOn(c, s.replica, 1);
    await a.sync();

    // Bob's room messages at a steady pace; n1 dies after the KILL_AFTER-th.
    let sent = 0;
    let killAt = 0;
    const sentAt = new Map<number, number>();
    traffic = paced(COUNT, RATE, (i) => {
      if (stopped) return;
      bob.send(`<message to='${room}' type='groupchat' id='g-${i}'><body>g${i}</body></message>`);
      sent = i;
      sentAt.set(i, Date.now());
    }, (i) => {
      if (i !== KILL_AFTER || stopped) return;
      killAt = Date.now();
      killed = c.kill(0);
    });
    await until(() => killAt > 0 && a.current.closed, "alice's connection to n1 to close");
    await until(() => sent >= KILL_AFTER + AWAY, `${AWAY} more from bob`);
    const hBefore = a.h;
    const sentBeforeResume = sent;
    const resumed = await a.resume(c.nodes[s.resumeOn].port);
    const sentAtResume = sent;
    const diag = () =>
      `alice ${a.jid} (replica on ${c.nodes[s.replica].name}) resumed on ` +
      `${c.nodes[s.resumeOn].name}: ${resumed}, h ${hBefore}, ${JSON.stringify(a.resumptions)}\n` +
      `bob had sent g${sentAtResume} at the resumption\n` + clusterLogs(c, LOGS, 80);
    assert.equal(resumed.name, "resumed", `resumption refused: ${diag()}`);
    // Taken over by the replica's node (and, resumed elsewhere, given to the node resumed on).
    assert.equal((await selfStatus(c, s.replica)).adopted, 1, diag());
    assert.equal((await selfStatus(c, s.resumeOn)).resumable, 1, diag());
    await traffic;
    await killed;

    // The end marker: room messages from one sender keep their order, so once it is in, every
    // numbered message (and any duplicate of one) is too.
    bob.send(`<message to='${room}' type='groupchat' id='g-end'><body>end</body></message>`);
    const fromBob = (e: Element) => e.name === "message" && e.attrs.from === `${room}/bob`;
    const problems: string[] = [];
    const ended = await until(
      () => a.received().some((e) => fromBob(e) && messageWithBody("end")(e)),
      "the end marker at alice",
      10_000,
    ).then(() => "", (e: Error) => e.message);
    if (ended) problems.push(ended);
    const got = numbered(a.received().filter(fromBob), "g");
    const wrong = sequenceProblems(got, COUNT);
    if (wrong) problems.push(`alice's room messages: ${wrong}`);
    // Bob's messages sent while alice was away came after <resumed/>.
    const after = new Set(numbered(a.connections[1].log.filter(fromBob), "g"));
    const early: number[] = [];
    for (let i = KILL_AFTER + 1; i <= sentBeforeResume; i++) {
      if (got.includes(i) && !after.has(i)) early.push(i);
    }
    if (early.length) problems.push(`sent while alice was away, not after <resumed/>: ${early}`);

    // Her next room message reaches bob and carol, from her nick.
    a.send(`<message to='${room}' type='groupchat' id='a-1'><body>back</body></message>`);
    const back = (e: Element) => e.attrs.from === `${room}/alice` && messageWithBody("back")(e);
    for (const [who, client] of [["bob", bob], ["carol", carol]] as const) {
      const e = await client.waitFor(back, 5000, `alice's message at ${who}`).catch(() => null);
      if (e?.attrs.type !== "groupchat") problems.push(`alice's next message reached no ${who}`);
    }
    await Promise.all([a.sync(), bob.sync(), carol.sync()]);

    // Nobody saw alice leave: no unavailable presence, no 333, for her nick; nothing bounced.
    for (const [who, log] of [["bob", bob.log], ["carol", carol.log]] as const) {
      const left = log.filter((e) =>
        e.name === "presence" && e.attrs.from === `${room}/alice` &&
        (e.attrs.type === "unavailable" || statusCodes(e).includes(333))
      );
      if (left.length) problems.push(`${who} saw alice leave: ${left.join(" ")}`);
      const errors = log.filter(bounced);
      if (errors.length) problems.push(`${who} got errors: ${errors.join(" ")}`);
    }
    const errors = [...a.log().filter(bounced), ...a.current.streamErrors()];
    if (errors.length) problems.push(`alice got errors: ${errors.join(" ")}`);
    assert.deepEqual(
      problems,
      [],
      `${problems.join("\n")}\n${timeline(c, killAt, sentAt, atRoom, got)}\n${diag()}`,
    );

    const [{ h, resent }] = a.resumptions;
    console.log(
      `  n1 killed after g${KILL_AFTER}; alice resumed on ${c.nodes[s.resumeOn].name} (replica ` +
        `on ${c.nodes[s.replica].name}) with h=${hBefore} after g${sentAtResume}; the server ` +
        `had handled ${h} of hers, she sent ${resent} again; ${got.length} room messages`,
    );
  } finally {
    stopped = true;
    await Promise.allSettled([traffic, killed]);
    for (const x of closers) x.close();
    await c.stop();
  }
}

clusterTest(
  "SM and MUC: kill -9 of an occupant's node, resumed on the node running the room (replica there); no one sees her leave, every room message once and in order",
  () => roomAcrossKill({ replica: 1, resumeOn: 1 }),
);

clusterTest(
  "SM and MUC: kill -9 of an occupant's node, replica on a third node, resumed on the node running the room; no one sees her leave, every room message once and in order",
  () => roomAcrossKill({ replica: 2, resumeOn: 1 }),
);

clusterTest(
  "SM and MUC: kill -9 of an occupant's node, replica on the room's node, resumed on a third node; no one sees her leave, every room message once and in order",
  () => roomAcrossKill({ replica: 1, resumeOn: 2 }),
);
