// The message archive (XEP-0313) across a cluster of three `parley serve` processes sharing one
// PostgreSQL (tests/helpers/cluster.ts; heartbeat 200ms, dead_after 1s), with slixmpp's archive
// client (tests/interop/mam_client.py) and raw stream-managed clients (cluster_sm.ts:
// ResumingClient, which resends what the server's <resumed h/> says it did not handle):
// - 300 messages between users on two nodes are in both archives once each, in order, with one id
//   for both ends (the one stamped live), paged by 50 from the third node;
// - kill -9 of the sender's node mid-traffic: the client resumes on a survivor, resends the
//   unacknowledged tail, and both archives hold every message it sent once, in order;
// - a dropped connection resumed on the same node, then on another, with resends: both archives
//   once each, and the contact got each message once;
// - a persistent room's archive read from nodes that do not run it, and again after kill -9 of
//   the room's node, once the room came back on a survivor; new messages are appended after.
// One cluster for the four (steps of one test, which stops it); about 10 s.
import assert from "node:assert/strict";
import type { TestCluster } from "../helpers/cluster.ts";
import {
  chatFrom,
  DOMAIN,
  loginOn,
  mamClient,
  mamCluster,
  orderProblems,
  type PyQuery,
  pyQuery,
  rawPages,
  reaches,
  repeats,
  routedFrom,
  until,
} from "../helpers/cluster_mam.ts";
import {
  clusterLogs,
  paced,
  replicasOn,
  resourceWithReplicaOn,
  ResumingClient,
} from "../helpers/cluster_sm.ts";
import { lookup, roomOn } from "../helpers/cluster_muc.ts";
import { FaultProxy } from "../helpers/fault_proxy.ts";
import { mamQuery, stanzaIdOf } from "../helpers/mam.ts";
import { createRoom, field, join, MUC, ownerSubmit } from "../helpers/muc.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import type { Element } from "../../src/xml/element.ts";
import { NS } from "../../src/xml/ns.ts";

/** Server log lines worth showing when a step fails. */
const LOGS = /resum|session|took over|replica|archiv|mam|room|error|failed|dead/i;

const range = (from: number, to: number, f: (i: number) => string) =>
  Array.from({ length: to - from + 1 }, (_, k) => f(from + k));

/** A chat message with its own id and origin-id (XEP-0359), as a resending client sends it. */
const chat = (to: string, tag: string, i: number) =>
  `<message to='${to}' type='chat' id='${tag}-${i}'><body>${tag}${i}</body>` +
  `<origin-id xmlns='${NS.sid}' id='${tag}-o${i}'/></message>`;

/** Waits until the server counts every stanza the client sent since <enable/> as handled. */
async function allHandled(r: ResumingClient, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  let h = -1;
  while ((h = await r.current.requestAck()) !== r.sent.length) {
    if (Date.now() > deadline) {
      throw new Error(`the server handled ${h} of the ${r.sent.length} stanzas sent in ${ms} ms`);
    }
    await new Promise((res) => setTimeout(res, 20));
  }
}

/**
 * The checks of a 1:1 conversation's two archives, queried with slixmpp: each holds exactly
 * `want` (bodies) once, in order, with unique ids; the recipient's entries carry their id as the
 * recipient's stanza-id; the sender's and the recipient's ids are the same, message by message.
 * Returns the problems found (none: []).
 */
function archivePairProblems(
  sender: PyQuery,
  recipient: PyQuery,
  recipientBare: string,
  want: string[],
): string[] {
  const problems: string[] = [];
  for (const [who, q] of [["sender", sender], ["recipient", recipient]] as const) {
    const bodies = q.results.map((r) => r.body);
    const order = orderProblems(bodies, want);
    if (order) problems.push(`${who}'s archive: ${order}`);
    if (q.done.count !== want.length) {
      problems.push(`${who}'s archive: ${q.done.count} results, want ${want.length}`);
    }
    if (!q.done.complete) problems.push(`${who}'s archive: the last page is not complete`);
    const dupIds = repeats(q.results.map((r) => r.id));
    if (dupIds) problems.push(`${who}'s archive: ids more than once: ${dupIds}`);
  }
  const wrongSid = recipient.results.filter((r) => r.stanza_id !== r.id);
  if (wrongSid.length) {
    problems.push(
      `recipient's entries whose stanza-id by ${recipientBare} is not their id: ` +
        JSON.stringify(wrongSid.slice(0, 3)),
    );
  }
  const byBody = (q: PyQuery) => new Map(q.results.map((r) => [r.body, r.id]));
  const [s, r] = [byBody(sender), byBody(recipient)];
  const differ = want.filter((b) => s.get(b) !== r.get(b));
  if (differ.length) {
    problems.push(
      `ids differing between the two archives (${differ.length}): ` +
        differ.slice(0, 5).map((b) => `${b}: ${s.get(b)} / ${r.get(b)}`).join(", "),
    );
  }
  return problems;
}

/**
 * The live copies `r` got from `from`: every one of `want` at least once, in order (a duplicate
 * of the one just before aside), each stamped with the id its body has in `archive`. Returns the
 * problems found and the duplicates (as "body×n").
 */
function liveProblems(
  r: RawClient,
  from: string,
  want: string[],
  archive: PyQuery,
): { problems: string[]; duplicates: string } {
  const live = chatFrom(r, from);
  const bodies = live.map((e) => e.childText("body") ?? "");
  const problems: string[] = [];
  const once = bodies.filter((b, i) => i === 0 || b !== bodies[i - 1]);
  const order = orderProblems([...new Set(once)], want);
  if (order) problems.push(`live at ${r.jid}: ${order}`);
  const ids = new Map(archive.results.map((x) => [x.body, x.id]));
  const bare = r.jid.split("/")[0];
  const wrong = live.filter((e) => stanzaIdOf(e, bare) !== ids.get(e.childText("body")!));
  if (wrong.length) {
    problems.push(
      `live copies whose stanza-id is not their archive id (${wrong.length}): ${wrong[0]}`,
    );
  }
  return { problems, duplicates: repeats(bodies) };
}

Deno.test({
  name: "MAM across a 3-node cluster with slixmpp and resuming clients",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const c = await mamCluster([
      "alice",
      "bob",
      "carol",
      "dave",
      "erin",
      "frank",
      "ursula",
      "victor",
    ]);
    const step = (name: string, fn: () => Promise<void>) =>
      t.step({ name, fn, sanitizeOps: false, sanitizeResources: false });
    try {
      await step(
        "300 messages between users on different nodes are in both archives exactly once, in order, pageable in pages of 50 from a third node",
        () => threeHundred(c),
      );
      await step(
        "a kill -9 of a node during traffic leaves no gap and no duplicate",
        () => killDuringTraffic(c),
      );
      await step(
        "a stream management resumption with resends leaves no duplicate",
        () => resumeWithResends(c),
      );
      await step(
        "a room's archive is read from a node that does not run it, and after the room's node died",
        () => roomArchive(c),
      );
    } finally {
      await c.stop();
    }
  },
});

async function threeHundred(c: TestCluster): Promise<void> {
  const COUNT = 300;
  const bob = await loginOn(c, 1, "bob", "desk");
  try {
    bob.send("<presence/>");
    // n1 routes to bob's bare JID only once it sees his resource on n2 available.
    await routedFrom(c, [0], bob, `bob@${DOMAIN}`);
    const started = performance.now();
    const sent = await mamClient(c, 0, "send", `alice@${DOMAIN}/sender`, [
      "--to",
      `bob@${DOMAIN}`,
      "--count",
      String(COUNT),
      "--prefix",
      "m",
      "--sm",
    ]);
    const originIds = sent.at(-1)!.origin_ids as string[];
    assert.equal(originIds.length, COUNT, JSON.stringify(sent.at(-1)));
    const want = range(0, COUNT - 1, (i) => `m ${i}`);
    await until(
      () => chatFrom(bob, `alice@${DOMAIN}/sender`).length >= COUNT,
      `bob to get ${COUNT} messages (has ${chatFrom(bob, `alice@${DOMAIN}`).length})`,
    );
    const sendMs = performance.now() - started;
    // Both archives from n3, which routed none of it: alice's from another resource, bob's.
    const [ofAlice, ofBob] = await Promise.all([
      pyQuery(c, 2, `alice@${DOMAIN}/reader`, 50),
      pyQuery(c, 2, `bob@${DOMAIN}/reader`, 50),
    ]);
    const diag = () => clusterLogs(c, LOGS, 20);
    const problems = archivePairProblems(ofAlice, ofBob, `bob@${DOMAIN}`, want);
    assert.deepEqual(problems, [], `${problems.join("\n")}\n${diag()}`);
    assert.equal(ofAlice.done.pages, 6, JSON.stringify(ofAlice.done));
    assert.equal(ofBob.done.pages, 6, JSON.stringify(ofBob.done));
    assert.deepEqual(
      [...new Set(ofAlice.results.map((r) => r.page))].map((p) =>
        ofAlice.results.filter((r) => r.page === p).length
      ),
      [50, 50, 50, 50, 50, 50],
    );
    // What each archive kept: the messages as sent (alice's with their origin-ids, to bob), as
    // delivered (bob's, from alice's full JID).
    assert.deepEqual(ofAlice.results.map((r) => r.origin_id), originIds);
    assert.deepEqual(ofBob.results.map((r) => r.origin_id), originIds);
    assert.ok(ofAlice.results.every((r) => r.to === `bob@${DOMAIN}`), "alice's entries are to bob");
    assert.ok(
      ofBob.results.every((r) => r.from === `alice@${DOMAIN}/sender`),
      "bob's entries are from alice/sender",
    );
    // Live: each once, in order, stamped with the id of its archive entry.
    const live = liveProblems(bob, `alice@${DOMAIN}/sender`, want, ofBob);
    assert.deepEqual(live.problems, [], live.problems.join("\n"));
    assert.equal(live.duplicates, "", `bob got some twice: ${live.duplicates}`);
    console.log(`  ${COUNT} sent and received in ${sendMs.toFixed(0)} ms; 2 × 6 pages read on n3`);
  } finally {
    bob.close();
  }
}

async function killDuringTraffic(c: TestCluster): Promise<void> {
  // Fast enough that, when n1 dies, some messages it routed are not stored yet (their writes
  // are batched): those are resent, and must land in both archives once, in their place.
  const COUNT = 200;
  const RATE = 1000;
  const KILL_AT = 80;
  const [n1, , n3] = c.nodes;
  const closers: { close(): void }[] = [];
  try {
    const dave = await loginOn(c, 2, "dave", "desk");
    closers.push(dave);
    dave.send("<presence/>");
    await routedFrom(c, [0, 1, 2], dave, `dave@${DOMAIN}`);
    // Carol on n1 with her session's replica on n2; she resumes on n3, which takes the session
    // from n2 once n1 is gone.
    const resource = resourceWithReplicaOn("carol", ["n2", "n3"], "n2");
    const carol = await ResumingClient.login(n1.port, "carol", resource);
    closers.push(carol);
    await replicasOn(c, 1, 1);
    let killed: Promise<void> | undefined;
    let killedAt = 0;
    const sending = paced(
      COUNT,
      RATE,
      (i) => carol.send(chat(`dave@${DOMAIN}`, "k", i)),
      (i) => {
        if (i !== KILL_AT) return;
        killedAt = i;
        killed = c.kill(0);
      },
    );
    await until(() => killedAt > 0 && carol.current.closed, "carol's connection to n1 to close");
    await killed;
    const resumed = await carol.resume(n3.port);
    const diag = () =>
      `carol ${carol.jid}: resumptions ${JSON.stringify(carol.resumptions)}, answer ${resumed}\n` +
      clusterLogs(c, LOGS, 30);
    assert.equal(resumed.name, "resumed", `resumption refused: ${diag()}`);
    await sending;
    await allHandled(carol);
    const want = range(1, COUNT, (i) => `k${i}`);
    assert.equal(carol.sent.length, COUNT);
    // Both archives, from n2 (a survivor): every message carol sent, once, in order.
    const [ofCarol, ofDave] = await Promise.all([
      pyQuery(c, 1, `carol@${DOMAIN}/reader`, 50),
      pyQuery(c, 1, `dave@${DOMAIN}/reader`, 50),
    ]);
    const problems = archivePairProblems(ofCarol, ofDave, `dave@${DOMAIN}`, want);
    // Around the resumption: what each archive holds from a little before the server's h on.
    const around = (q: PyQuery) =>
      q.results.slice(Math.max(0, carol.resumptions[0].h - 3)).slice(0, 40).map((r) => r.body)
        .join(" ");
    assert.deepEqual(
      problems,
      [],
      `${problems.join("\n")}\ncarol's archive from h-3: ${around(ofCarol)}\n` +
        `dave's archive from h-3: ${around(ofDave)}\n${diag()}`,
    );
    assert.deepEqual(ofCarol.results.map((r) => r.origin_id), range(1, COUNT, (i) => `k-o${i}`));
    // Live, dave got each at least once (twice is allowed for one routed by n1 as it died).
    await until(
      () => chatFrom(dave, carol.jid).some((e) => e.childText("body") === `k${COUNT}`),
      `dave to get k${COUNT}`,
    );
    const live = liveProblems(dave, carol.jid, want, ofDave);
    assert.deepEqual(live.problems, [], `${live.problems.join("\n")}\n${diag()}`);
    const [{ h, resent }] = carol.resumptions;
    console.log(
      `  n1 killed after k${KILL_AT}; carol resumed on n3 with the server's h=${h}, resent ` +
        `${resent}; dave got twice: ${live.duplicates || "none"}`,
    );
  } finally {
    for (const x of closers) x.close();
    if (!c.nodes[0].process) {
      await c.start(0);
      await c.formed();
    }
  }
}

async function resumeWithResends(c: TestCluster): Promise<void> {
  const [n1, n2] = c.nodes;
  // Erin reaches n1 through a proxy that stops moving bytes mid-burst: what she writes then never
  // reaches the server, and is the tail she resends after resuming.
  const proxies = await Promise.all(
    [0, 1].map(() => FaultProxy.start({ host: "127.0.0.1", port: n1.port })),
  );
  const closers: { close(): void }[] = [];
  try {
    const frank = await loginOn(c, 2, "frank", "desk");
    closers.push(frank);
    frank.send("<presence/>");
    await routedFrom(c, [0, 1], frank, `frank@${DOMAIN}`);
    const erin = await ResumingClient.login(proxies[0].port, "erin", "phone");
    closers.push(erin);
    const has = (i: number) =>
      chatFrom(frank, erin.jid).some((e) => e.childText("body") === `s${i}`);
    /**
     * Messages from..to as one burst, through `proxy`: the first half reaches the server (frank
     * gets it), then the proxy blackholes the connection and the second half is written into it;
     * the client leaves that connection and resumes at `port`, resending what the server's h
     * says it did not handle.
     */
    const burst = async (from: number, to: number, proxy: FaultProxy, port: number) => {
      const mid = from + (to - from + 1) / 2 - 1;
      for (let i = from; i <= mid; i++) erin.send(chat(`frank@${DOMAIN}`, "s", i));
      await until(() => has(mid), `frank to get s${mid}`);
      proxy.set("blackhole");
      for (let i = mid + 1; i <= to; i++) erin.send(chat(`frank@${DOMAIN}`, "s", i));
      const answer = await erin.resume(port);
      assert.equal(answer.name, "resumed", `${answer}\n${clusterLogs(c, LOGS, 30)}`);
      const { resent } = erin.resumptions.at(-1)!;
      assert.ok(resent >= to - mid, `${resent} resent, not the ${to - mid} lost in the proxy`);
    };
    // Resumed on n1 (through the second proxy), then on n2.
    await burst(1, 100, proxies[0], proxies[1].port);
    await burst(101, 200, proxies[1], n2.port);
    for (let i = 201; i <= 250; i++) erin.send(chat(`frank@${DOMAIN}`, "s", i));
    await allHandled(erin);
    const want = range(1, 250, (i) => `s${i}`);
    await until(() => has(250), "frank to get s250");
    const [ofErin, ofFrank] = await Promise.all([
      pyQuery(c, 2, `erin@${DOMAIN}/reader`, 50),
      pyQuery(c, 2, `frank@${DOMAIN}/reader`, 50),
    ]);
    const diag = () =>
      `erin's resumptions (n1, then n2): ${JSON.stringify(erin.resumptions)}\n` +
      clusterLogs(c, LOGS, 30);
    const problems = archivePairProblems(ofErin, ofFrank, `frank@${DOMAIN}`, want);
    assert.deepEqual(problems, [], `${problems.join("\n")}\n${diag()}`);
    // No node died: frank got each exactly once (README: exactly once but for a node's death).
    const live = liveProblems(frank, erin.jid, want, ofFrank);
    assert.deepEqual(live.problems, [], `${live.problems.join("\n")}\n${diag()}`);
    assert.equal(live.duplicates, "", `frank got some twice: ${live.duplicates}\n${diag()}`);
    console.log(
      "  resumed on n1, then on n2: " +
        erin.resumptions.map((r) => `h=${r.h}, resent ${r.resent}`).join("; "),
    );
  } finally {
    for (const x of closers) x.close();
    for (const p of proxies) await p.close();
  }
}

async function roomArchive(c: TestCluster): Promise<void> {
  // The room runs on n2; its occupants are on n1 and n3.
  const RUNS = 1;
  const [A, B] = [0, 2];
  const room = await roomOn(c, RUNS, "archived");
  const ROOM = `${room}@${MUC}`;
  const clients: RawClient[] = [];
  try {
    const u = await loginOn(c, A, "ursula", "r");
    const v = await loginOn(c, B, "victor", "r");
    clients.push(u, v);
    for (const r of clients) r.send("<presence/>");
    await createRoom(u, room, "U");
    const made = await ownerSubmit(u, room, field("muc#roomconfig_persistentroom", "1"));
    assert.equal(made.attrs.type, "result", `${made}`);
    await join(v, room, "V");
    assert.equal((await lookup(c, A, ROOM)).node, c.nodes[RUNS].name);

    const groupchat = (from: number, to: number) =>
      range(from, to, (i) => `g${i}`).map((body, k) => ({ body, by: (from + k) % 2 ? u : v }));
    const live = (r: RawClient) => r.received.filter(isRoomMessage(ROOM));
    const has = (r: RawClient, body: string) => live(r).some((e) => e.childText("body") === body);
    /** Posts each in turn, once both occupants saw the one before. */
    const post = async (msgs: { body: string; by: RawClient }[]) => {
      for (const { body, by } of msgs) {
        by.send(
          `<message to='${ROOM}' type='groupchat' id='${body}'><body>${body}</body>` +
            `<origin-id xmlns='${NS.sid}' id='o-${body}'/></message>`,
        );
        await until(() => has(u, body) && has(v, body), `both occupants to see ${body}`);
      }
    };
    /** The room's stanza id of each message as the occupants saw it live; both saw the same. */
    const liveIds = () => {
      const ids = new Map<string, string>();
      for (const r of [u, v]) {
        for (const e of live(r)) {
          const body = e.childText("body")!;
          const id = stanzaIdOf(e, ROOM) ?? `none in ${e}`;
          assert.equal(ids.get(body) ?? id, id, `${body} seen live with two ids`);
          ids.set(body, id);
        }
      }
      return ids;
    };

    const first = groupchat(1, 20);
    await post(first);
    await reaches(async () => (await mamQuery(v, { to: ROOM, max: 0 })).count, 20, "archived");
    /** The room's archive: bodies `g1..g{n}` once, in order, with the ids seen live. */
    const check = async (n: number, when: string) => {
      const want = range(1, n, (i) => `g${i}`);
      // The owner from another resource (not an occupant) with slixmpp, on each survivor; an
      // occupant on its own node, raw.
      const [py, raw] = await Promise.all([
        pyQuery(c, A, `ursula@${DOMAIN}/reader`, 5, ROOM),
        rawPages(v, 7, ROOM),
      ]);
      const problems = [
        orderProblems(py.results.map((r) => r.body), want),
        orderProblems(raw.results.map((r) => r.message.childText("body")), want),
      ].filter(Boolean);
      const ids = liveIds();
      const notLive = py.results.filter((r) => r.id !== ids.get(r.body!));
      if (notLive.length) problems.push(`ids not as seen live: ${JSON.stringify(notLive[0])}`);
      const sid = py.results.filter((r) => r.stanza_id !== r.id);
      if (sid.length) problems.push(`stanza-id not the id: ${JSON.stringify(sid[0])}`);
      if (py.done.pages !== Math.ceil(n / 5)) problems.push(`${py.done.pages} pages`);
      const rawIds = raw.results.map((r) => r.id);
      if (JSON.stringify(rawIds) !== JSON.stringify(py.results.map((r) => r.id))) {
        problems.push("the occupant's and the owner's queries differ");
      }
      assert.deepEqual(problems, [], `${when}: ${problems.join("\n")}\n${clusterLogs(c, LOGS)}`);
      return py.results.map((r) => r.id);
    };
    const before = await check(20, "from nodes that do not run the room");

    // The room's node dies; the room comes back on a survivor, u and v still in it.
    await c.kill(RUNS);
    const survivors = [A, B].map((i) => c.nodes[i].name);
    let where = "";
    await reaches(
      async () => {
        const r = await lookup(c, A, ROOM);
        where = r.node ?? "";
        return "running" in r || !survivors.includes(where) ? 0 : r.occupants;
      },
      2,
      `${ROOM} running on a survivor with its 2 occupants`,
    );
    const after = await check(20, `after the takeover by ${where}`);
    assert.deepEqual(after, before);
    // New messages go after the old ones, with ids seen live.
    await post(groupchat(21, 30));
    await reaches(async () => (await mamQuery(v, { to: ROOM, max: 0 })).count, 30, "archived");
    const all = await check(30, `new messages on ${where}`);
    assert.deepEqual(all.slice(0, 20), before);
    console.log(`  room on ${c.nodes[RUNS].name}, brought back on ${where}`);
  } finally {
    for (const r of clients) r.close();
  }
}

const isRoomMessage = (room: string) => (e: Element) =>
  e.name === "message" && e.attrs.type === "groupchat" &&
  e.attrs.from?.startsWith(`${room}/`) === true && e.childText("body") !== undefined;
