// Push notifications (XEP-0357) and client state indication (XEP-0352) with real clients across a
// cluster of three `parley serve` processes sharing one PostgreSQL (tests/helpers/cluster.ts,
// tests/helpers/cluster_push.ts): slixmpp clients (tests/interop/push_csi_client.py: xep_0198
// resumable, xep_0352, and XEP-0357's enable/disable, which Debian's slixmpp has no plugin for),
// and an app server that is an external component (XEP-0114) of push.localhost logged in on n3.
// ann's phone is on n1, her contact bob on n2; cara (n1) is a contact of dan (n2) and erin (n3).
// push.min_interval is 1 s.
// - ann enables two registrations (publish-options with a secret; one with include-body=true);
//   both are in the shared store; her account's disco#info has urn:xmpp:push:0;
// - (b) while her session is connected, a message from bob reaches her and nothing is pushed (a
//   ping from the app server to a client on n1 answered after it: no push was on its way);
// - (a, c) her slixmpp is killed with SIGKILL (the connection ends with no closing stream: the
//   session detaches, as /metrics of n1 shows); bob floods 20 messages: each registration gets
//   one push at once (message-count 1, last-message-sender bob's full JID, last-message-body only
//   with include-body, the publish-options' secret) and one summary of the other 19 at the
//   interval's end, the body the last one's;
// - (d) the app server answers the pushes of one registration with an error: that registration
//   leaves the store, and the next message is pushed to the other one only (a ping from the app
//   server to a client on n1 and its answer after that push: nothing else was on its way);
// - (e) cara says <inactive/>; dan and erin send presence updates and chat states: nothing
//   reaches her while n1's /metrics counts them held and dropped; dan's message with a body comes
//   after the newest presence of each (only those); more updates, then <active/> sends the newest
//   of each, and chat states pass again; parley_csi_stanzas_total and parley_csi_flushes_total
//   count exactly that.
// One cluster for all (steps of one test, which stops it). About 7–10 s.
import assert from "node:assert/strict";
import type { TestCluster } from "../helpers/cluster.ts";
import {
  APP,
  AppServer,
  clusterStore,
  metrics,
  MIN_INTERVAL_MS,
  PORT,
  type Push,
  pushCluster,
  type PushLine,
  PyClient,
} from "../helpers/cluster_push.ts";
import { eventually, until } from "../helpers/until.ts";
import type { Store } from "../../src/storage/store.ts";
import { NS } from "../../src/xml/ns.ts";

const ANN = "ann@localhost";
const BOB = "bob@localhost/desk";
const CARA = "cara@localhost";
const DAN = "dan@localhost/desk";
const ERIN = "erin@localhost/laptop";
const FLOOD = 20;

/** What each step leaves for the next ones. */
interface Ctx {
  c: TestCluster;
  app: AppServer;
  store: Store;
  py: PyClient[];
  ann: PyClient;
  bob: PyClient;
  cara: PyClient;
  dan: PyClient;
  erin: PyClient;
  timings: string[];
}

/** The summary fields of a push, for comparing (without the times and the iq). */
const fields = (p: Push) => ({
  from: p.from,
  formType: p.formType,
  count: p.count,
  sender: p.sender,
  body: p.body,
  options: p.options,
});

Deno.test({
  name: "push and CSI across a 3-node cluster with slixmpp and an app server component",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const started = performance.now();
    const c = await pushCluster(
      ["ann", "bob", "cara", "dan", "erin"],
      [["ann", "bob"], ["cara", "dan"], ["cara", "erin"]],
    );
    const timings = [`cluster formed in ${(performance.now() - started).toFixed(0)} ms`];
    const py: PyClient[] = [];
    let app: AppServer | undefined;
    let store: Store | undefined;
    let failed = false;
    const step = (name: string, fn: () => Promise<void>) =>
      t.step({
        name,
        ignore: failed,
        sanitizeOps: false,
        sanitizeResources: false,
        fn: async () => {
          const t0 = performance.now();
          try {
            await fn();
          } catch (e) {
            failed = true;
            throw new Error(`${(e as Error).message}\n${serverLogs(c)}`, { cause: e });
          } finally {
            timings.push(`${name.slice(0, 50)}…: ${(performance.now() - t0).toFixed(0)} ms`);
          }
        },
      });
    try {
      const n3 = c.nodes[2];
      app = await AppServer.login(n3.host, n3.process!.ports[PORT.component]);
      store = await clusterStore(c);
      const start = async (i: number, user: string, resource: string) => {
        const p = await PyClient.start(c, i, user, resource);
        py.push(p);
        return p;
      };
      const [ann, bob, cara, dan, erin] = await Promise.all([
        start(0, "ann", "phone"),
        start(1, "bob", "desk"),
        start(0, "cara", "phone"),
        start(1, "dan", "desk"),
        start(2, "erin", "laptop"),
      ]);
      timings.push(
        `app server and 5 slixmpp clients in ${(performance.now() - started).toFixed(0)} ms`,
      );
      const ctx: Ctx = { c, app, store, py, ann, bob, cara, dan, erin, timings };

      await step(
        "ann enables two registrations (publish-options, one with include-body): in the shared store; urn:xmpp:push:0 advertised",
        () => enable(ctx),
      );
      await step(
        "(b) while ann's session is connected, bob's message reaches her and nothing is pushed",
        () => connected(ctx),
      );
      await step(
        "(a, c) ann's session detached (SIGKILL): a flood of 20 from n2 is one push at once and one summary of 19 at the interval's end, to the component on n3",
        () => detachedFlood(ctx),
      );
      await step(
        "(d) an app server's error removes that registration from the store; the next message is pushed to the other one only",
        () => refused(ctx),
      );
      await step(
        "(e) CSI: presence and chat states from n2 and n3 held / dropped for an inactive client on n1, flushed before a body and on <active/>, counted in /metrics",
        () => csi(ctx),
      );
    } finally {
      await Promise.all(py.map((p) => p.stop()));
      app?.close();
      await store?.close();
      await c.stop();
      console.log(
        `  ${timings.join("\n  ")}\n  total ${(performance.now() - started).toFixed(0)} ms`,
      );
    }
  },
});

/** The nodes' log records worth seeing when a step fails: warnings, errors, push's and CSI's. */
function serverLogs(c: TestCluster): string {
  const out: string[] = [];
  for (const [i, n] of c.nodes.entries()) {
    const records: Record<string, unknown>[] = n.process?.logs ??
      c.logs(i).map((message) => ({ message }));
    const lines = records
      .filter((r) =>
        /warn|error|fatal/i.test(String(r.level)) || /push|csi|component/i.test(String(r.message))
      )
      .slice(-15)
      .map((r) =>
        `${r.level ?? ""} ${r.message ?? r.raw} ${
          r.properties ? JSON.stringify(r.properties).slice(0, 1500) : ""
        }`
      );
    if (lines.length) out.push(`${n.name}:\n    ${lines.join("\n    ")}`);
  }
  return out.join("\n");
}

/** ann's registrations as the shared store holds them: "jid\nnode" keys, sorted. */
const registrations = async (store: Store) =>
  (await store.map("push").keys("ann", "localhost")).sort();

async function enable({ ann, store }: Ctx): Promise<void> {
  assert.equal(ann.ready!.resumable, true, "ann's stream management is resumable");
  const info = await ann.ok("disco_info", { jid: ANN });
  assert.ok((info.features as string[]).includes(NS.push), `features: ${info.features}`);
  await ann.ok("push_enable", {
    jid: APP,
    node: "phone",
    options: { secret: "s-phone", "include-body": "true" },
  });
  await ann.ok("push_enable", { jid: APP, node: "quiet", options: { secret: "s-quiet" } });
  assert.deepEqual(await registrations(store), [`${APP}\nphone`, `${APP}\nquiet`]);
}

async function connected({ ann, bob, cara, app }: Ctx): Promise<void> {
  await bob.ok("message", { to: ANN, body: "while connected", msg_id: "c1" });
  await ann.waitLine((l) => l.event === "message" && l.id === "c1", "bob's message c1");
  // A round trip through a client on n1, ann's node, after the message reached her: a push
  // for it would have come first. (Checked again once ann is detached: the first push is for
  // the first message after.)
  const pong = await app.ping(cara.jid);
  assert.equal(pong.attrs.type, "result", `${pong}`);
  assert.deepEqual(app.pushes.map(fields), [], "a push while connected");
}

async function detachedFlood({ c, ann, bob, app }: Ctx): Promise<void> {
  await ann.kill();
  // n1 sees the connection end without a closing stream: the session waits, detached.
  await eventually(
    async () => (await metrics(c, 0)).get('parley_sessions_resumable{state="detached"}') === 1,
    "ann's session detached on n1",
  );
  const bodies = Array.from({ length: FLOOD }, (_, i) => `flood ${i + 1}`);
  const sent = await bob.ok("flood", { to: ANN, bodies });
  const sentAt = Number(sent.t) * 1000;
  const [phone1, quiet1, phone2, quiet2] = [
    await app.nth("phone", 1),
    await app.nth("quiet", 1),
    await app.nth("phone", 2),
    await app.nth("quiet", 2),
  ];
  const base = { from: ANN, formType: NS.pushSummary, sender: BOB };
  assert.deepEqual(fields(phone1), {
    ...base,
    count: 1,
    body: "flood 1",
    options: { secret: ["s-phone"] },
  });
  // No include-body: no body.
  assert.deepEqual(fields(quiet1), {
    ...base,
    count: 1,
    body: undefined,
    options: { secret: ["s-quiet"] },
  });
  assert.deepEqual(fields(phone2), {
    ...base,
    count: FLOOD - 1,
    body: `flood ${FLOOD}`,
    options: { secret: ["s-phone"] },
  });
  assert.deepEqual(fields(quiet2), {
    ...base,
    count: FLOOD - 1,
    body: undefined,
    options: { secret: ["s-quiet"] },
  });
  // The first at once, the summary when the interval ends.
  assert.ok(
    phone1.at - sentAt < MIN_INTERVAL_MS / 2,
    `first push ${(phone1.at - sentAt).toFixed(0)} ms after the flood was sent`,
  );
  assert.ok(
    phone2.at - phone1.at >= MIN_INTERVAL_MS / 2,
    `summary ${(phone2.at - phone1.at).toFixed(0)} ms after the first push`,
  );
  // Nothing else: not the message sent while connected, no third push of the flood.
  assert.equal(app.pushes.length, 4, JSON.stringify(app.pushes.map(fields)));
}

async function refused({ app, bob, cara, store }: Ctx): Promise<void> {
  app.refuse.add("phone");
  // Within the interval after the summary: pushed at its end, refused by the app server.
  await bob.ok("message", { to: ANN, body: "refused?" });
  const phone3 = await app.nth("phone", 3);
  assert.equal(phone3.count, 1);
  assert.equal(phone3.body, "refused?");
  await eventually(
    async () => (await registrations(store)).length === 1,
    "the refused registration removed from the store",
  );
  assert.deepEqual(await registrations(store), [`${APP}\nquiet`]);
  const quiet3 = await app.nth("quiet", 3);
  assert.equal(quiet3.count, 1);
  // The next message: pushed to the remaining registration only.
  await bob.ok("message", { to: ANN, body: "after refusal" });
  const quiet4 = await app.nth("quiet", 4);
  assert.deepEqual(fields(quiet4), {
    from: ANN,
    formType: NS.pushSummary,
    count: 1,
    sender: BOB,
    body: undefined,
    options: { secret: ["s-quiet"] },
  });
  // A round trip through a client on n1 (the node pushing for ann) after that push: a push to
  // the removed registration, sent with it, would have arrived before the answer.
  const pong = await app.ping(cara.jid);
  assert.equal(pong.attrs.type, "result", `${pong}`);
  assert.equal(app.to("phone").length, 3, JSON.stringify(app.to("phone").map(fields)));
  assert.equal(app.pushes.length, 7, JSON.stringify(app.pushes.map(fields)));
}

/** /metrics of n1 (cara's node): CSI counters. */
async function csiCounts(c: TestCluster) {
  const m = await metrics(c, 0);
  const get = (k: string) => m.get(k) ?? 0;
  return {
    held: get('parley_csi_stanzas_total{outcome="held"}'),
    superseded: get('parley_csi_stanzas_total{outcome="superseded"}'),
    dropped: get('parley_csi_stanzas_total{outcome="dropped"}'),
    flushes: get("parley_csi_flushes_total"),
  };
}

/** What a client got (presence and messages), shortly: "presence dan s1", "message dan m1"… */
const shown = (lines: PushLine[]) =>
  lines.map((l) =>
    `${l.event} ${l.frm?.split("@")[0]} ${
      l.event === "presence" ? l.status ?? l.type ?? "available" : l.body ?? l.chat_state
    }`
  );

async function csi({ c, cara, dan, erin }: Ctx): Promise<void> {
  assert.equal(cara.ready!.csi, true, "the server advertises urn:xmpp:csi:0 after the bind");
  // Everyone online and seen by cara first.
  await cara.waitLine((l) => l.event === "presence" && l.frm === DAN, "dan's presence");
  await cara.waitLine((l) => l.event === "presence" && l.frm === ERIN, "erin's presence");
  const base = await csiCounts(c);
  const counts = async () => {
    const now = await csiCounts(c);
    return {
      held: now.held - base.held,
      superseded: now.superseded - base.superseded,
      dropped: now.dropped - base.dropped,
      flushes: now.flushes - base.flushes,
    };
  };
  const fromContacts = (after: number) =>
    [
      ...cara.stanzasFrom(DAN, after),
      ...cara.stanzasFrom(ERIN, after),
    ].sort((a, b) => a.index - b.index);
  /** Waits until n1 counts `want`, or something from dan or erin reached cara (then fails). */
  const heldBack = async (after: number, want: { held: number; dropped: number }) => {
    let last = await counts();
    await eventually(async () => {
      last = await counts();
      return (last.held >= want.held && last.dropped >= want.dropped) ||
        fromContacts(after).length > 0;
    }, `n1 to count ${JSON.stringify(want)}`).catch((e) => {
      throw new Error(`${e.message}; counted ${JSON.stringify(last)}`);
    });
    assert.deepEqual(
      shown(fromContacts(after)),
      [],
      `reached inactive cara (n1 counted ${JSON.stringify(last)})`,
    );
    assert.deepEqual({ held: last.held, dropped: last.dropped }, want);
  };

  // Round 1: inactive (the command returns once the server answered a ping sent after it).
  const mark1 = cara.mark();
  await cara.ok("inactive");
  for (const s of ["d1", "d2", "d3"]) await dan.ok("presence", { status: s, show: "away" });
  for (const s of ["e1", "e2"]) await erin.ok("presence", { status: s });
  await heldBack(mark1, { held: 5, dropped: 0 });
  // dan's to cara's full JID (a conversation locked to her resource, XEP-0296), erin's to the
  // bare JID.
  await dan.ok("chat_state", { to: cara.jid, state: "composing" });
  await dan.ok("chat_state", { to: cara.jid, state: "paused" });
  await erin.ok("chat_state", { to: CARA, state: "composing" });
  await heldBack(mark1, { held: 5, dropped: 3 });
  // A message with a body: the newest presence of each first, then the message.
  await dan.ok("message", { to: CARA, body: "m1", msg_id: "m1" });
  await cara.waitLine((l) => l.event === "message" && l.id === "m1", "dan's m1");
  const got1 = shown(fromContacts(mark1));
  assert.equal(got1.length, 3, `got ${JSON.stringify(got1)}`);
  assert.deepEqual(got1.slice(0, 2).sort(), ["presence dan d3", "presence erin e2"], `${got1}`);
  assert.equal(got1[2], "message dan m1");
  assert.deepEqual(await counts(), { held: 5, superseded: 3, dropped: 3, flushes: 1 });

  // Round 2: more updates, held again; <active/> sends the newest of each.
  const mark2 = cara.mark();
  for (const s of ["d4", "d5"]) await dan.ok("presence", { status: s });
  await erin.ok("presence", { status: "e3" });
  await heldBack(mark2, { held: 8, dropped: 3 });
  await erin.ok("chat_state", { to: CARA, state: "paused" });
  await heldBack(mark2, { held: 8, dropped: 4 });
  await cara.ok("active");
  await until(() => fromContacts(mark2).length >= 2, "what was held, after <active/>");
  // Active: chat states go through at once again.
  await dan.ok("chat_state", { to: CARA, state: "composing" });
  await cara.waitLine(
    (l) => l.index > mark2 && l.event === "message" && l.chat_state === "composing",
    "dan's chat state once active",
  );
  const got2 = shown(fromContacts(mark2));
  assert.deepEqual(
    got2.slice(0, 2).sort(),
    ["presence dan d5", "presence erin e3"],
    `got ${JSON.stringify(got2)}`,
  );
  assert.deepEqual(got2.slice(2), ["message dan composing"]);
  assert.deepEqual(await counts(), { held: 8, superseded: 4, dropped: 4, flushes: 2 });
}
