// Multi-User Chat over three `parley serve` processes: occupants who leave while their room's node
// is frozen (SIGSTOP, declared dead, its room taken over, then back: the partition heals) leave
// for good. No occupant stays in the room after its departure, wherever it was sent.
import assert from "node:assert/strict";
import { clusterTest } from "../helpers/cluster.ts";
import {
  counters,
  lookup,
  mucCluster,
  oneRoom,
  online,
  poll,
  settled,
} from "../helpers/cluster_muc.ts";
import { createRoom, isMessage, isPresence, join, MUC } from "../helpers/muc.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import type { Element } from "../../src/xml/element.ts";

/** A room name that rendezvous hashing places on node `i`. */
async function nameOn(c: Parameters<typeof lookup>[0], i: number): Promise<string> {
  for (let n = 0;; n++) {
    if ((await lookup(c, 0, `ghost${n}@${MUC}`)).node === c.nodes[i].name) return `ghost${n}`;
  }
}

clusterTest(
  "MUC: occupants leaving or dropping while the room's node is frozen and taken over leave once, everywhere",
  async () => {
    const users = ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4"];
    const { c, clients } = await mucCluster(3, users, { heartbeat: "250ms", deadAfter: "1s" });
    try {
      const name = await nameOn(c, 0);
      const ROOM = `${name}@${MUC}`;
      // Occupants on n2 (a…) and n3 (b…); the room runs on n1.
      const on: Record<string, RawClient> = {};
      for (const u of users) on[u] = await online(c, clients, u, u.startsWith("a") ? 1 : 2);
      await createRoom(on.a1, name, "A1");
      for (const u of users.slice(1)) await join(on[u], name, u.toUpperCase());
      await on.a1.waitFor(isPresence(`${ROOM}/B4`));
      assert.equal((await lookup(c, 1, ROOM)).node, "n1");
      let replica = -1;
      await poll(async () => {
        for (const i of [1, 2]) if ((await counters(c, i)).replicas === 1) replica = i;
        return replica !== -1;
      }, "the room's replica");
      // The replica has heard of every join.
      await settled(() => counters(c, 0).then((m) => m.replicated));

      // n1 freezes: departures sent to it now are never handled there.
      c.nodes[0].process!.child.kill("SIGSTOP");
      on.a2.send(`<presence to='${ROOM}/A2' type='unavailable'/>`);
      on.b2.send(`<presence to='${ROOM}/B2' type='unavailable'/>`);
      on.a3.drop();
      on.b3.drop();
      await poll(async () => (await counters(c, replica)).takeovers === 1, "the takeover");
      // Right after the takeover.
      on.a4.send(`<presence to='${ROOM}/A4' type='unavailable'/>`);
      on.b4.drop();
      const told = (u: string, nick: string) =>
        poll(
          () => Promise.resolve(on[u].received.some(isPresence(`${ROOM}/${nick}`, "unavailable"))),
          `${u} told that ${nick} left`,
        );
      await told("a1", "A4");
      await told("a1", "B4");

      // n1 thaws: the partition heals.
      c.nodes[0].process!.child.kill("SIGCONT");
      await c.formed();

      const stay = ["A1", "B1"];
      const gone = ["A2", "A3", "A4", "B2", "B3", "B4"];
      // One room, on one node, as every node sees it, with the remaining occupants exactly.
      await oneRoom(c, ROOM, stay.length);
      // Each remaining occupant was told of each departure, once.
      for (const u of ["a1", "b1"]) for (const nick of gone) await told(u, nick);
      // A groupchat reaches exactly the remaining occupants.
      on.a1.send(`<message to='${ROOM}' type='groupchat'><body>after</body></message>`);
      const after = (e: Element) => isMessage(`${ROOM}/A1`)(e) && e.childText("body") === "after";
      await on.a1.waitFor(after);
      await on.b1.waitFor(after);
      // The explicit leavers are still online: they would get it by now if still in the room.
      on.b1.send(`<message to='${ROOM}' type='groupchat'><body>last</body></message>`);
      const last = (e: Element) => e.childText("body") === "last";
      await on.a1.waitFor(last);
      await on.b1.waitFor(last);
      for (const u of ["a2", "a4", "b2"]) {
        assert.ok(!on[u].received.some(after), `${u} left and got no message after`);
      }
      // Every departure is shown. Through a stall (unlike a crash) one may be shown twice, when
      // the woken node's last broadcasts race its own quieting (docs/clustering.md, "Chat rooms
      // in a cluster"); never more.
      for (const u of ["a1", "b1"]) {
        for (const nick of gone) {
          const n = on[u].received.filter(isPresence(`${ROOM}/${nick}`, "unavailable")).length;
          assert.ok(n >= 1 && n <= 2, `${u} told ${n} times that ${nick} left`);
        }
      }
    } finally {
      try {
        c.nodes[0].process?.child.kill("SIGCONT");
      } catch { /* gone */ }
      for (const r of clients) r.close();
      await c.stop();
    }
  },
);
