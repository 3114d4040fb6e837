import assert from "node:assert/strict";
import { type StreamHandler, StreamParser } from "../../src/xml/parser.ts";
import type { Attrs, Element } from "../../src/xml/element.ts";
import { x } from "../../src/xml/element.ts";

const LIMITS = { maxStanzaSize: 1 << 20, maxDepth: 32 };

function collect() {
  const out = {
    header: undefined as Attrs | undefined,
    ns: "",
    stanzas: [] as Element[],
    errors: [] as string[],
    ended: false,
  };
  const h: StreamHandler = {
    streamStart: (a, ns) => {
      out.header = a;
      out.ns = ns ?? "";
    },
    stanza: (e) => out.stanzas.push(e),
    streamEnd: () => out.ended = true,
    streamError: (c) => out.errors.push(c),
  };
  return { out, h };
}

const DOC =
  `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0' xml:lang='en'>` +
  `<message to='j@example.org' type='chat'><body>h\u00e9llo &amp; &lt;w\u00f6rld&gt; \u{1F600}</body></message>` +
  `<iq type='get' id='1'><p:query xmlns:p='urn:x' p:attr='v'><p:item/></p:query></iq>` +
  `<presence xml:lang='fr'><status><![CDATA[a<b]]></status></presence></stream:stream>`;

Deno.test("parser: the same result whatever the byte chunking (every split point)", () => {
  const bytes = new TextEncoder().encode(DOC);
  const whole = collect();
  new StreamParser(whole.h, LIMITS).write(bytes);
  assert.equal(whole.out.stanzas.length, 3);
  assert.deepEqual(whole.out.errors, []);
  const expected = whole.out.stanzas.map(String);
  for (let i = 1; i < bytes.length; i++) {
    const { out, h } = collect();
    const p = new StreamParser(h, LIMITS);
    p.write(bytes.subarray(0, i));
    p.write(bytes.subarray(i));
    assert.deepEqual(out.stanzas.map(String), expected, `split at byte ${i}`);
    assert.ok(out.ended);
  }
  // And one byte at a time.
  const { out, h } = collect();
  const p = new StreamParser(h, LIMITS);
  for (const b of bytes) p.write(Uint8Array.of(b));
  assert.deepEqual(out.stanzas.map(String), expected);
});

Deno.test("parser: namespaces are normalized, prefixes resolved, xml:lang kept", () => {
  const { out, h } = collect();
  new StreamParser(h, LIMITS).write(new TextEncoder().encode(DOC));
  assert.equal(out.ns, "jabber:client");
  assert.equal(out.header!.to, "example.org");
  assert.equal(out.header!["xml:lang"], "en");
  const [msg, iq, pres] = out.stanzas;
  assert.equal(msg.attrs.xmlns, undefined);
  assert.equal(msg.childText("body"), "h\u00e9llo & <w\u00f6rld> \u{1F600}");
  const q = iq.child("query")!;
  assert.equal(q.attrs.xmlns, "urn:x");
  assert.equal(q.attrs["p:attr"], "v");
  assert.equal(q.child("item")!.attrs.xmlns, undefined, "same namespace as parent");
  assert.equal(pres.attrs["xml:lang"], "fr");
  assert.equal(pres.childText("status"), "a<b");
});

Deno.test("serializer escapes text and attributes and round-trips through the parser", () => {
  const el = x("message", { to: `a"b'<&>` }, x("body", {}, `<&>"'`));
  assert.equal(
    el.toString(),
    `<message to="a&quot;b&apos;&lt;&amp;&gt;"><body>&lt;&amp;&gt;"'</body></message>`,
  );
  const { out, h } = collect();
  new StreamParser(h, LIMITS).write(new TextEncoder().encode(
    `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>${el}`,
  ));
  assert.equal(out.stanzas[0].attrs.to, `a"b'<&>`);
  assert.equal(out.stanzas[0].childText("body"), `<&>"'`);
});

Deno.test("parser: restricted XML and limits", () => {
  const cases: [string, string, object?][] = [
    [`<!DOCTYPE x><stream:stream/>`, "restricted-xml"],
    [`<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><?pi x?>`, "restricted-xml"],
    [
      `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a>&ent;</a>`,
      "restricted-xml",
    ],
    [`<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a></b>`, "not-well-formed"],
    [`<foo/>`, "invalid-namespace"],
    [
      `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a>${"x".repeat(200)}</a>`,
      "policy-violation",
      { maxStanzaSize: 100 },
    ],
    [
      `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a><b><c><d>`,
      "policy-violation",
      { maxDepth: 3 },
    ],
  ];
  for (const [doc, cond, limits] of cases) {
    const { out, h } = collect();
    new StreamParser(h, { ...LIMITS, ...limits }).write(new TextEncoder().encode(doc));
    assert.deepEqual(out.errors, [cond], doc);
  }
});

Deno.test("parser: reset starts a new stream and ignores the rest of the old chunk", () => {
  const seen: string[] = [];
  const parser: { p?: StreamParser } = {};
  const h: StreamHandler = {
    streamStart: () => seen.push("start"),
    stanza: (e) => {
      seen.push(e.name);
      if (e.name === "starttls") parser.p!.reset();
    },
    streamEnd: () => seen.push("end"),
    streamError: (c) => seen.push("error:" + c),
  };
  const p = parser.p = new StreamParser(h, LIMITS);
  p.write(new TextEncoder().encode(
    `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><starttls/><injected/>`,
  ));
  p.write(
    new TextEncoder().encode(
      `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><iq/>`,
    ),
  );
  assert.deepEqual(seen, ["start", "starttls", "start", "iq"]);
});
