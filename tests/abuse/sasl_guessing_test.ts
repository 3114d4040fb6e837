// Abuse: a password-guessing burst, SASL PLAIN with wrong passwords from 20 loopback addresses,
// half at one account and half at made-up ones, on the default configuration (4,096 iterations,
// default limits), more at once than the limits allow in all. Key derivation runs off the event
// loop, so other users never wait; guesses in flight count against the failed-authentication
// limits, so the burst gets no more checks than the limits allow; the account's owner, logging
// in from an address that did not guess, is not locked out; the probe is served throughout.
import assert from "node:assert/strict";
import { abuseServer, MAX_STALL_MS, stallProbe } from "../helpers/abuse.ts";
import { serverTest } from "../helpers/server.ts";
import { NS } from "../../src/xml/ns.ts";
import { saslConnection } from "../helpers/sasl_connection.ts";

const ADDRESSES = 20; // 127.0.0.2 – 127.0.0.21
const PER_ADDRESS = 10; // the default limits: 10 failures per address, 30 per account, per minute
const PER_ACCOUNT = 30;
const CONNECTIONS = 800;
/** Above the addresses' whole allowance, so guesses in flight must count against the limits. */
const CONCURRENCY = 400;

/** One PLAIN attempt on a fresh connection from `localAddress`: the server's answer, as text. */
async function attempt(port: number, localAddress: string, user: string, password: string) {
  const c = saslConnection(port, localAddress);
  c.send(`<auth xmlns='${NS.sasl}' mechanism='PLAIN'>${btoa(`\0${user}\0${password}`)}</auth>`);
  try {
    return await c.next();
  } finally {
    c.close();
  }
}

serverTest("abuse: a SASL guessing burst is throttled and stalls no one", async () => {
  const server = await abuseServer({}, ["probe", "victim"]);
  try {
    const probe = await stallProbe(server.port);
    const answers: { victim: boolean; answer: string }[] = [];
    let next = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < CONNECTIONS; i = next++) {
        const from = `127.0.0.${2 + i % ADDRESSES}`;
        const victim = i % 2 === 0;
        const answer = await attempt(server.port, from, victim ? "victim" : `guess${i}`, `pw${i}`);
        answers.push({ victim, answer });
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    // The owner, with the right password, from an address that did not guess.
    const owner = await attempt(server.port, "127.0.0.22", "victim", "secret");
    const { maxWaitMs, pings } = await probe.stop();

    const count = (re: RegExp, victim?: boolean) =>
      answers.filter((a) => re.test(a.answer) && (victim === undefined || a.victim === victim))
        .length;
    const wrong = count(/<not-authorized/);
    const onVictim = count(/<not-authorized/, true);
    const byAddress = count(/<temporary-auth-failure[\s\S]*address/);
    const byAccount = count(/<temporary-auth-failure[\s\S]*account/);
    console.log(
      `${CONNECTIONS} attempts (${CONCURRENCY} at once) in ${seconds.toFixed(1)} s: ${wrong} ` +
        `checked (${onVictim} on the victim), ${byAddress} refused per address, ${byAccount} per ` +
        `account; probe: ${pings} pings, longest wait ${maxWaitMs.toFixed(0)} ms`,
    );
    assert.equal(wrong + byAddress + byAccount, CONNECTIONS, "every attempt was answered");
    assert.ok(byAddress > 0, "the per-address limit refused attempts");
    // Each address's allowance (plus what refills during the burst), however many at once.
    assert.ok(wrong <= ADDRESSES * (PER_ADDRESS + 2), `${wrong} passwords were checked`);
    // The account's, plus the first guess of each address that had not failed yet.
    assert.ok(onVictim <= PER_ACCOUNT + ADDRESSES + 2, `${onVictim} guesses on the victim`);
    assert.match(owner, /<success/, "the owner is not locked out");
    assert.ok(maxWaitMs < MAX_STALL_MS, `a user waited ${maxWaitMs.toFixed(0)} ms for the server`);
  } finally {
    await server.stop();
  }
});
