// Heap a node spends per session record it holds for another node: N records, as they arrive
// from a peer, put in a Directory, measured after full collections. Run with
// --v8-flags=--expose-gc; prints {"records":N,"bytes":…} (bytes per record).
import { SessionRegistry } from "../src/router/sessions.ts";
import { Directory } from "../src/cluster/directory.ts";
import { RECORD, type WireRecord } from "../src/cluster/wire.ts";

const n = Number(Deno.args[0] ?? 10_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");

/** A typical client's initial presence: a priority and entity capabilities (XEP-0115). */
const presence = (jid: string) =>
  `<presence from="${jid}"><priority>1</priority><c xmlns="http://jabber.org/protocol/caps" ` +
  `hash="sha-1" node="https://conversations.im" ver="np8lRhGMlMKONPKGchAfvCkBPaw="/></presence>`;

/** The payloads of RECORD frames, as a peer sends them. */
function frames(): string[] {
  return Array.from({ length: n }, (_, i) => {
    const jid = `user${i}@localhost/device${i}`;
    const r: WireRecord = {
      jid,
      boundAt: Date.now(),
      available: true,
      priority: 1,
      presence: presence(jid),
      roster: true,
      blocklist: false,
      carbons: true,
    };
    return JSON.stringify(r);
  });
}
const heap = () => {
  gc();
  gc();
  return Deno.memoryUsage().heapUsed;
};
const directory = new Directory("n2", new SessionRegistry(), {
  domains: new Set(["localhost"]),
  maxPerNode: n,
}, { linked: () => true, adopt: () => false });
const before = heap();
for (const f of frames()) directory.record("n1", RECORD.codec.decode(f));
const after = heap();
if (directory.count("n1") !== n) throw new Error("records missing");
console.log(JSON.stringify({ records: n, bytes: (after - before) / n }));
