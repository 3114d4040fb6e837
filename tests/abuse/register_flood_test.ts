// Abuse: in-band registration (XEP-0077) from many addresses at once. 20 loopback addresses send
// 25 registrations each, all at once, with the limit at 2 accounts per address and period:
// registrations in flight hold their places, so at most 40 accounts are created (without a limit
// all 500 were) and the rest get <resource-constraint/> (type wait), as ejabberd answers; a taken
// name gives its place back. The probe is served throughout.
import assert from "node:assert/strict";
import { abuseServer, MAX_STALL_MS, stallProbe } from "../helpers/abuse.ts";
import { serverTest } from "../helpers/server.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { NS } from "../../src/xml/ns.ts";
import { saslConnection } from "../helpers/sasl_connection.ts";

const ADDRESSES = 20;
const PER_ADDRESS = 2;
const EACH = 25;
const IQ_ANSWER = /<iq[^>]*type=["'](?:result|error)["'][\s\S]*?(?:\/>|<\/iq>)/;

/** One registration on a fresh connection from `localAddress`: the answer, as text. */
function register(port: number, localAddress: string, user: string): Promise<string> {
  const c = saslConnection(port, localAddress);
  let text = "";
  return new Promise((resolve) => {
    const timer = setTimeout(() => done("no answer"), 15_000);
    const done = (answer: string) => {
      clearTimeout(timer);
      c.close();
      resolve(answer);
    };
    c.onText((t) => {
      text += t;
      const m = IQ_ANSWER.exec(text);
      if (m) done(m[0]);
    });
    c.send(
      `<iq type='set' id='r'><query xmlns='${NS.register}'><username>${user}</username>` +
        `<password>pw</password></query></iq>`,
    );
  });
}

serverTest("abuse: registrations are limited per address, in flight included", async () => {
  const server = await abuseServer({
    hosts: [{ domain: "localhost", registration: true }],
    limits: { registrations_per_address: PER_ADDRESS, registration_period: 600 },
  });
  try {
    assert.match(await register(server.port, "127.0.4.3", "known"), /type=["']result/);
    const probe = await stallProbe(server.port);
    const answers = await Promise.all(
      Array.from(
        { length: ADDRESSES * EACH },
        (_, i) => register(server.port, `127.0.3.${2 + i % ADDRESSES}`, `new${i}`),
      ),
    );
    // A name already taken, from a fresh address, does not use up its allowance.
    const taken = await register(server.port, "127.0.4.2", "known");
    const fresh = await register(server.port, "127.0.4.2", "another");
    const { maxWaitMs } = await probe.stop();
    const created = answers.filter((a) => /type=["']result/.test(a)).length;
    const refused = answers.filter((a) => /<resource-constraint/.test(a) && /type=["']wait/.test(a))
      .length;
    console.log(
      `${answers.length} registrations: ${created} created, ${refused} resource-constraint; ` +
        `longest wait ${maxWaitMs.toFixed(0)} ms`,
    );
    assert.equal(created, ADDRESSES * PER_ADDRESS);
    assert.equal(created + refused, answers.length, "every request answered");
    assert.match(taken, /<conflict/);
    assert.match(fresh, /type=["']result/);
    // The accounts made can log in.
    const c = await RawClient.login(server.port, "known", "pw", { starttls: false, mech: "PLAIN" });
    c.close();
    assert.ok(maxWaitMs < MAX_STALL_MS, `a user waited ${maxWaitMs.toFixed(0)} ms for the server`);
  } finally {
    await server.stop();
  }
});
