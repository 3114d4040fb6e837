// A lying peer (a process holding a valid node certificate) and chat rooms: a node believes it
// only about what it owns. Against running nodes (their own processes), with max_occupants and
// max_affiliations of 5: a merge of a room the node does not run brings no room; a merge of more
// occupants than max_occupants closes the link; a room's message from a JID that is no room of
// the cluster closes the link, and one to another domain's JIDs reaches none of them; a room name
// that is not a prepared localpart, a nick XML cannot carry, a room JID without a localpart and
// more owners than max_affiliations are refused. The node stays up throughout.
import assert from "node:assert/strict";
import { clusterTest, startCluster } from "../helpers/cluster.ts";
import { RoguePeer } from "../helpers/rogue_peer.ts";
import { until } from "../helpers/until.ts";
import { counters, lookup, mucHost, poll, roomOn } from "../helpers/cluster_muc.ts";
import { MUC } from "../helpers/muc.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import { CLEARED, INVALIDATE } from "../../src/cluster/wire.ts";
import type { FrameType } from "../../src/cluster/frame_type.ts";
import {
  M_CLAIM,
  M_FANOUT,
  M_MERGE,
  M_ROOMS,
  type WireSnapshot,
} from "../../src/cluster/muc_wire.ts";

const LIMIT = 5;

type Outcome = "taken" | "refused";

let probes = 0;

/**
 * Sends a frame, then an INVALIDATE: a frame the node takes is followed by the answer to that,
 * one it refuses by the link closing (then waits for the next link).
 */
async function send(
  rogue: RoguePeer,
  frame: FrameType<unknown>,
  payload: string,
): Promise<Outcome> {
  await rogue.up();
  const downs = rogue.downs;
  const id = String(++probes);
  rogue.send(frame.type, payload);
  rogue.send(INVALIDATE.type, JSON.stringify({ id: probes, cache: "none", key: "k" }));
  await until(
    () => rogue.downs > downs || rogue.received.some(([t, s]) => t === CLEARED.type && s === id),
    `${frame.name}: answered or refused`,
  );
  const outcome = rogue.downs > downs ? "refused" : "taken";
  if (outcome === "refused") await rogue.up();
  return outcome;
}

/**
 * A room's state as M_MERGE carries it, with `occupants` occupants: alice online (a room brought
 * here keeps her), then accounts of `localhost` that are not.
 */
function merge(room: string, occupants = 1, nick = (i: number) => `nick${i}`): string {
  const data = JSON.parse(M_MERGE.example) as { room: string; snapshot: WireSnapshot };
  data.room = room;
  const [o] = data.snapshot.occupants;
  data.snapshot.occupants = Array.from({ length: occupants }, (_, i) => {
    const bare = i === 0 ? "alice@localhost" : `user${i}@localhost`;
    const presence = `<presence from='${bare}/r'/>`;
    return { ...o, nick: nick(i), bare, sessions: [{ jid: `${bare}/r`, presence }] };
  });
  return JSON.stringify(data);
}

/** An M_FANOUT of a groupchat message with `body`. */
function fanout(from: string, to: string[], body: string): string {
  return JSON.stringify([from, to]) + "\n" +
    `<message type='groupchat' from='${from}'><body>${body}</body></message>`;
}

/** Whether the node runs `room` (its lookup names itself, running). */
async function runs(c: Parameters<typeof lookup>[0], room: string): Promise<boolean> {
  const r = await lookup(c, 0, `${room}@${MUC}`);
  return !("running" in r) && r.node === c.nodes[0].name;
}

/**
 * Whether `client` got a message with `body` from what its node handled so far: a ping's answer
 * comes after anything the node wrote to it before.
 */
async function got(client: RawClient, body: string): Promise<boolean> {
  await client.iq("get", "<ping xmlns='urn:xmpp:ping'/>");
  return client.received.some((e) => e.name === "message" && e.childText("body") === body);
}

clusterTest(
  "a lying peer is believed about chat rooms only as far as they are its own",
  async () => {
    const c = await startCluster(3, {
      start: [0, 1],
      overrides: {
        ...mucHost({ max_occupants: LIMIT, max_affiliations: LIMIT }),
        cluster: { invalid_input_backoff: "0ms" },
      },
    });
    let exited = false;
    void c.nodes[0].process!.exited.then(() => exited = true);
    let rogue: RoguePeer | undefined;
    let alice: RawClient | undefined;
    try {
      await c.addUser("alice");
      await c.formed();
      alice = await c.login(0, "alice", "r");
      alice.send("<presence/>");
      rogue = await RoguePeer.start(c, "n3", 0);

      // A merge of a room that n2 would run: no room here (ignored, the link stays).
      const elsewhere = await roomOn(c, 1, "elsewhere");
      assert.equal(await send(rogue, M_MERGE, merge(elsewhere)), "taken");
      assert.equal(await runs(c, elsewhere), false, "a room made here at a peer's word");
      assert.equal((await lookup(c, 0, `${elsewhere}@${MUC}`)).node, c.nodes[1].name);

      // A room this node would run: more occupants than max_occupants are refused; as many are
      // taken (a takeover's merge).
      const here = await roomOn(c, 0, "here");
      assert.equal(await send(rogue, M_MERGE, merge(here, LIMIT + 1)), "refused");
      assert.equal(await runs(c, here), false);
      assert.equal(await send(rogue, M_MERGE, merge(here, LIMIT)), "taken");
      await poll(() => runs(c, here), "the room taken over");

      // A room's message from something that is no room here: refused, and delivered to nobody.
      const alices = ["alice@localhost/r"];
      for (const from of ["mallory@elsewhere.example/x", "alice@localhost/r", MUC]) {
        assert.equal(await send(rogue, M_FANOUT, fanout(from, alices, from)), "refused", from);
        assert.equal(await got(alice, from), false, `alice got a message from ${from}`);
      }
      // From a room: only the targets of this cluster's domains get it.
      const before = (await counters(c, 0)).fanoutDelivered;
      const targets = ["eve@elsewhere.example/r", "alice@localhost/r", "bob@elsewhere.example/r"];
      const room = `nowhere@${MUC}/ghost`;
      assert.equal(await send(rogue, M_FANOUT, fanout(room, targets, "hi")), "taken");
      assert.ok(await got(alice, "hi"), "alice got the room's message");
      assert.equal((await counters(c, 0)).fanoutDelivered - before, 1, "foreign targets routed");
      // More targets than max_occupants.
      const many = Array.from({ length: LIMIT + 1 }, (_, i) => `alice@localhost/r${i}`);
      assert.equal(await send(rogue, M_FANOUT, fanout(room, many, "many")), "refused");

      // Room names that are not prepared localparts, and a nick XML cannot carry.
      for (const name of ["Upper", "two words", "a/b"]) {
        assert.equal(await send(rogue, M_MERGE, merge(name)), "refused", name);
        const claim = JSON.parse(M_CLAIM.example);
        claim.room = name;
        claim.status.jid = `${name}@${MUC}`;
        assert.equal(await send(rogue, M_CLAIM, JSON.stringify(claim)), "refused", name);
      }
      const nul = await roomOn(c, 0, "nul");
      assert.equal(await send(rogue, M_MERGE, merge(nul, 1, () => "a\u0000b")), "refused");
      assert.equal(await runs(c, nul), false);
      // A room announced without a localpart, and one with more owners than max_affiliations.
      const rooms = JSON.parse(M_ROOMS.example);
      assert.equal(
        await send(rogue, M_ROOMS, JSON.stringify([{ ...rooms[0], jid: MUC }])),
        "refused",
      );
      const owners = Array.from({ length: LIMIT + 1 }, (_, i) => `owner${i}@localhost`);
      const claim = JSON.parse(M_CLAIM.example);
      claim.status.owners = owners;
      assert.equal(await send(rogue, M_CLAIM, JSON.stringify(claim)), "refused");
      claim.status.owners = owners.slice(0, LIMIT);
      assert.equal(await send(rogue, M_CLAIM, JSON.stringify(claim)), "taken");

      assert.ok(!exited, "the node exited");
      assert.ok(!alice.closed, "alice's stream stays open");
      await c.formed();
    } finally {
      alice?.close();
      await rogue?.stop();
      await c.stop();
    }
  },
);
