// The message archive's pieces without a server: the batched writer (one write per task, retried
// while the store is busy, idempotent), what is archived, the query form, and stanza ids.
import assert from "node:assert/strict";
import { ArchiveWriter } from "../../src/mam/archive_writer.ts";
import { archivedText } from "../../src/mam/archivable.ts";
import { readQuery } from "../../src/mam/query.ts";
import {
  derivedStanzaId,
  newStanzaId,
  stamped,
  stanzaIdBy,
  withoutOurIds,
} from "../../src/mam/stanza_ids.ts";
import { archives } from "../../src/mam/prefs.ts";
import { SqliteStore } from "../../src/storage/sqlite.ts";
import { type ArchiveEntry, type ArchiveStore, StoreBusyError } from "../../src/storage/store.ts";
import { parseStanza } from "../../src/xml/parse_string.ts";
import { parseJid } from "../../src/jid/jid.ts";
import { NS } from "../../src/xml/ns.ts";

const el = (xml: string) => parseStanza(xml)!;
const entry = (id: string, user = "u"): ArchiveEntry => ({
  user,
  host: "h",
  item: { id, at: Date.now(), payload: `<m id='${id}'/>`, text: `text ${id}` },
});

Deno.test("the writer: one write per task, idempotent, retried while the store is busy", async () => {
  const store = new SqliteStore(":memory:");
  const archive = store.archive("mam");
  const calls: number[] = [];
  let busy = 2;
  const counted: ArchiveStore = Object.assign(Object.create(archive), {
    appendMany: (entries: ArchiveEntry[]) => {
      calls.push(entries.length);
      if (busy-- > 0) return Promise.reject(new StoreBusyError("busy"));
      return archive.appendMany(entries);
    },
  });
  const w = new ArchiveWriter(counted);
  for (let i = 0; i < 150; i++) w.add(entry(`a${i}`));
  w.add(entry("a0")); // the same again: one entry
  await w.stored();
  assert.deepEqual(calls, [151, 151, 151], "one batch, tried three times");
  assert.equal((await archive.query("u", "h", { max: 0 })).count, 150);
  // While a write is under way, what comes goes into the next one.
  const first = w.stored();
  w.add(entry("b0"));
  await first;
  w.add(entry("b1"));
  await w.stored();
  assert.equal((await archive.query("u", "h", { max: 0 })).count, 152);
  // `keep` decides at write time.
  w.add({ ...entry("c0"), keep: () => Promise.resolve(false) });
  w.add({ ...entry("c1"), keep: () => Promise.resolve(true) });
  await w.stored();
  assert.deepEqual(
    (await archive.query("u", "h", { ids: ["c0", "c1"], max: 9 })).items.map((i) => i.id),
    [
      "c1",
    ],
  );
  assert.equal(w.dropped, 0);
  await w.stop();
  await store.close();
});

Deno.test("the writer drops, and logs, only what the store refuses for good", async () => {
  const store = new SqliteStore(":memory:");
  const archive = store.archive("mam");
  const refusing: ArchiveStore = Object.assign(Object.create(archive), {
    appendMany: (entries: ArchiveEntry[]) =>
      entries.some((e) => e.item.id === "bad")
        ? Promise.reject(new Error("refused"))
        : archive.appendMany(entries),
  });
  const w = new ArchiveWriter(refusing);
  w.add(entry("good1"));
  w.add(entry("bad"));
  w.add(entry("good2"));
  await w.stored();
  assert.equal(w.dropped, 1);
  assert.equal((await archive.query("u", "h", { max: 0 })).count, 2);
  await store.close();
});

Deno.test("what is archived: bodies and message-like payloads, not states, errors, hints", () => {
  assert.equal(archivedText(el("<message type='chat'><body>hi</body></message>")), "hi");
  assert.equal(archivedText(el("<message><body>n</body></message>")), "n");
  assert.equal(
    archivedText(el(`<message type='chat'><encrypted xmlns='urn:xmpp:omemo:2'/></message>`)),
    "",
  );
  assert.equal(archivedText(el(`<message type='chat'><store xmlns='${NS.hints}'/></message>`)), "");
  for (
    const no of [
      `<message type='chat'><active xmlns='${NS.chatStates}'/></message>`,
      `<message type='error'><body>x</body></message>`,
      `<message type='headline'><body>x</body></message>`,
      `<message type='groupchat'><body>x</body></message>`,
      `<message type='chat'><body>x</body><no-store xmlns='${NS.hints}'/></message>`,
      `<message type='chat'><no-permanent-store xmlns='${NS.hints}'/><body>x</body></message>`,
    ]
  ) assert.equal(archivedText(el(no)), undefined, no);
  assert.equal(archivedText(el("<message type='groupchat'><body>r</body></message>"), true), "r");
});

Deno.test("the query: form fields, result set, caps and bad requests", () => {
  const q = (inner: string) =>
    readQuery(el(`<query xmlns='${NS.mam}' queryid='f'>${inner}</query>`), 250);
  const form = (fields: string) =>
    `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>${NS.mam}</value></field>${fields}</x>`;
  const f = (name: string, ...v: string[]) =>
    `<field var='${name}'>${v.map((x) => `<value>${x}</value>`).join("")}</field>`;
  const ok = q(
    form(
      f("with", "Bob@Example.com/R") + f("start", "2026-01-01T00:00:00Z") + f("ids", "a", "b") +
        f(`{${NS.fulltext}}fulltext`, " hello world ") + f("after-id", "x"),
    ) + `<set xmlns='${NS.rsm}'><max>1000</max><before/></set><flip-page/>`,
  );
  assert.ok(typeof ok !== "string");
  assert.equal(ok.queryId, "f");
  assert.equal(ok.flip, true);
  assert.deepEqual(ok.query, {
    max: 250,
    with: "bob@example.com/R",
    start: Date.parse("2026-01-01T00:00:00Z"),
    ids: ["a", "b"],
    text: "hello world",
    afterId: "x",
    beforeId: undefined,
    before: "",
  });
  assert.equal(typeof q(form(f("withtext", "hi"))), "object", "ejabberd's field");
  assert.equal(typeof q(form(f("end", "2026-01-01T02:00:00.5+02:00"))), "object");
  for (
    const bad of [
      form(f("start", "yesterday")),
      form(f("start", "2026-01-01T00:00:00")),
      form(f("with", "@@")),
      form(f("unknown", "x")),
      `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>other</value></field></x>`,
      `<set xmlns='${NS.rsm}'><max>-1</max></set>`,
      form(f("ids", ...Array.from({ length: 251 }, (_, i) => `i${i}`))),
      form(f(`{${NS.fulltext}}fulltext`, Array.from({ length: 11 }, (_, i) => `w${i}`).join(" "))),
      form(f(`{${NS.fulltext}}fulltext`, "x".repeat(65))),
    ]
  ) assert.equal(typeof q(bad), "string", bad);
});

Deno.test("stanza ids: new ones unique, derived ones stable, ours removed from outside", () => {
  const ids = new Set(Array.from({ length: 1000 }, newStanzaId));
  assert.equal(ids.size, 1000);
  assert.equal(derivedStanzaId("k"), derivedStanzaId("k"));
  assert.notEqual(derivedStanzaId("k"), derivedStanzaId("k2"));
  assert.ok(!derivedStanzaId("session\0id").includes("session"));
  const m = el(
    `<message><body>x</body><stanza-id xmlns='${NS.sid}' by='bob@here' id='forged'/><stanza-id xmlns='${NS.sid}' by='elsewhere.org' id='theirs'/></message>`,
  );
  const clean = withoutOurIds(m, (d) => d === "here");
  assert.equal(stanzaIdBy(clean, "bob@here"), undefined);
  assert.equal(stanzaIdBy(clean, "elsewhere.org"), "theirs");
  const plain = el("<message><body>x</body></message>");
  assert.equal(withoutOurIds(plain, () => true), plain, "no copy when there is nothing to remove");
  assert.equal(stanzaIdBy(stamped(plain, "a@here", "i1"), "a@here"), "i1");
});

Deno.test("preferences: never over always over the default; bare entries match full JIDs", () => {
  const p = { default: "always" as const, always: ["a@x"], never: ["n@x", "a@x/bad"] };
  assert.equal(archives(p, parseJid("z@x")!), true);
  assert.equal(archives(p, parseJid("n@x/r")!), false);
  assert.equal(archives(p, parseJid("a@x/bad")!), false);
  assert.equal(archives(p, parseJid("a@x/good")!), true);
  assert.equal(archives({ ...p, default: "never" }, parseJid("z@x")!), false);
  assert.equal(archives({ ...p, default: "roster" }, parseJid("z@x")!), "roster");
  assert.equal(archives({ ...p, default: "never" }, parseJid("a@x")!), true);
});
