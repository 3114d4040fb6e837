// Every cluster frame type's codec against payloads made from its example (tests/helpers/
// malformed.ts): the example decodes, and each malformed payload is either decoded or refused
// with a FrameError, never anything else a handler could trip on.
import assert from "node:assert/strict";
import { ALL_FRAMES } from "../../src/cluster/frame_registry.ts";
import { FrameError, utf8 } from "../../src/cluster/codec.ts";
import { mutations } from "../helpers/malformed.ts";
import { StanzaDecoder } from "../../src/cluster/wire.ts";
import { encodeSync, SM_SYNC, type SyncEntry } from "../../src/cluster/session_wire.ts";

Deno.test("every frame type's example decodes", () => {
  for (const f of ALL_FRAMES) {
    assert.doesNotThrow(() => f.codec.decode(f.example), `${f.name}: ${f.example}`);
  }
});

Deno.test("malformed payloads of every frame type are refused with a FrameError, or decode", () => {
  let refused = 0, total = 0;
  for (const f of ALL_FRAMES) {
    for (const m of mutations(f.example)) {
      total++;
      try {
        f.codec.decode(utf8(m.payload));
      } catch (e) {
        assert.ok(e instanceof FrameError, `${f.name}, ${m.what}: ${e}`);
        refused++;
        continue;
      }
      // Garbage in place of the whole payload never passes.
      assert.ok(
        !["empty payload", "not JSON", "invalid UTF-8", "random bytes"].includes(
          m.what,
        ),
        `${f.name} took ${m.what}`,
      );
    }
  }
  assert.ok(refused > total / 2, `${refused} of ${total} refused`);
});

Deno.test("a JSON frame's wrong types, missing fields and huge arrays are refused", () => {
  const record = ALL_FRAMES.find((f) => f.name === "record")!;
  const refusedOf = (what: string) =>
    mutations(record.example).filter((m) => m.what.startsWith(what)).every((m) => {
      try {
        record.codec.decode(utf8(m.payload));
        return false;
      } catch (e) {
        return e instanceof FrameError;
      }
    });
  for (const field of ["jid", "boundAt", "available", "priority", "roster"]) {
    assert.ok(refusedOf(`${field}: missing`), `${field} missing`);
    assert.ok(refusedOf(`${field}: null`), `${field} null`);
    assert.ok(refusedOf(`${field}: a huge array`), `${field} huge array`);
  }
  assert.ok(refusedOf("jid: an invalid JID"));
  assert.ok(refusedOf("priority: a huge number"));
});

Deno.test("a peer's stanza decoder takes one whole stanza, and nothing left open spoils the next", () => {
  const d = new StanzaDecoder();
  for (
    const bad of ["<message/><message>", "<message/><a b='>", "<message><body>", "<message/><iq/>"]
  ) {
    assert.equal(d.decode(bad), null, bad);
    assert.equal(d.decode("<message id='ok'/>")?.attrs.id, "ok", `after ${bad}`);
  }
});

Deno.test("sm sync: stanzas travel as they are, by length after the entries' line", () => {
  const stanzas = ["<message><body>a\nb ü 😀</body></message>", "<presence/>", "<iq id='1'/>"];
  const entries = [
    { jid: "a@localhost/r", handled: 1, acked: 0, add: stanzas.slice(0, 2), seen: [] },
    { jid: "b@localhost/r", handled: 0, acked: 0, add: stanzas.slice(2), seen: [["x", 1]] },
  ].map((e) => ({ ...e, detached: false, announced: true })) as SyncEntry[];
  const payload = encodeSync(entries);
  // Through the link as UTF-8 and back.
  const decoded = SM_SYNC.codec.decode(utf8(new TextEncoder().encode(payload)));
  assert.deepEqual(decoded.map((e) => [e.jid.full, e.add]), [
    ["a@localhost/r", stanzas.slice(0, 2)],
    ["b@localhost/r", stanzas.slice(2)],
  ]);
  // Lengths that do not add up to the text, or text that is no stanza, are refused.
  for (
    const bad of [
      payload + "<x/>",
      payload.slice(0, -1),
      payload.replace("<presence/>", "hello world"),
    ]
  ) {
    assert.throws(() => SM_SYNC.codec.decode(bad), FrameError);
  }
});
