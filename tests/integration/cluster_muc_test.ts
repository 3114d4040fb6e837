// Multi-User Chat over a cluster of `parley serve` processes (heartbeat 200ms, dead_after 1s):
// rooms spread over the nodes, one room per name even when created at once from every node,
// one frame per node for a message, takeover after kill -9 of a room's node, two copies made
// during a partition merged when it heals, front-end nodes (host_rooms: false), hibernation and
// a full-cluster restart.
import assert from "node:assert/strict";
import { clusterTest, startCluster } from "../helpers/cluster.ts";
import { FaultProxy } from "../helpers/fault_proxy.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import type { Element } from "../../src/xml/element.ts";
import {
  counters,
  listed,
  lookup,
  mucCluster,
  mucHost,
  online,
  onlineAll,
  poll,
  rooms,
} from "../helpers/cluster_muc.ts";
import { interop, parley } from "../helpers/process.ts";
import {
  createRoom,
  errorCondition,
  field,
  isMessage,
  isPresence,
  join,
  MUC,
  ownerSubmit,
  statusCodes,
} from "../helpers/muc.ts";

const DEAD_AFTER_MS = 1000;

const body = (e: Element) => e.childText("body");

clusterTest(
  "MUC on three nodes: rooms spread evenly, one frame per node per message, groupchat and private messages once and in order",
  async () => {
    const users = Array.from({ length: 12 }, (_, i) => `u${i}`);
    const { c, clients } = await mucCluster(3, users);
    try {
      const us: RawClient[] = [];
      for (const [i, u] of users.entries()) us.push(await online(c, clients, u, i % 3));
      // 30 rooms created from the three nodes in turn.
      for (let i = 0; i < 30; i++) await createRoom(us[i % 3], `spread${i}`, "Maker");
      const all = await listed(c, 0, 30);
      const per = new Map<string, number>();
      for (const r of all) per.set(r.node!, (per.get(r.node!) ?? 0) + 1);
      assert.equal(per.size, 3, `rooms on every node: ${JSON.stringify([...per])}`);
      for (const [node, n] of per) assert.ok(n <= 20, `${node} runs ${n} of 30 rooms`);
      // Every node says the same about who runs a room.
      const owner = (await lookup(c, 0, `spread7@${MUC}`)).node;
      for (const i of [1, 2]) assert.equal((await lookup(c, i, `spread7@${MUC}`)).node, owner);
      const cli = await parley([
        "rooms",
        "--room",
        `spread7@${MUC}`,
        "--json",
        "--config",
        c.configFile,
        "--node",
        "n2",
      ]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.equal(JSON.parse(cli.stdout).node, owner);
      const table = await parley(["rooms", "--config", c.configFile, "--node", "n3"]);
      assert.match(table.stdout, /^node n1 {2}rooms=\d+ {2}occupants=\d+$/m);

      // One room, four occupants on each node.
      await createRoom(us[0], "hub", "U0");
      for (let i = 1; i < 12; i++) await join(us[i], "hub", `U${i}`);
      for (const u of us) u.received.length = 0;
      const hubNode = (await lookup(c, 0, `hub@${MUC}`)).node!;
      const ownerIndex = Number(hubNode.slice(1)) - 1;
      const before = await Promise.all([0, 1, 2].map((i) => counters(c, i)));
      // Three senders on three nodes, five messages each.
      for (let k = 0; k < 5; k++) {
        for (const s of [0, 1, 2]) {
          us[s].send(`<message to='hub@${MUC}' type='groupchat'><body>m${s}-${k}</body></message>`);
        }
      }
      for (const u of us) {
        for (const s of [0, 1, 2]) {
          const got: string[] = [];
          for (let k = 0; k < 5; k++) {
            got.push(body(await u.waitFor(isMessage(`hub@${MUC}/U${s}`), 5000, `m${s}-${k}`))!);
          }
          assert.deepEqual(got, [0, 1, 2, 3, 4].map((k) => `m${s}-${k}`), "in order per sender");
        }
      }
      // A private message from a node to an occupant on another node.
      us[1].send(`<message to='hub@${MUC}/U5' type='chat' id='pm'><body>psst</body></message>`);
      const pm = await us[5].waitFor((e) => e.attrs.id === "pm", 5000, "private message");
      assert.equal(pm.attrs.from, `hub@${MUC}/U1`);
      // Whatever would come twice has had time to arrive.
      await new Promise((r) => setTimeout(r, 300));
      for (const u of us) {
        assert.equal(u.received.filter((e) => e.name === "message").length, 0, "nothing twice");
      }
      // Fifteen messages: the room's node sent 15 frames to each other node, not one per occupant.
      const after = await Promise.all([0, 1, 2].map((i) => counters(c, i)));
      const sent = after[ownerIndex].fanoutFramesSent - before[ownerIndex].fanoutFramesSent;
      assert.equal(sent, 30, "15 messages × 2 other nodes");
      for (const i of [0, 1, 2].filter((i) => i !== ownerIndex)) {
        assert.equal(after[i].fanoutFramesReceived - before[i].fanoutFramesReceived, 15);
        assert.equal(after[i].fanoutDelivered - before[i].fanoutDelivered, 60, "15 × 4 local");
      }
    } finally {
      for (const r of clients) r.close();
      await c.stop();
    }
  },
);

clusterTest(
  "MUC on three nodes: one room created at once from every node is one room",
  async () => {
    const { c, clients } = await mucCluster(3, ["a", "b", "d"]);
    try {
      const [a, b, d] = await onlineAll(c, clients, [["a", 0], ["b", 1], ["d", 2]]);
      for (let round = 0; round < 3; round++) {
        const room = `same${round}`;
        const users = [a, b, d];
        const selves = await Promise.all(users.map((u, i) => join(u, room, `N${i}`)));
        // One room: one creator, and the other two find it locked (not a room of their own).
        const made = selves.findIndex((p) => statusCodes(p).includes(201));
        assert.ok(made >= 0, "one creator");
        for (const [i, p] of selves.entries()) {
          if (i !== made) assert.equal(errorCondition(p), "item-not-found");
        }
        await ownerSubmit(users[made], room, "");
        for (const [i, u] of users.entries()) if (i !== made) await join(u, room, `N${i}`);
        for (const [i, u] of users.entries()) {
          for (const k of [0, 1, 2].filter((k) => k !== i)) {
            await u.waitFor(isPresence(`${room}@${MUC}/N${k}`), 5000, `N${i} sees N${k}`);
          }
        }
        const one = async () =>
          (await rooms(c, round % 3)).filter((r) => r.jid === `${room}@${MUC}`);
        await poll(async () => (await one())[0]?.occupants === 3, "three occupants listed");
        assert.equal((await one()).length, 1);
      }
    } finally {
      for (const r of clients) r.close();
      await c.stop();
    }
  },
);

clusterTest(
  "MUC: kill -9 of a room's node: the room comes back on a survivor within dead_after + 1 s with its occupants and history",
  async () => {
    const { c, clients } = await mucCluster(3, ["a", "b", "d", "e", "late"]);
    try {
      const [a, b, d, e] = await onlineAll(c, clients, [["a", 0], ["b", 1], ["d", 2], ["e", 0]]);
      // Find a room run by n2 or n3, so users on the other two nodes survive its death.
      let room = "";
      for (let i = 0; !room; i++) {
        const r = await lookup(c, 0, `fo${i}@${MUC}`);
        if (r.node === "n2") room = `fo${i}`;
      }
      await createRoom(a, room, "A");
      await ownerSubmit(a, room, field("muc#roomconfig_roomname", "Failover"));
      for (const [u, nick] of [[b, "B"], [d, "D"], [e, "E"]] as const) await join(u, room, nick);
      const replicated = (await counters(c, 1)).replicated;
      a.send(`<message to='${room}@${MUC}' type='groupchat'><body>before</body></message>`);
      for (const u of [a, b, d, e]) await u.waitFor(isMessage(`${room}@${MUC}/A`), 5000, "before");
      // The replica has the message once the room's node has sent another replica frame.
      await poll(async () => (await counters(c, 1)).replicated > replicated, "a replica frame");
      // The message's own history frame follows within one replication interval (100 ms).
      await new Promise((r) => setTimeout(r, 250));

      const killed = performance.now();
      await c.kill(1);
      // b was on the dead node: the others see B leave with 333.
      for (const u of [a, d, e]) {
        const gone = await u.waitFor(
          isPresence(`${room}@${MUC}/B`, "unavailable"),
          DEAD_AFTER_MS + 2000,
          "B leaves",
        );
        assert.ok(statusCodes(gone).includes(333), `codes ${statusCodes(gone)}`);
      }
      const took = performance.now() - killed;
      assert.ok(took <= DEAD_AFTER_MS + 1000, `B shown leaving after ${took} ms`);
      const now = await lookup(c, 0, `${room}@${MUC}`);
      assert.ok(now.node === "n1" || now.node === "n3", `the room runs on ${now.node}`);
      // No one else was told they left; the room works without rejoining.
      for (const u of [a, d, e]) {
        assert.ok(!u.received.some((p) => p.name === "presence" && p.attrs.type === "unavailable"));
      }
      d.send(`<message to='${room}@${MUC}' type='groupchat'><body>after</body></message>`);
      for (const u of [a, d, e]) await u.waitFor(isMessage(`${room}@${MUC}/D`), 5000, "after");
      a.send(`<message to='${room}@${MUC}/E' type='chat' id='pm2'><body>hi</body></message>`);
      await e.waitFor((s) => s.attrs.id === "pm2", 5000, "private message after takeover");
      // A newcomer gets the history from before and after the death, and the configuration.
      const late = await online(c, clients, "late", 2);
      await join(late, room, "Late");
      const history: string[] = [];
      for (let k = 0; k < 2; k++) {
        history.push(body(await late.waitFor((m) => !!m.child("delay"), 5000, "history"))!);
      }
      assert.deepEqual(history, ["before", "after"]);
      assert.equal((await rooms(c, 0)).find((r) => r.jid === `${room}@${MUC}`)?.name, "Failover");
    } finally {
      for (const r of clients) r.close();
      await c.stop();
    }
  },
);

clusterTest(
  "MUC: two copies of a room made during a partition merge into one when it heals",
  async () => {
    const c = await startCluster(2, { start: [], overrides: mucHost() });
    const [n1, n2] = c.nodes;
    const toN2 = await FaultProxy.start({ host: n2.host, port: n2.clusterPort });
    const toN1 = await FaultProxy.start({ host: n1.host, port: n1.clusterPort });
    c.peerAddresses = { n1: { n2: toN2.address }, n2: { n1: toN1.address } };
    const clients: RawClient[] = [];
    try {
      await c.start(0);
      await c.start(1);
      for (const u of ["a", "b", "x"]) await c.addUser(u);
      await c.formed();
      const a = await online(c, clients, "a", 0);
      const b = await online(c, clients, "b", 1);
      for (const p of [toN1, toN2]) p.set("cut");
      await poll(async () => !(await c.status(0)).some((m) => m.state === "up"), "the partition");
      // Each side makes its own "split" room.
      await createRoom(a, "split", "A");
      await createRoom(b, "split", "B");
      a.send(`<message to='split@${MUC}' type='groupchat'><body>from-a</body></message>`);
      b.send(`<message to='split@${MUC}' type='groupchat'><body>from-b</body></message>`);
      await a.waitFor(isMessage(`split@${MUC}/A`));
      await b.waitFor(isMessage(`split@${MUC}/B`));
      for (const p of [toN1, toN2]) p.set("pass");
      await c.formed();
      // One room remains, on the same node for both, with both occupants, who see each other.
      await a.waitFor(isPresence(`split@${MUC}/B`), 5000, "a sees B");
      await b.waitFor(isPresence(`split@${MUC}/A`), 5000, "b sees A");
      const [l1, l2] = [await lookup(c, 0, `split@${MUC}`), await lookup(c, 1, `split@${MUC}`)];
      assert.equal(l1.node, l2.node);
      assert.equal((await listed(c, 0, 1))[0].occupants, 2);
      a.send(`<message to='split@${MUC}' type='groupchat'><body>merged</body></message>`);
      await b.waitFor((m) => isMessage(`split@${MUC}/A`)(m) && body(m) === "merged");
      // Both sides' history is kept, in time order.
      const x = await online(c, clients, "x", 0);
      await join(x, "split", "X");
      const history: string[] = [];
      for (let k = 0; k < 3; k++) {
        history.push(body(await x.waitFor((m) => !!m.child("delay"), 5000, "history"))!);
      }
      assert.deepEqual(history.slice(0, 2).sort(), ["from-a", "from-b"]);
      assert.equal(history[2], "merged");
    } finally {
      for (const r of clients) r.close();
      await c.stop();
      await Promise.all([toN1.close(), toN2.close()]);
    }
  },
);

clusterTest(
  "MUC: a node with host_rooms: false runs no room and its users still chat in rooms",
  async () => {
    const front = { n3: mucHost({ host_rooms: false }) };
    const { c, clients } = await mucCluster(3, ["a", "f"], { nodeOverrides: front });
    try {
      const a = await online(c, clients, "a", 0);
      const f = await online(c, clients, "f", 2);
      for (let i = 0; i < 12; i++) await createRoom(f, `front${i}`, "F");
      const all = await listed(c, 2, 12);
      assert.ok(all.every((r) => r.node !== "n3"), JSON.stringify(all.map((r) => r.node)));
      const n3 = (await c.status(0)).find((m) => m.node === "n3")!;
      assert.equal(n3.rooms, 0);
      await join(a, "front3", "A");
      f.send(`<message to='front3@${MUC}' type='groupchat'><body>hello</body></message>`);
      await a.waitFor(isMessage(`front3@${MUC}/F`), 5000, "message from the front end");
    } finally {
      for (const r of clients) r.close();
      await c.stop();
    }
  },
);

clusterTest(
  "MUC: persistent rooms load on demand on their node, hibernate when idle, and come back after a full-cluster restart",
  async () => {
    const { c, clients } = await mucCluster(3, ["a", "b"], {
      overrides: mucHost({ hibernate_after: 1 }),
    });
    try {
      let a = await online(c, clients, "a", 0);
      await join(a, "kept", "A");
      await ownerSubmit(
        a,
        "kept",
        field("muc#roomconfig_persistentroom", "1") + field("muc#roomconfig_roomname", "Kept"),
      );
      a.send(`<presence to='kept@${MUC}/A' type='unavailable'/>`);
      await a.waitFor(isPresence(`kept@${MUC}/A`, "unavailable"));
      // Nobody in it: it hibernates (leaves memory) on its node.
      await listed(c, 0, 1);
      await listed(c, 0, 0);
      const b = await online(c, clients, "b", 1);
      const self = await join(b, "kept", "B");
      assert.ok(!statusCodes(self).includes(201), "loaded, not created");
      assert.equal((await listed(c, 0, 1))[0].name, "Kept");

      for (const r of clients.splice(0)) r.close();
      for (const i of [0, 1, 2]) await c.kill(i, "SIGTERM");
      for (const i of [2, 0, 1]) await c.start(i);
      await c.formed();
      // Not loaded anywhere at start (each node lists its own rooms at once).
      for (const i of [0, 1, 2]) assert.deepEqual(await rooms(c, i), []);
      a = await online(c, clients, "a", 2);
      const back = await join(a, "kept", "A");
      assert.ok(!statusCodes(back).includes(201), "the room came back");
      assert.equal((await listed(c, 1, 1))[0].name, "Kept");
    } finally {
      for (const r of clients) r.close();
      await c.stop();
    }
  },
);

clusterTest("interop: slixmpp's XEP-0045 plugin with its two clients on two nodes", async () => {
  const { c } = await mucCluster(2, ["owner", "guest"], {
    overrides: mucHost({ message_rate: 10 }),
  });
  try {
    const [n1, n2] = c.nodes;
    const r = await interop("muc_two_nodes.py", [
      String(n1.port),
      "owner@localhost/o",
      "guest@localhost/g",
      "secret",
      `interop@${MUC}`,
      n1.host,
      n2.host,
      String(n2.port),
    ]);
    assert.deepEqual(r.created_codes, [110, 201]);
    assert.deepEqual(r.guest_codes, [100, 110]);
    assert.deepEqual(r.guest_sees, ["Guest", "Owner"]);
    assert.equal(r.groupchat_from, `interop@${MUC}/Owner`);
    assert.equal(r.pm_from, `interop@${MUC}/Guest`);
    assert.deepEqual(r.history, ["early2", "early3"]);
    assert.deepEqual(r.kick_codes, [110, 307]);
    assert.equal(r.destroy_reason, "done");
  } finally {
    await c.stop();
  }
});
