// The message archive (XEP-0313) with a real client library, @xmpp/client, across a cluster of
// three `parley serve` processes sharing one PostgreSQL (tests/helpers/cluster.ts): alice on n1
// over TCP (STARTTLS) and bob on n2 over WebSocket (RFC 7395, the node's http listener) exchange
// 60 chat messages, each sent once the one before arrived; then @xmpp/client logins on n3 (which
// routed none of it) page through bob's archive and alice's with <query xmlns='urn:xmpp:mam:2'/>
// and RSM (XEP-0059) pages of 25: forward from the start, and backward from the end (an empty
// <before/>). Each way: all 60, in order, once each, `complete` on the last page only, count 60
// on every page; every id is the <stanza-id by='recipient@localhost'/> its recipient saw live,
// and both archives have the same ids (one id for both ends). A few seconds.
import assert from "node:assert/strict";
import { client, xml } from "@xmpp/client";
import {
  C2S_LISTENER,
  clusterTest,
  DOMAIN,
  startCluster,
  type TestCluster,
} from "../helpers/cluster.ts";
import { orderProblems, reaches } from "../helpers/cluster_mam.ts";
import { until } from "../helpers/until.ts";

// The test cluster's certificate is self-signed; @xmpp/client offers no CA option (STARTTLS).
Deno.env.set("NODE_TLS_REJECT_UNAUTHORIZED", "0");

const MAM = "urn:xmpp:mam:2";
const RSM = "http://jabber.org/protocol/rsm";
const SID = "urn:xmpp:sid:0";
const FORWARD = "urn:xmpp:forward:0";
const DELAY = "urn:xmpp:delay";
const COUNT = 60;
const PAGE = 25;

interface XmppElement {
  is(name: string, xmlns?: string): boolean;
  name: string;
  attrs: Record<string, string>;
  getChild(name: string, xmlns?: string): XmppElement | undefined;
  getChildText(name: string, xmlns?: string): string | null;
  getChildren(name: string, xmlns?: string): XmppElement[];
  toString(): string;
}

// deno-lint-ignore no-explicit-any
type XmppClient = any;

/** A started @xmpp/client and every stanza it received, in order. */
interface Client {
  xmpp: XmppClient;
  jid: string;
  received: XmppElement[];
}

async function connect(service: string, username: string, resource: string): Promise<Client> {
  const xmpp = client({ service, domain: DOMAIN, username, password: "secret", resource });
  const received: XmppElement[] = [];
  xmpp.on("stanza", (el: XmppElement) => received.push(el));
  // Errors reach start()'s promise too; without a listener an "error" event would throw.
  xmpp.on("error", () => {});
  const jid = String(await xmpp.start());
  return { xmpp, jid, received };
}

/** Stops a client, or gives up on it after 5 s (its socket then closes with the process). */
async function stop(c: Client): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    c.xmpp.stop().catch(() => {}),
    new Promise((r) => timer = setTimeout(r, 5000)),
  ]);
  clearTimeout(timer);
}

const bodyOf = (el: XmppElement) => el.is("message") ? el.getChildText("body") : null;

/** Whether `c` received a message with this body. */
const got = (c: Client, text: string) => c.received.some((e) => bodyOf(e) === text);

/** The body of message i (1-based). */
const body = (i: number) => `m${i}`;

/** Whether message i goes from alice to bob (odd) or from bob to alice (even). */
const fromAlice = (i: number) => i % 2 === 1;

interface Item {
  id: string;
  stamp: string;
  message: XmppElement;
  /** The `from` of the <message/> that carried the result. */
  carrier: string | undefined;
}

interface Page {
  items: Item[];
  first: string | null;
  last: string | null;
  count: number;
  complete: boolean;
  fin: string;
}

let queries = 0;

/**
 * One XEP-0313 query of the client's own archive: <max/> 25 and `after` or `before` (""
 * for the last page). The results are the <message/>s with its queryid received before the iq
 * result (the stream keeps them in order).
 */
async function query(c: Client, rsm: { after?: string; before?: string }): Promise<Page> {
  const queryid = `q${++queries}`;
  const set = [xml("max", {}, String(PAGE))];
  if (rsm.after !== undefined) set.push(xml("after", {}, rsm.after));
  if (rsm.before !== undefined) set.push(xml("before", {}, rsm.before));
  const from = c.received.length;
  const answer: XmppElement = await c.xmpp.iqCaller.request(
    xml(
      "iq",
      { type: "set", id: `iq-${queryid}` },
      xml(
        "query",
        { xmlns: MAM, queryid },
        xml(
          "x",
          { xmlns: "jabber:x:data", type: "submit" },
          xml("field", { var: "FORM_TYPE", type: "hidden" }, xml("value", {}, MAM)),
        ),
        xml("set", { xmlns: RSM }, ...set),
      ),
    ),
    5000,
  );
  const items: Item[] = [];
  for (const el of c.received.slice(from)) {
    const result = el.is("message") ? el.getChild("result", MAM) : undefined;
    if (!result || result.attrs.queryid !== queryid) continue;
    const fwd = result.getChild("forwarded", FORWARD);
    const message = fwd?.getChild("message");
    const stamp = fwd?.getChild("delay", DELAY)?.attrs.stamp;
    assert.ok(message && stamp, `a result without <forwarded><delay/><message/>: ${el}`);
    items.push({ id: result.attrs.id, stamp, message, carrier: el.attrs.from });
  }
  const fin = answer.getChild("fin", MAM);
  assert.ok(fin, `no <fin/> in ${answer}`);
  const rs = fin.getChild("set", RSM);
  return {
    items,
    first: rs?.getChildText("first") ?? null,
    last: rs?.getChildText("last") ?? null,
    count: Number(rs?.getChildText("count")),
    complete: fin.attrs.complete === "true",
    fin: String(fin),
  };
}

/**
 * Every page of the client's own archive, forward from the start (`after` the last page's last)
 * or backward from the end (`before` "", then the last page's first), until one is `complete`
 * (at most 10 pages).
 */
async function pages(c: Client, backward: boolean): Promise<Page[]> {
  const out: Page[] = [];
  let at: string | undefined;
  for (let n = 0; n < 10; n++) {
    const p = await query(c, backward ? { before: at ?? "" } : { after: at });
    out.push(p);
    if (p.complete) return out;
    const next = backward ? p.first : p.last;
    assert.ok(next, `a page neither complete nor with a ${backward ? "first" : "last"}: ${p.fin}`);
    at = next;
  }
  throw new Error(`no complete page in 10: ${out.map((p) => p.fin).join("\n")}`);
}

/** What is wrong with the pages of `owner`'s archive, read one way, against the live ids. */
function pageProblems(owner: string, ps: Page[], backward: boolean, liveIds: string[]): string[] {
  const problems: string[] = [];
  const way = backward ? "backward" : "forward";
  // 60 in pages of 25: 25, 25, 10 forward; backward the last 25 first, the 10 oldest last.
  const sizes = ps.map((p) => p.items.length);
  if (JSON.stringify(sizes) !== "[25,25,10]") problems.push(`${way}: page sizes ${sizes}`);
  ps.forEach((p, n) => {
    const last = n === ps.length - 1;
    if (p.complete !== last) {
      problems.push(`${way} page ${n + 1}: complete ${p.complete}: ${p.fin}`);
    }
    if (p.count !== COUNT) problems.push(`${way} page ${n + 1}: count ${p.count}: ${p.fin}`);
    if (p.first !== (p.items[0]?.id ?? null) || p.last !== (p.items.at(-1)?.id ?? null)) {
      problems.push(`${way} page ${n + 1}: first/last not its items' ids: ${p.fin}`);
    }
  });
  // Each page oldest first, whichever way it was paged.
  const items = (backward ? [...ps].reverse() : ps).flatMap((p) => p.items);
  const bodies = items.map((it) => it.message.getChildText("body"));
  const order = orderProblems(bodies, Array.from({ length: COUNT }, (_, k) => body(k + 1)));
  if (order) problems.push(`${way}: ${order}`);
  const ids = items.map((it) => it.id);
  if (new Set(ids).size !== ids.length) problems.push(`${way}: ids not unique`);
  if (!order && JSON.stringify(ids) !== JSON.stringify(liveIds)) {
    const k = ids.findIndex((id, i) => id !== liveIds[i]);
    problems.push(`${way}: m${k + 1} has id ${ids[k]}, seen live as ${liveIds[k]}`);
  }
  const stamps = items.map((it) => Date.parse(it.stamp));
  const back = stamps.findIndex((s, i) => i > 0 && !(s >= stamps[i - 1]));
  if (back > 0) problems.push(`${way}: stamps go back at m${back + 1}: ${items[back].stamp}`);
  const carriers = items.filter((it) => it.carrier !== owner);
  if (carriers.length) {
    problems.push(`${way}: results not from ${owner}: ${carriers[0].carrier}`);
  }
  // The stanzas as they went: odd ones alice's to bob's bare JID, even ones bob's to alice's.
  for (const [k, it] of items.entries()) {
    const i = Number(it.message.getChildText("body")?.slice(1));
    const [from, to] = fromAlice(i) ? ["alice", "bob"] : ["bob", "alice"];
    const m = it.message.attrs;
    if (
      !m.from?.startsWith(`${from}@${DOMAIN}/`) || m.to !== `${to}@${DOMAIN}` || m.type !== "chat"
    ) {
      problems.push(`${way}: item ${k + 1} is ${it.message}`);
      break;
    }
  }
  return problems;
}

clusterTest(
  "MAM with @xmpp/client across 3 nodes: alice (n1, TCP) and bob (n2, WebSocket) exchange 60 messages; from n3 both archives page forward and backward by 25: all 60 in order once, complete on the last page, count 60, ids as stamped live",
  async () => {
    const c: TestCluster = await startCluster(3, {
      overrides: { listeners: [C2S_LISTENER, { type: "http", bind: "{node_host}", port: 0 }] },
    });
    const clients: Client[] = [];
    try {
      for (const u of ["alice", "bob"]) await c.addUser(u);
      await c.formed();
      const [n1, n2, n3] = c.nodes;
      // The http listener comes second in `listeners`: its port is the second one logged.
      const ws = `ws://${n2.host}:${n2.process!.ports[1]}/xmpp-websocket`;
      const [alice, bob] = await Promise.all([
        connect(`xmpp://${n1.host}:${n1.port}`, "alice", "laptop"),
        connect(ws, "bob", "browser"),
      ]);
      clients.push(alice, bob);
      assert.equal(alice.jid, `alice@${DOMAIN}/laptop`);
      assert.equal(bob.jid, `bob@${DOMAIN}/browser`);
      await Promise.all([alice, bob].map((x) => x.xmpp.send(xml("presence"))));

      // Each node routes to the other's session only once it sees it available (a message
      // routed before would be stored offline): headlines (never archived) until one arrives.
      const bare = (x: Client) => x.jid.split("/")[0];
      for (const [from, to] of [[alice, bob], [bob, alice]]) {
        for (let n = 0;; n++) {
          const probe = `probe ${n}`;
          await from.xmpp.send(
            xml("message", { to: bare(to), type: "headline" }, xml("body", {}, probe)),
          );
          const arrived = await until(() => got(to, probe), probe, 200).then(
            () => true,
            () => false,
          );
          if (arrived) break;
          assert.ok(n < 50, `${to.jid} got no headline from ${from.jid} in 50 tries`);
        }
      }

      // 60 messages, each to the other's bare JID once the one before arrived (noticed by
      // polling every 10 ms, so that two nodes do not route a message and its answer within one
      // millisecond: the archive, ordered by time then by write, may put such a pair the wrong
      // way round).
      const started = performance.now();
      const live: XmppElement[] = [];
      for (let i = 1; i <= COUNT; i++) {
        const [from, to] = fromAlice(i) ? [alice, bob] : [bob, alice];
        await from.xmpp.send(
          xml("message", { to: bare(to), type: "chat", id: `id-${i}` }, xml("body", {}, body(i))),
        );
        await until(() => got(to, body(i)), `${to.jid} to get m${i}`);
        live.push(to.received.find((e) => bodyOf(e) === body(i))!);
      }
      const exchangeMs = performance.now() - started;
      // Live, each once, stamped by its recipient's bare JID.
      for (const x of [alice, bob]) {
        const got = x.received.map(bodyOf).filter((b) => b?.startsWith("m"));
        const want = Array.from({ length: COUNT }, (_, k) => body(k + 1)).filter((_, k) =>
          fromAlice(k + 1) === (x === bob)
        );
        assert.deepEqual(got, want, `${x.jid} live`);
      }
      const liveIds = live.map((el, k) => {
        const by = fromAlice(k + 1) ? `bob@${DOMAIN}` : `alice@${DOMAIN}`;
        const sids = el.getChildren("stanza-id", SID).filter((s) => s.attrs.by === by);
        assert.equal(sids.length, 1, `m${k + 1} as received: ${el}`);
        return sids[0].attrs.id;
      });
      assert.equal(new Set(liveIds).size, COUNT, "stanza ids seen live are not unique");

      // Both archives from n3, each by its owner from another resource (unavailable: it gets
      // none of the traffic), once the writes (batched, after delivery) are all there.
      const readers = await Promise.all(
        ["alice", "bob"].map((u) => connect(`xmpp://${n3.host}:${n3.port}`, u, "reader")),
      );
      clients.push(...readers);
      for (const r of readers) {
        await reaches(
          async () => (await query(r, { before: "" })).count,
          COUNT,
          `${r.jid}'s archive`,
        );
      }
      const problems: string[] = [];
      for (const r of readers) {
        const owner = bare(r);
        for (const backward of [false, true]) {
          const ps = await pages(r, backward);
          problems.push(...pageProblems(owner, ps, backward, liveIds).map((p) => `${owner}: ${p}`));
        }
      }
      assert.deepEqual(problems, [], problems.join("\n"));
      console.log(
        `  ${COUNT} exchanged in ${exchangeMs.toFixed(0)} ms; 2 archives × 2 ways × 3 pages on n3`,
      );
    } finally {
      await Promise.all(clients.map(stop));
      await c.stop();
    }
  },
);
