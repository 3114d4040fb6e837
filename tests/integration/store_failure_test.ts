// A store that fails (injected failures, or the real SQLite file locked by another connection)
// gets an error answer to each request that needed it, while other users keep chatting; never a
// crash and never silence (Deno fails a test on an unhandled rejection).
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { RawClient } from "../helpers/raw_client.ts";
import { type TestServer, withServer } from "../helpers/server.ts";
import type { Store } from "../../src/storage/store.ts";
import type { Element } from "../../src/xml/element.ts";
import { NS } from "../../src/xml/ns.ts";

/**
 * Makes methods of the server's store (those of every class it is made of) reject on demand, and
 * those of the shapes it hands out (keyval, map, archive, items: failing as that method); `fail(null)`
 * heals it.
 */
function failingStore(store: Store): { fail(except: string[] | null): void } {
  let failing: Set<string> | null = null;
  const names = new Set<string>();
  for (let p = Object.getPrototypeOf(store); p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const m of Object.getOwnPropertyNames(p)) names.add(m);
  }
  const methods = [...names].filter((m) => m !== "constructor" && m !== "close");
  type Method = (...a: unknown[]) => unknown;
  const fails = (m: string, real: Method): Method => (...a) =>
    failing?.has(m) ? Promise.reject(new Error(`injected failure of ${m}`)) : real(...a);
  const target = store as unknown as Record<string, Method>;
  for (const m of methods) {
    const real = target[m].bind(store);
    target[m] = ["keyval", "map", "archive", "items"].includes(m)
      ? (...a) =>
        new Proxy(real(...a) as object, {
          get: (shape, key) => {
            const v = Reflect.get(shape, key);
            return typeof v === "function" ? fails(m, v.bind(shape)) : v;
          },
        })
      : fails(m, real);
  }
  return {
    fail(except) {
      failing = except && new Set(methods.filter((m) => !except.includes(m)));
    },
  };
}

const condition = (e: Element) => e.child("error")?.elements()[0]?.name;

/** Two other users exchange a message: the server still works for them. */
async function othersChat(a: RawClient, b: RawClient, id: string): Promise<void> {
  a.send(`<message to='${b.jid}' type='chat' id='${id}'><body>hi</body></message>`);
  await b.waitFor((e) => e.name === "message" && e.attrs.id === id);
}

/**
 * Each storage-backed request of a logged-in user gets an error answer: `resource-constraint`
 * of type wait when the store is busy (worth retrying), `internal-server-error` of type cancel
 * when it is broken.
 */
async function everyRequestFails(c: RawClient, how: "busy" | "broken"): Promise<void> {
  const [expected, type] = how === "busy"
    ? ["resource-constraint", "wait"]
    : ["internal-server-error", "cancel"];
  const requests: [string, string, string?][] = [
    ["set", `<query xmlns='${NS.roster}'><item jid='zed@example.net'/></query>`],
    ["set", `<block xmlns='${NS.blocking}'><item jid='spam@example.net'/></block>`],
    ["set", `<vCard xmlns='${NS.vcard}'><FN>X</FN></vCard>`],
    ["set", `<query xmlns='${NS.private}'><data xmlns='urn:x'/></query>`],
    [
      "set",
      `<query xmlns='${NS.register}'><username>${
        c.jid.split("@")[0]
      }</username><password>new</password></query>`,
    ],
  ];
  for (const [kind, payload] of requests) {
    const r = await c.iq(kind as "set", payload);
    assert.equal(r.attrs.type, "error", `${payload} was not refused`);
    assert.equal(condition(r), expected, payload);
    assert.equal(r.child("error")!.attrs.type, type, payload);
  }
}

async function chatters(t: TestServer): Promise<[RawClient, RawClient]> {
  await t.addUser("bo");
  await t.addUser("cy");
  const bo = await RawClient.login(t.port, "bo", "secret", { starttls: false, mech: "PLAIN" });
  const cy = await RawClient.login(t.port, "cy", "secret", { starttls: false, mech: "PLAIN" });
  for (const c of [bo, cy]) c.send("<presence/>");
  await othersChat(bo, cy, "warmup");
  return [bo, cy];
}

withServer(
  "a failing store: every request that needs it gets an error answer, others keep chatting",
  { hosts: [{ domain: "localhost", registration: true }] },
  async (t) => {
    const [bo, cy] = await chatters(t);
    await t.addUser("ann");
    const store = failingStore(t.server.store);
    // Everything but the credentials fails: the login goes through, what follows it does not.
    store.fail(["getCredentials"]);
    const ann = await RawClient.login(t.port, "ann", "secret", { starttls: false, mech: "PLAIN" });
    const roster = await ann.iq("get", `<query xmlns='${NS.roster}'/>`);
    assert.equal(condition(roster), "internal-server-error");
    ann.send("<presence/>"); // its broadcast needs the roster: the client is told it failed
    const p = await ann.waitFor((e) => e.name === "presence" && e.attrs.type === "error");
    assert.equal(condition(p), "internal-server-error");
    ann.send("<presence to='bo@localhost' type='subscribe'/>");
    const s = await ann.waitFor((e) => e.name === "presence" && e.attrs.type === "error");
    assert.equal(condition(s), "internal-server-error");
    await everyRequestFails(ann, "broken");
    const vcard = await bo.iq("get", `<vCard xmlns='${NS.vcard}'/>`, "ann@localhost");
    assert.equal(condition(vcard), "internal-server-error");
    // A message to a user whose blocklist cannot be read is refused, not lost in silence.
    bo.send("<message to='dee@localhost' type='chat' id='m1'><body>?</body></message>");
    const bounced = await bo.waitFor((e) => e.attrs.id === "m1");
    assert.equal(bounced.attrs.type, "error");
    await othersChat(bo, cy, "during");
    // Registration on a new stream and a login whose credentials cannot be read are answered.
    const reg = await RawClient.connect(t.port);
    await reg.open();
    const created = await reg.iq(
      "set",
      `<query xmlns='${NS.register}'><username>new</username><password>pw</password></query>`,
    );
    assert.equal(condition(created), "internal-server-error");
    reg.close();
    store.fail([]);
    await assert.rejects(
      RawClient.login(t.port, "ann", "secret", { starttls: false, mech: "PLAIN" }),
    );
    await othersChat(cy, bo, "after-login");
    // Healed: the same requests work again.
    store.fail(null);
    const ok = await ann.iq("get", `<query xmlns='${NS.roster}'/>`);
    assert.equal(ok.attrs.type, "result");
    const set = await ann.iq(
      "set",
      `<query xmlns='${NS.roster}'><item jid='zed@example.net'/></query>`,
    );
    assert.equal(set.attrs.type, "result");
    for (const c of [ann, bo, cy]) c.close();
  },
);

withServer(
  "the SQLite file locked by another connection: writes get wait errors, others keep chatting",
  {},
  async (t) => {
    const [bo, cy] = await chatters(t);
    await t.addUser("ann");
    const ann = await RawClient.login(t.port, "ann", "secret", { starttls: false, mech: "PLAIN" });
    await ann.iq("get", `<query xmlns='${NS.roster}'/>`);
    const locker = new DatabaseSync(join(t.dataDir, "parley.db"));
    locker.exec("BEGIN EXCLUSIVE");
    try {
      await everyRequestFails(ann, "busy");
      await othersChat(bo, cy, "locked");
      // Reading still works in WAL mode: a login goes through.
      const late = await RawClient.login(t.port, "ann", "secret", {
        starttls: false,
        mech: "PLAIN",
        resource: "late",
      });
      late.close();
    } finally {
      locker.exec("ROLLBACK");
      locker.close();
    }
    const set = await ann.iq(
      "set",
      `<query xmlns='${NS.roster}'><item jid='zed@example.net'/></query>`,
    );
    assert.equal(set.attrs.type, "result");
    for (const c of [ann, bo, cy]) c.close();
  },
);
