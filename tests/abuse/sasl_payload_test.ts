// Abuse: oversized SASL payloads before login. 100 connections from 20 addresses each send one
// SCRAM client-first naming a huge user: half of them 150,000 characters, more than a stanza may
// hold before login (the stream is closed with policy-violation while parsing, before any SASL
// work), half 11,000, within that bound but over what SASL accepts (refused with
// malformed-request before the text is decoded: decoding, validating and SASLprep of such text
// blocked the event loop for milliseconds each, seconds in all). 20 others send a client-first
// with a nonce of either size and <abort/> it, again and again: an abandoned exchange counts as a
// failure, so the loop ends with the stream after the connection's failure limit.
import assert from "node:assert/strict";
import { abuseServer, MAX_STALL_MS, stallProbe } from "../helpers/abuse.ts";
import { serverTest } from "../helpers/server.ts";
import { NS } from "../../src/xml/ns.ts";
import { saslConnection } from "../helpers/sasl_connection.ts";

/** Over limits.max_stanza_size_before_auth once base64-encoded, and within it. */
const SIZES = [150_000, 11_000];
const NAMES = 100;
const auth = (payload: string) =>
  `<auth xmlns='${NS.sasl}' mechanism='SCRAM-SHA-256'>${btoa(payload)}</auth>`;

/** One client-first with a huge user name: the answer. */
async function hugeName(port: number, i: number): Promise<string> {
  const c = saslConnection(port, `127.0.1.${2 + i % 20}`);
  c.send(auth(`n,,n=${"u".repeat(SIZES[i % 2])},r=abc`));
  try {
    return await c.next();
  } finally {
    c.close();
  }
}

/**
 * Client-first, with a huge nonce on odd connections and a normal one on even ones, then
 * <abort/>, until the server stops it: the rounds.
 */
async function abortLoop(port: number, i: number): Promise<{ rounds: number; end: string }> {
  const c = saslConnection(port, `127.0.2.${2 + i}`);
  const nonce = i % 4 === 3 ? "abc" : "A".repeat(SIZES[i % 2]);
  const payload = auth(`n,,n=user,r=${nonce}`) + `<abort xmlns='${NS.sasl}'/>`;
  try {
    for (let rounds = 0; rounds < 20; rounds++) {
      c.send(payload);
      // The client-first's answer, then the abort's (none once the stream is closed).
      for (let k = 0; k < 2; k++) {
        const a = await c.next();
        if (!a.startsWith("<failure") && !a.startsWith("<challenge")) return { rounds, end: a };
      }
    }
    return { rounds: 20, end: "still open" };
  } finally {
    c.close();
  }
}

serverTest("abuse: oversized SASL payloads are refused cheaply and aborts count", async () => {
  const server = await abuseServer();
  try {
    const probe = await stallProbe(server.port);
    const [names, loops] = await Promise.all([
      Promise.all(Array.from({ length: NAMES }, (_, i) => hugeName(server.port, i))),
      Promise.all(Array.from({ length: 20 }, (_, i) => abortLoop(server.port, i))),
    ]);
    const { maxWaitMs, pings } = await probe.stop();
    const malformed = names.filter((a, i) => i % 2 && /<malformed-request/.test(a)).length;
    const tooBig = names.filter((a, i) => !(i % 2) && /policy-violation/.test(a)).length;
    console.log(
      `huge names: ${tooBig}/${NAMES / 2} policy-violation, ${malformed}/${
        NAMES / 2
      } malformed-request; abort loops: rounds ` +
        `${loops.map((l) => l.rounds).join(",")}; probe: ${pings} pings, longest wait ` +
        `${maxWaitMs.toFixed(0)} ms`,
    );
    const answers = `answers: ${[...new Set(names)].join(" | ").slice(0, 300)}`;
    assert.equal(tooBig, NAMES / 2, answers);
    assert.equal(malformed, NAMES / 2, answers);
    for (const l of loops) {
      assert.ok(l.rounds <= 5, `${l.rounds} rounds before the end: ${l.end}`);
      assert.match(l.end, /<stream:error|closed/);
    }
    assert.ok(maxWaitMs < MAX_STALL_MS, `a user waited ${maxWaitMs.toFixed(0)} ms for the server`);
  } finally {
    await server.stop();
  }
});
