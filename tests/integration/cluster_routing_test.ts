// Routing across a three-node cluster, every node its own `parley serve` process on its own
// loopback alias: each routing point of RFC 6121 works for users on different nodes exactly as on
// one node. alice and bob/b2 use a real client library (@xmpp/client), the rest raw clients.
import assert from "node:assert/strict";
import { client, xml } from "@xmpp/client";
import { startCluster, type TestCluster, type TestNode } from "../helpers/cluster.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import { until } from "../helpers/until.ts";
import type { Element } from "../../src/xml/element.ts";

// The nodes' certificates for localhost are self-signed; @xmpp/client offers no CA option.
Deno.env.set("NODE_TLS_REJECT_UNAUTHORIZED", "0");

interface XmppElement {
  name: string;
  attrs: Record<string, string>;
  getChild(name: string, xmlns?: string): XmppElement | undefined;
  getChildText(name: string): string | null;
  toString(): string;
}

/** An @xmpp/client session that keeps what it receives, to wait on like a RawClient. */
class Library {
  // deno-lint-ignore no-explicit-any
  readonly xmpp: any;
  readonly got: XmppElement[] = [];

  constructor(node: TestNode, username: string, resource: string) {
    this.xmpp = client({
      service: `xmpp://${node.host}:${node.port}`,
      domain: "localhost",
      username,
      password: "secret",
      resource,
    });
    this.xmpp.on("stanza", (el: XmppElement) => this.got.push(el));
    this.xmpp.on("error", () => {});
  }

  async waitFor(pred: (el: XmppElement) => boolean, what: string): Promise<XmppElement> {
    await until(() => this.got.some(pred), what, 5000);
    return this.got.splice(this.got.findIndex(pred), 1)[0];
  }
}

const presenceFrom = (full: string, type?: string) => (el: Element | XmppElement) =>
  el.name === "presence" && el.attrs.from === full && el.attrs.type === type;
const messageWith = (id: string) => (el: Element | XmppElement) =>
  el.name === "message" && el.attrs.id === id;

Deno.test({
  name: "users on different nodes: presence, probes, bare and full JID messages by priority, " +
    "iq, roster and blocklist pushes, carbons, directed presence, offline storage, conflict",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const c: TestCluster = await startCluster(3);
    const raws: RawClient[] = [];
    const libs: Library[] = [];
    const raw = async (i: number, user: string, resource: string) => {
      const r = await c.login(i, user, resource);
      raws.push(r);
      return r;
    };
    try {
      for (const u of ["alice", "bob", "carol", "dave"]) await c.addUser(u);
      await c.befriend("alice", "bob");
      await c.befriend("alice", "carol");
      await c.formed();

      // bob on n3 then n2, alice last on n1: her probe is answered from the directory.
      const b3 = await raw(2, "bob", "b3");
      b3.send("<presence><priority>1</priority></presence>");
      const b2 = new Library(c.nodes[1], "bob", "b2");
      libs.push(b2);
      await b2.xmpp.start();
      await b2.xmpp.send(xml("presence", {}, xml("priority", {}, "5")));
      await b3.waitFor(presenceFrom("bob@localhost/b2"), 5000, "b2's presence on n3");
      const alice = new Library(c.nodes[0], "alice", "a");
      libs.push(alice);
      await alice.xmpp.start();
      await alice.xmpp.send(xml("presence"));
      await alice.waitFor(presenceFrom("bob@localhost/b2"), "bob/b2 (n2) to alice (n1)");
      await alice.waitFor(presenceFrom("bob@localhost/b3"), "bob/b3 (n3) to alice (n1)");
      await b3.waitFor(presenceFrom("alice@localhost/a"), 5000, "alice's presence on n3");
      await b2.waitFor(presenceFrom("alice@localhost/a"), "alice's presence on n2");

      // A bare JID: the highest priority wins, across nodes; a full JID reaches its resource.
      const chat = (to: string, id: string) =>
        alice.xmpp.send(xml("message", { to, type: "chat", id }, xml("body", {}, id)));
      await chat("bob@localhost", "m1");
      await b2.waitFor(messageWith("m1"), "m1 at bob/b2, priority 5");
      await chat("bob@localhost/b3", "m2");
      await b3.waitFor(messageWith("m2"), 5000, "m2 at bob/b3");
      assert.ok(!b3.received.some(messageWith("m1")), "m1 went to the lower priority too");
      await b2.xmpp.send(xml("presence", {}, xml("priority", {}, "0")));
      await alice.waitFor(
        (el) => presenceFrom("bob@localhost/b2")(el) && el.getChildText("priority") === "0",
        "b2's new priority",
      );
      await chat("bob@localhost", "m3");
      await b3.waitFor(messageWith("m3"), 5000, "m3 at bob/b3, now the highest priority");

      // iq to a full JID on another node, and its answer back.
      const answered = alice.xmpp.iqCaller.get(xml("ping", "urn:xmpp:ping"), "bob@localhost/b3");
      const ping = await b3.waitFor((e) => e.name === "iq" && e.attrs.type === "get");
      assert.equal(ping.attrs.from, "alice@localhost/a");
      b3.send(`<iq type='result' id='${ping.attrs.id}' to='${ping.attrs.from}'/>`);
      await answered;

      // Roster push to an interested resource on another node.
      await b3.iq("get", "<query xmlns='jabber:iq:roster'/>");
      await b2.xmpp.iqCaller.set(
        xml("query", "jabber:iq:roster", xml("item", { jid: "carol@localhost" })),
      );
      const push = await b3.waitFor((e) => e.name === "iq" && e.attrs.type === "set");
      assert.equal(push.child("query")?.child("item")?.attrs.jid, "carol@localhost");

      // Carbons: a copy of a message to b2 reaches b3, which enabled them, on another node.
      await b3.iq("set", "<enable xmlns='urn:xmpp:carbons:2'/>");
      await chat("bob@localhost/b2", "m4");
      await b2.waitFor(messageWith("m4"), "m4 at bob/b2");
      const carbon = await b3.waitFor((e) => e.name === "message" && !!e.child("received"));
      assert.equal(carbon.child("received")?.child("forwarded")?.child("message")?.attrs.id, "m4");

      // Directed presence to a stranger on another node, withdrawn when alice's session ends.
      const dave = await raw(1, "dave", "d");
      await alice.xmpp.send(xml("presence", { to: "dave@localhost/d" }));
      await dave.waitFor(presenceFrom("alice@localhost/a"), 5000, "directed presence");

      // Offline storage when carol's only resource just left n3.
      const carol = await raw(2, "carol", "c");
      carol.send("<presence/>");
      await alice.waitFor(presenceFrom("carol@localhost/c"), "carol online");
      carol.close();
      await chat("carol@localhost", "m5");
      await alice.waitFor(presenceFrom("carol@localhost/c", "unavailable"), "carol offline");
      const carol2 = await raw(1, "carol", "again");
      carol2.send("<presence/>");
      const stored = await carol2.waitFor(messageWith("m5"), 5000, "m5 from offline storage");
      assert.ok(stored.child("delay"), "an offline message carries its delay");

      // Conflict: bob/b3 logs in again on n1; the session on n3 gets conflict, alice sees no
      // unavailable from bob/b3 in between.
      const b3again = await raw(0, "bob", "b3");
      const err = await b3.streamError();
      assert.ok(err.child("conflict"), "the older session gets conflict");
      b3again.send("<presence><priority>1</priority></presence>");
      await alice.waitFor(presenceFrom("bob@localhost/b3"), "bob/b3 back, from n1");
      assert.ok(
        !alice.got.some(presenceFrom("bob@localhost/b3", "unavailable")),
        "alice saw bob/b3 go unavailable",
      );

      // A block written on n2 holds at once on n1, which routes alice's messages (its cached
      // blocklist was dropped before the write was answered), and is pushed to b3 on n1.
      await b3again.iq("get", "<blocklist xmlns='urn:xmpp:blocking'/>");
      await b2.xmpp.iqCaller.set(
        xml("block", "urn:xmpp:blocking", xml("item", { jid: "alice@localhost" })),
      );
      await chat("bob@localhost/b2", "m6");
      const bounced = await alice.waitFor(
        (el) => messageWith("m6")(el) && el.attrs.type === "error",
        "m6 refused: alice is blocked",
      );
      assert.ok(bounced.getChild("error"));
      const blockPush = await b3again.waitFor((e) => e.name === "iq" && !!e.child("block"));
      assert.equal(blockPush.child("block")?.child("item")?.attrs.jid, "alice@localhost");
      assert.ok(!b2.got.some(messageWith("m6")), "a blocked message was delivered");

      // alice leaves: dave, who got directed presence, is told.
      await alice.xmpp.stop();
      await dave.waitFor(presenceFrom("alice@localhost/a", "unavailable"), 5000, "directed end");
    } finally {
      for (const r of raws) r.close();
      await Promise.allSettled(libs.map((l) => l.xmpp.stop()));
      await c.stop();
    }
  },
});

Deno.test({
  name: "two binds of one full JID at once on two nodes end with one session, the newer",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const c = await startCluster(2);
    const clients: RawClient[] = [];
    try {
      await c.addUser("bob");
      await c.formed();
      for (let round = 0; round < 5; round++) {
        const pair = await Promise.all([0, 1].map((i) => c.login(i, "bob", `same${round}`)));
        clients.push(...pair);
        // Exactly one of the two is closed with conflict; the other stays, on both nodes' view.
        await until(() => pair.filter((p) => p.closed).length === 1, "one session closed", 5000);
        const loser = pair.find((p) => p.closed)!;
        assert.ok(loser.received.some((e) => e.name === "error" && !!e.child("conflict")));
        const winner = pair.indexOf(pair.find((p) => !p.closed)!);
        const views = await Promise.all([0, 1].map((i) => c.status(i)));
        const held = views.map((members) => members.find((m) => m.node === `n${winner + 1}`));
        assert.ok(
          held.every((m) => m!.sessions >= 1),
          "both nodes know the winner's node holds it",
        );
        const total = views.map((members) => members.reduce((n, m) => n + m.sessions, 0));
        assert.deepEqual(total, [round + 1, round + 1]);
      }
    } finally {
      for (const r of clients) r.close();
      await c.stop();
    }
  },
});
