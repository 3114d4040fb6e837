// Multi-User Chat over two `parley serve` processes: what a node knows of rooms it does not run.
// disco#items lists every public room (running on the other node, or stored and running nowhere);
// `max_rooms_per_user` counts an account's rooms on every node and in storage; a room stored by a
// node that then dies is found by the survivor (which learnt of it when it was stored).
import assert from "node:assert/strict";
import { clusterTest, type TestCluster } from "../helpers/cluster.ts";
import { lookup, mucCluster, mucHost, online, poll, rooms } from "../helpers/cluster_muc.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import { NS } from "../../src/xml/ns.ts";
import {
  createRoom,
  errorCondition,
  field,
  isPresence,
  join,
  MUC,
  ownerSubmit,
  statusCodes,
} from "../helpers/muc.ts";

/** A room name the cluster would place on `node` (asked of node i). */
async function placedOn(c: TestCluster, i: number, node: string, prefix: string): Promise<string> {
  for (let n = 0; n < 100; n++) {
    if ((await lookup(c, i, `${prefix}${n}@${MUC}`)).node === node) return `${prefix}${n}`;
  }
  throw new Error(`no room name placed on ${node}`);
}

const publicRooms = async (r: RawClient) =>
  (await r.iq("get", `<query xmlns='${NS.discoItems}'/>`, MUC)).child("query")!.elements("item")
    .map((i) => `${i.attrs.jid} ${i.attrs.name}`).sort();

clusterTest(
  "MUC on two nodes: disco#items lists every public room, max_rooms_per_user counts every node's rooms, a stored room outlives its node",
  async () => {
    const { c, clients } = await mucCluster(2, ["a", "b"], {
      overrides: mucHost({ hibernate_after: 1, max_rooms_per_user: 2 }),
    });
    try {
      const a = await online(c, clients, "a", 0);
      // A persistent public room on n2, made from n1, left empty: it hibernates there.
      const kept = await placedOn(c, 0, "n2", "kept");
      await join(a, kept, "A");
      await ownerSubmit(
        a,
        kept,
        field("muc#roomconfig_persistentroom", "1") + field("muc#roomconfig_roomname", "Kept"),
      );
      a.send(`<presence to='${kept}@${MUC}/A' type='unavailable'/>`);
      await a.waitFor(isPresence(`${kept}@${MUC}/A`, "unavailable"));
      await poll(async () => (await rooms(c, 1)).length === 0, "the room hibernates");
      // A temporary public room on n2, with A in it.
      const temp = await placedOn(c, 0, "n2", "temp");
      await createRoom(a, temp, "A");

      // n1 runs no room and lists both: one running on n2, one stored and running nowhere.
      await poll(
        async () =>
          (await publicRooms(a)).join() ===
            [`${kept}@${MUC} Kept`, `${temp}@${MUC} ${temp}`].join(),
        "n1 lists the rooms of n2 and of storage",
      );
      // A owns two rooms, none on n1: a third, placed on n1, is refused there.
      const third = await placedOn(c, 0, "n1", "third");
      assert.equal(errorCondition(await join(a, third, "A")), "not-allowed");
      assert.equal((await lookup(c, 0, `${third}@${MUC}`)).node, "n1");
      assert.deepEqual((await rooms(c, 0)).filter((r) => r.node === "n1"), [], "n1 made no room");

      // n2 dies: n1 finds the stored room (it learnt of it when n2 stored it).
      await c.kill(1);
      await poll(async () => (await lookup(c, 0, `${kept}@${MUC}`)).node === "n1", "n2 is gone");
      const back = await join(a, kept, "A");
      assert.ok(!statusCodes(back).includes(201), "loaded from storage, not created");
    } finally {
      for (const r of clients) r.close();
      await c.stop();
    }
  },
);
