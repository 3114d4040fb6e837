// PostgreSQL stopped and started again under a running two-node cluster: requests that need the
// store get `resource-constraint` errors of type wait while it is down, sessions stay up, chat
// between the nodes goes on, no node exits, and everything works again once it is back (the
// pools reconnect by themselves).
import assert from "node:assert/strict";
import { clusterTest, startCluster } from "../helpers/cluster.ts";
import { sharedPostgres } from "../helpers/postgres.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import { errorOf, STORE_DOWN } from "../helpers/stanza_errors.ts";
import { NS } from "../../src/xml/ns.ts";

const ROSTER_GET = `<query xmlns='${NS.roster}'/>`;

clusterTest(
  "a PostgreSQL outage under a cluster: store requests wait, cross-node chat goes on, " +
    "no node exits, then all works again",
  async () => {
    const c = await startCluster(2);
    const pg = await sharedPostgres();
    const clients: RawClient[] = [];
    try {
      for (const u of ["ann", "bo", "cy"]) await c.addUser(u);
      await c.formed();
      const exits: string[] = [];
      for (const node of c.nodes) void node.process!.exited.then(() => exits.push(node.name));
      const ann = await c.login(0, "ann", "a");
      const bo = await c.login(0, "bo", "b");
      const cy = await c.login(1, "cy", "c");
      clients.push(ann, bo, cy);
      for (const r of clients) r.send("<presence/>");
      let n = 0;
      // bo on n1 and cy on n2, both ways.
      const chat = async () => {
        for (const [from, to] of [[bo, cy], [cy, bo]]) {
          const id = `m${++n}`;
          from.send(`<message to='${to.jid}' type='chat' id='${id}'><body>hi</body></message>`);
          await to.waitFor((e) => e.name === "message" && e.attrs.id === id, 5000, id);
        }
      };
      await chat();
      assert.equal((await ann.iq("get", ROSTER_GET)).attrs.type, "result");

      await pg.stop();
      try {
        assert.deepEqual(errorOf(await ann.iq("get", ROSTER_GET)), STORE_DOWN);
        assert.deepEqual(errorOf(await cy.iq("set", `<vCard xmlns='${NS.vcard}'/>`)), STORE_DOWN);
        for (let i = 0; i < 5; i++) await chat();
        const members = await c.status(0);
        assert.equal(members.find((m) => m.node === "n2")?.state, "up");
      } finally {
        await pg.start();
      }
      // The pools reconnect by themselves: the next requests work, on both nodes.
      assert.equal((await ann.iq("get", ROSTER_GET)).attrs.type, "result");
      assert.equal((await cy.iq("get", ROSTER_GET)).attrs.type, "result");
      await chat();
      const late = await c.login(1, "ann", "late");
      clients.push(late);
      assert.deepEqual(exits, [], "no node exited");
    } finally {
      for (const r of clients) r.close();
      await c.stop();
    }
  },
);
