// Abuse: three connections at a time each send, before logging in, a stream header and then
// 64 KiB of nested elements (`<a>` about 21,800 times). The depth limit stops parsing each
// connection at once and resolving a namespace costs the same at any depth, so other users never
// wait; each attacker gets policy-violation, and logging in still works.
import assert from "node:assert/strict";
import { abuseServer, assertUnstalled, stallProbe } from "../helpers/abuse.ts";
import { serverTest } from "../helpers/server.ts";
import { HEADER, RawClient } from "../helpers/raw_client.ts";
import { NS } from "../../src/xml/ns.ts";

const ATTACKERS = 3;
const SIZE = 64 * 1024;
const ATTACK_MS = 1500;
const MAX_ROUNDS = 100;

serverTest("abuse: deeply nested pre-auth stanzas do not stall the server", async () => {
  const server = await abuseServer({}, ["probe", "user"]);
  const open: RawClient[] = [];
  try {
    const probe = await stallProbe(server.port);
    let stall: { maxWaitMs: number; pings: number } | undefined;
    try {
      const header = HEADER();
      const nested = header + "<a>".repeat(Math.floor((SIZE - header.length) / 3));
      // Rounds of three attackers at once, for long enough that the probe pings meanwhile.
      const until = performance.now() + ATTACK_MS;
      for (let round = 0; round < MAX_ROUNDS && performance.now() < until; round++) {
        const attackers = await Promise.all(
          Array.from({ length: ATTACKERS }, () => RawClient.connect(server.port)),
        );
        open.push(...attackers);
        for (const a of attackers) a.send(nested);
        for (const a of attackers) {
          const err = await a.streamError(10_000);
          assert.ok(err.child("policy-violation", NS.streamErrors), `got ${err}`);
          await a.waitClosed();
        }
      }
      // Legitimate work still succeeds: a fresh login and a round trip.
      const user = await RawClient.login(server.port, "user", "secret", {
        starttls: false,
        mech: "PLAIN",
      });
      const pong = await user.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
      assert.equal(pong.attrs.type, "result");
      user.close();
    } finally {
      stall = await probe.stop();
    }
    assertUnstalled(stall!);
  } finally {
    for (const a of open) a.drop();
    await server.stop();
  }
});
