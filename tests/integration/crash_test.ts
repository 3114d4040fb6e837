// A kill -9 while clients write concurrently loses no acknowledged write: `parley serve` runs as
// its own process, is SIGKILLed mid-stream and restarted on the same data directory, and every
// write the clients saw acknowledged (an iq result) is there.
import assert from "node:assert/strict";
import { join } from "node:path";
import { abuseServer } from "../helpers/abuse.ts";
import { serveProcess } from "../helpers/process.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { serverTest } from "../helpers/server.ts";
import { NS } from "../../src/xml/ns.ts";

const USERS = ["w0", "w1", "w2", "w3"];
const KILL_AFTER_ACKS = 150;
const PRIVATE_KEYS = 3;

/** The last acknowledged write of each kind per user (writes of one client are sequential). */
interface Acked {
  roster: Set<string>;
  vcard: number;
  private: number[];
}

const login = (port: number, user: string) =>
  RawClient.login(port, user, "secret", { starttls: false, mech: "PLAIN" });

/** Writes roster items, vCards and private XML in turn until the connection dies. */
async function writer(c: RawClient, acked: Acked, count: () => void): Promise<void> {
  for (let i = 0; !c.closed; i++) {
    try {
      const kind = i % 3;
      const r = kind === 0
        ? await c.iq("set", `<query xmlns='${NS.roster}'><item jid='c${i}@example.net'/></query>`)
        : kind === 1
        ? await c.iq("set", `<vCard xmlns='${NS.vcard}'><FN>${i}</FN></vCard>`)
        : await c.iq(
          "set",
          `<query xmlns='${NS.private}'><n xmlns='urn:crash:${i % PRIVATE_KEYS}'>${i}</n></query>`,
        );
      assert.equal(r.attrs.type, "result");
      if (kind === 0) acked.roster.add(`c${i}@example.net`);
      else if (kind === 1) acked.vcard = i;
      else acked.private[i % PRIVATE_KEYS] = i;
      count();
    } catch {
      return; // the server is gone: what was not acknowledged may or may not be there
    }
  }
}

serverTest("kill -9 during concurrent writes loses no acknowledged write", async () => {
  const first = await abuseServer({}, USERS);
  const cleanup: (() => Promise<unknown>)[] = [
    () => Deno.remove(first.dataDir, { recursive: true }),
  ];
  try {
    const acked = new Map<string, Acked>(USERS.map((u) => [u, {
      roster: new Set(),
      vcard: -1,
      private: Array(PRIVATE_KEYS).fill(-1),
    }]));
    const clients = await Promise.all(USERS.map((u) => login(first.port, u)));
    let total = 0;
    const enough = Promise.withResolvers<void>();
    const writers = clients.map((c, n) =>
      writer(c, acked.get(USERS[n])!, () => {
        if (++total === KILL_AFTER_ACKS) enough.resolve();
      })
    );
    const timer = setTimeout(() => enough.reject(new Error(`only ${total} acks in time`)), 20_000);
    await enough.promise.finally(() => clearTimeout(timer));
    first.child.kill("SIGKILL");
    await first.exited;
    await Promise.all(writers);
    for (const c of clients) c.close();

    const second = await serveProcess(join(first.dataDir, "parley.yaml"));
    cleanup.unshift(async () => {
      second.child.kill("SIGTERM");
      await second.exited;
      await second.logsDone;
    });
    for (const user of USERS) {
      const want = acked.get(user)!;
      const c = await login(second.ports[0], user);
      const roster = await c.iq("get", `<query xmlns='${NS.roster}'/>`);
      const have = new Set(roster.child("query")!.elements("item").map((i) => i.attrs.jid!));
      for (const jid of want.roster) assert.ok(have.has(jid), `${user} lost roster item ${jid}`);
      // A write the kill cut off after its commit may be newer than the last acknowledged one.
      const vcard = await c.iq("get", `<vCard xmlns='${NS.vcard}'/>`);
      assert.ok(Number(vcard.child("vCard")!.childText("FN") ?? -1) >= want.vcard, `${user} vCard`);
      for (let k = 0; k < PRIVATE_KEYS; k++) {
        const p = await c.iq(
          "get",
          `<query xmlns='${NS.private}'><n xmlns='urn:crash:${k}'/></query>`,
        );
        const value = p.child("query")!.child("n")!.text();
        assert.ok(Number(value || -1) >= want.private[k], `${user} private ${k}: ${value}`);
      }
      c.close();
    }
  } finally {
    for (const step of cleanup) await step().catch(() => {});
  }
});
