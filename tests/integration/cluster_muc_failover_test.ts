// Multi-User Chat over three `parley serve` processes: what a room's replica hears of besides
// stanzas. Occupants dropped because their node died are replicated, so a later takeover does
// not show them leaving a second time.
import assert from "node:assert/strict";
import { clusterTest } from "../helpers/cluster.ts";
import { counters, lookup, mucCluster, online, poll, settled } from "../helpers/cluster_muc.ts";
import { createRoom, isMessage, isPresence, join, MUC, statusCodes } from "../helpers/muc.ts";

const ROOM = `hall@${MUC}`;

clusterTest(
  "MUC: occupants who left with their node are replicated; a takeover later shows them leaving once",
  async () => {
    const { c, clients } = await mucCluster(3, ["x", "y", "z"]);
    try {
      const z = await online(c, clients, "z", 0);
      await createRoom(z, "hall", "Z");
      const owner = Number((await lookup(c, 0, ROOM)).node!.slice(1)) - 1;
      const others = [0, 1, 2].filter((i) => i !== owner);
      let replica = -1;
      await poll(async () => {
        for (const i of others) if ((await counters(c, i)).replicas === 1) replica = i;
        return replica !== -1;
      }, "the room's replica");
      const third = others.find((i) => i !== replica)!;
      const x = await online(c, clients, "x", replica);
      const y = await online(c, clients, "y", third);
      await join(x, "hall", "X");
      await join(y, "hall", "Y");
      await x.waitFor(isPresence(`${ROOM}/Y`));
      const replicated = () => counters(c, owner).then((m) => m.replicated);
      const before = await settled(replicated);

      // Y's node dies: Y leaves (333), and the replica hears of it.
      await c.kill(third);
      const left = await x.waitFor(isPresence(`${ROOM}/Y`, "unavailable"));
      assert.ok(statusCodes(left).includes(333));
      await poll(async () => await replicated() > before, "the replica hears Y left");

      // The room's node dies: the replica's node takes over; Y does not leave again.
      await c.kill(owner);
      await poll(async () => (await counters(c, replica)).takeovers === 1, "the takeover");
      x.send(`<message to='${ROOM}' type='groupchat'><body>after</body></message>`);
      await x.waitFor((e) => isMessage(`${ROOM}/X`)(e) && e.childText("body") === "after");
      // The first one was taken off `received` above.
      const again = x.received.filter(isPresence(`${ROOM}/Y`, "unavailable"));
      assert.deepEqual(again.map(String), [], "Y left once");
    } finally {
      for (const r of clients) r.close();
      await c.stop();
    }
  },
);
