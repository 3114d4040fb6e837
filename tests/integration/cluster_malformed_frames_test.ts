// Malformed frames from a peer with a valid node certificate, against a running node (its own
// process): every frame type with every malformed shape made from its example (tests/helpers/
// malformed.ts), from four such peers at once (a quarter of the frame types each). The node stays up and
// answers its users; a frame that does not decode closes that link, which comes back, and the
// next valid frames are believed; what it logs of it is bounded; none of it reaches a handler as
// a fault.
import assert from "node:assert/strict";
import { clusterTest, startCluster } from "../helpers/cluster.ts";
import { RoguePeer } from "../helpers/rogue_peer.ts";
import { mutations } from "../helpers/malformed.ts";
import { MAX_STALL_MS, stallProbe } from "../helpers/abuse.ts";
import { until } from "../helpers/until.ts";
import { ALL_FRAMES } from "../../src/cluster/frame_registry.ts";
import { CLEARED, INVALIDATE, RECORD } from "../../src/cluster/wire.ts";

/** The peers the frames come from, each a share of the frame types, at once. */
const ROGUES = ["n2", "n3", "n4", "n5"];

clusterTest(
  "every malformed shape of every frame type: the node stays up, the link closes, the next link works",
  async () => {
    const c = await startCluster(1 + ROGUES.length, {
      start: [0],
      overrides: {
        cluster: { invalid_input_backoff: "0ms" },
        // Every service runs, so that every frame type reaches its handler (the examples name
        // these domains).
        hosts: [{
          domain: "localhost",
          muc: { domain: "conference.localhost", message_rate: 0 },
          proxy65: { domain: "proxy.localhost", bind: "{node_host}", port: 0 },
          components: [{ domain: "echo.localhost", secret: "s" }],
        }],
      },
    });
    let exited = false;
    void c.nodes[0].process!.exited.then(() => exited = true);
    await c.addUser("probe");
    const probe = await stallProbe(c.nodes[0].port);
    const rogues = await Promise.all(ROGUES.map((name) => RoguePeer.start(c, name)));
    const started = performance.now();
    let probes = 0;
    /** Sends the malformed shapes of `frames` from `rogue`; how many were refused, and taken. */
    const malform = async (rogue: RoguePeer, frames: typeof ALL_FRAMES) => {
      let rejected = 0, taken = 0;
      for (const frame of frames) {
        let rejectedHere = 0;
        for (const m of mutations(frame.example)) {
          await rogue.up();
          const downs = rogue.downs;
          rogue.send(frame.type, m.payload);
          // A frame the node takes is followed by the answer to this one; one it refuses, by the
          // link closing.
          const id = String(++probes);
          rogue.send(INVALIDATE.type, JSON.stringify({ id: Number(id), cache: "none", key: "k" }));
          await until(
            () =>
              rogue.downs > downs ||
              rogue.received.some(([t, s]) => t === CLEARED.type && s === id),
            `${frame.name}, ${m.what}: answered or refused`,
          );
          assert.ok(!exited, `the node exited after ${frame.name}, ${m.what}`);
          if (rogue.downs > downs) rejectedHere++;
          else taken++;
          rogue.received.length = 0;
        }
        assert.ok(rejectedHere > 0, `${frame.name}: nothing refused`);
        rejected += rejectedHere;
      }
      return { rejected, taken };
    };
    try {
      const counts = await Promise.all(
        rogues.map((rogue, r) =>
          malform(rogue, ALL_FRAMES.filter((_, i) => i % ROGUES.length === r))
        ),
      );
      // The next valid link works: a session record is believed.
      const rogue = rogues[0];
      await rogue.up();
      const record = JSON.parse(RECORD.example);
      rogue.send(RECORD.type, JSON.stringify({ ...record, jid: "carol@localhost/rogue" }));
      let sessions = 0;
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline) {
        sessions = (await c.status(0)).find((m) => m.node === "n2")?.sessions ?? 0;
        if (sessions === 1) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(sessions, 1, "the valid record after the malformed ones is believed");

      const { maxWaitMs } = await probe.stop();
      assert.ok(maxWaitMs < MAX_STALL_MS, `a user waited ${maxWaitMs} ms`);
      const logs = c.logs(0);
      assert.deepEqual(logs.filter((l) => l.includes("frame failed")), [], "no handler fault");
      // Bounded log: a burst, then one line per 10 s per peer.
      const seconds = (performance.now() - started) / 1000;
      const lines = logs.filter((l) => l.includes("closed the link to")).length;
      const bound = ROGUES.length * (5 + Math.ceil(seconds / 10) + 1);
      assert.ok(lines <= bound, `${lines} lines in ${seconds} s`);
      const status = await c.status(0);
      for (const [r, name] of ROGUES.entries()) {
        assert.equal(status.find((m) => m.node === name)!.invalidInput, counts[r].rejected, name);
      }
      const rejected = counts.reduce((n, x) => n + x.rejected, 0);
      const taken = counts.reduce((n, x) => n + x.taken, 0);
      console.log(`${rejected} refused, ${taken} taken, in ${seconds.toFixed(1)} s`);
    } finally {
      await probe.stop();
      for (const rogue of rogues) await rogue.stop();
      await c.stop();
    }
  },
);
