// State a session leaves behind on its node, carried across the cluster: the entities a session
// sent directed presence to follow it when a login on another node replaces it, and a node that
// remembers an account's offline store as full forgets it when the messages are taken elsewhere.
import assert from "node:assert/strict";
import { clusterTest, presenceFrom, startCluster } from "../helpers/cluster.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import type { Element } from "../../src/xml/element.ts";

const messageWith = (id: string, type?: string) => (el: Element) =>
  el.name === "message" && el.attrs.id === id && el.attrs.type === type;

clusterTest(
  "a session replaced from another node hands over its directed presence: its unavailable reaches them",
  async () => {
    const c = await startCluster(2);
    const clients: RawClient[] = [];
    try {
      for (const u of ["alice", "carol"]) await c.addUser(u);
      await c.formed();
      const carol = await c.login(0, "carol", "c");
      clients.push(carol);
      carol.send("<presence/>");
      const old = await c.login(0, "alice", "r");
      clients.push(old);
      old.send("<presence/>");
      // carol is no contact of alice's: she knows of alice only through directed presence.
      old.send("<presence to='carol@localhost/c'/>");
      await carol.waitFor(presenceFrom("alice@localhost/r"), 5000, "alice's directed presence");

      const fresh = await c.login(1, "alice", "r");
      clients.push(fresh);
      const conflict = await old.streamError();
      assert.ok(conflict.child("conflict"));
      // A stanza from n1 to the new session travels the link behind what n1 said about the old
      // one: once it arrived, so had the handover.
      carol.send("<message to='alice@localhost/r' id='after'><body>hi</body></message>");
      await fresh.waitFor(messageWith("after"), 5000, "carol's message on n2");
      assert.ok(
        !carol.received.some(presenceFrom("alice@localhost/r", "unavailable")),
        "no unavailable in between",
      );
      fresh.send("<presence type='unavailable'/>");
      await carol.waitFor(
        presenceFrom("alice@localhost/r", "unavailable"),
        5000,
        "alice's unavailable, from the session on n2",
      );
    } finally {
      for (const r of clients) r.close();
      await c.stop();
    }
  },
);

clusterTest(
  "offline messages taken on one node: the node that found the store full stores again at once",
  async () => {
    const c = await startCluster(2, { overrides: { limits: { max_offline_messages: 2 } } });
    const clients: RawClient[] = [];
    try {
      for (const u of ["alice", "bob"]) await c.addUser(u);
      await c.befriend("alice", "bob");
      await c.formed();
      const bob = await c.login(0, "bob", "b");
      clients.push(bob);
      bob.send("<presence/>");
      const say = (id: string) =>
        bob.send(
          `<message to='alice@localhost' type='chat' id='${id}'><body>${id}</body></message>`,
        );
      say("m1");
      say("m2");
      say("m3");
      // n1 remembers alice's store as full.
      await bob.waitFor(messageWith("m3", "error"), 5000, "m3 refused");

      const alice = await c.login(1, "alice", "a");
      clients.push(alice);
      alice.send("<presence/>");
      for (const id of ["m1", "m2"]) await alice.waitFor(messageWith(id, "chat"), 5000, id);
      alice.close();
      // Her node says the session ended before it says so to her contacts.
      await bob.waitFor(presenceFrom("alice@localhost/a", "unavailable"), 5000, "alice gone");

      say("m4");
      const again = await c.login(1, "alice", "a2");
      clients.push(again);
      again.send("<presence/>");
      await again.waitFor(messageWith("m4", "chat"), 5000, "m4, stored while alice was away");
      assert.ok(!bob.received.some(messageWith("m4", "error")), "m4 was not refused");
    } finally {
      for (const r of clients) r.close();
      await c.stop();
    }
  },
);

clusterTest(
  "a block written on one node holds on another the moment it is answered, 50 times over",
  async () => {
    const c = await startCluster(2);
    const clients: RawClient[] = [];
    try {
      for (const u of ["alice", "bob"]) await c.addUser(u);
      await c.formed();
      const alice = await c.login(0, "alice", "a");
      const bob = await c.login(1, "bob", "b");
      clients.push(alice, bob);
      const item = "<item jid='alice@localhost'/>";
      const say = (id: string) =>
        alice.send(`<message to='bob@localhost/b' type='chat' id='${id}'><body>x</body></message>`);
      // n1 checks bob's blocklist for alice's messages, from its cache once loaded.
      say("warm");
      await bob.waitFor(messageWith("warm", "chat"), 5000, "the first message");
      for (let i = 0; i < 50; i++) {
        const blocked = await bob.iq("set", `<block xmlns='urn:xmpp:blocking'>${item}</block>`);
        assert.equal(blocked.attrs.type, "result");
        say(`blocked${i}`);
        // Refused on n1 (before the unblock below, which would otherwise race with it).
        await alice.waitFor(messageWith(`blocked${i}`, "error"), 5000, `blocked${i} refused`);
        const unblocked = await bob.iq(
          "set",
          `<unblock xmlns='urn:xmpp:blocking'>${item}</unblock>`,
        );
        assert.equal(unblocked.attrs.type, "result");
        say(`open${i}`);
        await bob.waitFor(messageWith(`open${i}`, "chat"), 5000, `open${i}`);
        assert.ok(!bob.received.some(messageWith(`blocked${i}`, "chat")), `blocked${i} arrived`);
      }
    } finally {
      for (const r of clients) r.close();
      await c.stop();
    }
  },
);
