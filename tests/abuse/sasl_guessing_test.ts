// Abuse: a password-guessing burst, SASL PLAIN with wrong passwords from 20 loopback addresses,
// half at one account and half at made-up ones, on the default configuration (4,096 iterations,
// default limits). Key derivation runs off the event loop, so other users never wait; the
// failed-authentication limits refuse the burst per address and per account; the legitimate
// user, already logged in or logging in afresh from another address, is served throughout.
import assert from "node:assert/strict";
import net from "node:net";
import { abuseServer, MAX_STALL_MS, stallProbe } from "../helpers/abuse.ts";
import { serverTest } from "../helpers/server.ts";
import { HEADER } from "../helpers/raw_client.ts";
import { NS } from "../../src/xml/ns.ts";

const ADDRESSES = 20; // 127.0.0.2 – 127.0.0.21
const CONNECTIONS = 400;
const CONCURRENCY = 100;
const ANSWER = /<success[^>]*>|<failure[\s\S]*?<\/failure>|<stream:error[\s\S]*?<\/stream:error>/;

/** One PLAIN attempt on a fresh connection from `localAddress`: the server's answer, as text. */
function attempt(port: number, localAddress: string, user: string, password: string) {
  return new Promise<string>((resolve) => {
    const s = net.connect({ port, host: "127.0.0.1", localAddress });
    s.setEncoding("utf8");
    let text = "";
    const done = (answer: string) => {
      clearTimeout(timer);
      s.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done("no answer"), 10_000);
    s.on("connect", () =>
      s.write(
        HEADER() +
          `<auth xmlns='${NS.sasl}' mechanism='PLAIN'>${btoa(`\0${user}\0${password}`)}</auth>`,
      ));
    s.on("data", (d: string) => {
      text += d;
      const m = ANSWER.exec(text);
      if (m) done(m[0]);
    });
    s.on("error", () => done("error"));
    s.on("close", () => done("closed"));
  });
}

serverTest("abuse: a SASL guessing burst is throttled and stalls no one", async () => {
  const server = await abuseServer({}, ["probe", "victim"]);
  try {
    const probe = await stallProbe(server.port);
    const answers: string[] = [];
    let next = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < CONNECTIONS; i = next++) {
        const from = `127.0.0.${2 + i % ADDRESSES}`;
        answers.push(await attempt(server.port, from, i % 2 ? `guess${i}` : "victim", `pw${i}`));
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    // A fresh login from an address that did not guess, while the others are still refused.
    const fresh = await attempt(server.port, "127.0.0.22", "probe", "secret");
    const { maxWaitMs, pings } = await probe.stop();

    const count = (re: RegExp) => answers.filter((a) => re.test(a)).length;
    const wrong = count(/<not-authorized/);
    const byAddress = count(/<temporary-auth-failure[\s\S]*address/);
    const byAccount = count(/<temporary-auth-failure[\s\S]*account/);
    console.log(
      `${CONNECTIONS} attempts in ${seconds.toFixed(1)} s: ${wrong} checked, ` +
        `${byAddress} refused per address, ${byAccount} per account; ` +
        `probe: ${pings} pings, longest wait ${maxWaitMs.toFixed(0)} ms`,
    );
    assert.equal(wrong + byAddress + byAccount, CONNECTIONS, "every attempt was answered");
    assert.ok(byAddress > 0, "the per-address limit refused attempts");
    assert.ok(byAccount > 0, "the per-account limit refused attempts");
    // Default limit: 10 per address per minute (plus what refills during the burst).
    assert.ok(wrong <= ADDRESSES * 12, `${wrong} passwords were checked`);
    assert.match(fresh, /<success/);
    assert.ok(maxWaitMs < MAX_STALL_MS, `a user waited ${maxWaitMs.toFixed(0)} ms for the server`);
  } finally {
    await server.stop();
  }
});
