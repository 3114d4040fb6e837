import assert from "node:assert/strict";
import { SaxesParser } from "saxes";
import { type StreamHandler, StreamParser } from "../../src/xml/parser.ts";
import type { Attrs, Element } from "../../src/xml/element.ts";
import { x } from "../../src/xml/element.ts";
import { parseStanza } from "../../src/xml/parse_string.ts";

const LIMITS = { maxStanzaSize: 1 << 20, maxDepth: 32 };

function collect() {
  const out = {
    header: undefined as Attrs | undefined,
    ns: "",
    stanzas: [] as Element[],
    errors: [] as string[],
    texts: [] as string[],
    ended: false,
  };
  const h: StreamHandler = {
    streamStart: (a, ns) => {
      out.header = a;
      out.ns = ns ?? "";
    },
    stanza: (e) => out.stanzas.push(e),
    streamEnd: () => out.ended = true,
    streamError: (c, t) => {
      out.errors.push(c);
      out.texts.push(t);
    },
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
  // Characters a parser would normalize (XML §2.11, §3.3.3) are written as references.
  const ws = x("message", { a: "x\ny\tz\r" }, x("body", {}, "l1\rl2\n"));
  assert.equal(String(ws), `<message a="x&#10;y&#9;z&#13;"><body>l1&#13;l2\n</body></message>`);
  const back = parseStanza(String(ws))!;
  assert.equal(back.attrs.a, "x\ny\tz\r");
  assert.equal(back.childText("body"), "l1\rl2\n");
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
    [
      `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><!DOCTYPE x [<!ENTITY e 'y'>]>`,
      "restricted-xml",
    ],
    [
      `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a>&#0;</a>`,
      "not-well-formed",
    ],
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

const STREAM =
  `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`;

Deno.test("parser: a DTD after the header is restricted XML; a forbidden character is not", () => {
  const dtd = collect();
  new StreamParser(dtd.h, LIMITS).write(new TextEncoder().encode(`${STREAM}<!DOCTYPE x>`));
  assert.deepEqual(dtd.out.errors, ["restricted-xml"]);
  assert.deepEqual(dtd.out.texts, ["DTDs are not allowed"]);
  const nul = collect();
  new StreamParser(nul.h, LIMITS).write(new TextEncoder().encode(`${STREAM}<a>&#0;</a>`));
  assert.deepEqual(nul.out.errors, ["not-well-formed"]);
  assert.deepEqual(nul.out.texts, ["character reference to a forbidden character"]);
});

/** Counts saxes' completed open tags (an internal method of saxes 6, looked up on each call). */
function countOpenTags<T>(fn: () => T): number {
  const proto = SaxesParser.prototype as unknown as { openTag(): void };
  const openTag = proto.openTag;
  let n = 0;
  proto.openTag = function (this: unknown) {
    n++;
    openTag.call(this);
  };
  try {
    fn();
  } finally {
    proto.openTag = openTag;
  }
  return n;
}

Deno.test("parser: the depth error stops parsing the chunk at once", () => {
  const bytes = new TextEncoder().encode(STREAM + "<a>".repeat((65536 - STREAM.length) / 3));
  assert.ok(bytes.length <= 65536 && bytes.length > 65530);
  const { out, h } = collect();
  const p = new StreamParser(h, { ...LIMITS, maxDepth: 64 });
  const parsed = countOpenTags(() => p.write(bytes));
  assert.deepEqual(out.errors, ["policy-violation"]);
  // The stream header, 64 allowed levels and the one refused: nothing after it.
  assert.equal(parsed, 66);
  assert.equal(countOpenTags(() => p.write(new TextEncoder().encode("<a>"))), 0);
});

Deno.test("parser: the work per element does not grow with the depth of the stack", () => {
  // With no depth limit, 21,800 nested elements (65 KB): saxes' own prefix resolution walked the
  // whole stack for each element and took seconds; linear work takes a few milliseconds.
  const { out, h } = collect();
  const p = new StreamParser(h, { maxStanzaSize: Infinity, maxDepth: Infinity });
  const bytes = new TextEncoder().encode(
    STREAM + "<a xmlns:p='urn:p' p:x='1'>" + "<a>".repeat(21_800),
  );
  const started = performance.now();
  p.write(bytes);
  const took = performance.now() - started;
  assert.deepEqual(out.errors, []);
  assert.ok(took < 1000, `took ${took.toFixed(0)} ms`);
});

Deno.test("parser: the stanza size limit is exact however the stanza is split", () => {
  const LIMIT = 600;
  const stanza = (size: number) => {
    const open = "<message to='a@example.org'><body>";
    const close = "</body></message>";
    return open + "x".repeat(size - open.length - close.length) + close;
  };
  const fits = stanza(LIMIT);
  const over = stanza(LIMIT + 1);
  assert.equal(fits.length, LIMIT);
  const run = (doc: string, split: number) => {
    const { out, h } = collect();
    const p = new StreamParser(h, { ...LIMITS, maxStanzaSize: LIMIT });
    const bytes = new TextEncoder().encode(doc);
    p.write(bytes.subarray(0, split));
    p.write(bytes.subarray(split));
    return out;
  };
  // Whitespace between stanzas does not count towards the next one.
  const head = STREAM + "\n  ";
  for (let i = 0; i <= head.length + LIMIT + 3; i++) {
    const ok = run(head + fits + "\n " + fits, i);
    assert.deepEqual(ok.errors, [], `a stanza at the limit, split at ${i}`);
    assert.equal(ok.stanzas.length, 2);
    const bad = run(head + over, i);
    assert.deepEqual(bad.errors, ["policy-violation"], `one character over, split at ${i}`);
    assert.equal(bad.stanzas.length, 0);
  }
  // A gap of whitespace alone is bounded too (saxes buffers it).
  assert.deepEqual(run(STREAM + " ".repeat(LIMIT + 1), 0).errors, ["policy-violation"]);
});

Deno.test("parser: a handler's exception reaches the caller, not the peer", () => {
  const errors: string[] = [];
  const p = new StreamParser({
    streamStart() {},
    stanza() {
      throw new Error("bug");
    },
    streamEnd() {},
    streamError: (c) => errors.push(c),
  }, LIMITS);
  assert.throws(() => p.write(new TextEncoder().encode(`${STREAM}<iq/>`)), /bug/);
  assert.deepEqual(errors, []);
  assert.ok(p.failed);
});

const XMLNS = "http://www.w3.org/2000/xmlns/";

Deno.test("stored stanzas parse back exactly, prefix declarations included", () => {
  const { out, h } = collect();
  new StreamParser(h, LIMITS).write(new TextEncoder().encode(
    STREAM + `<message to='b@example.org'><x:foo xmlns:x='urn:a'><x:bar x:attr='1'/></x:foo>` +
      `<baz xmlns='urn:b' xmlns:y='urn:y' y:at='v'><q:n xmlns:q='urn:q'>q:content</q:n></baz>` +
      // An inner declaration hides an outer one only until its element closes.
      `<s xmlns='urn:s' xmlns:p='urn:1'><t xmlns:p='urn:2' p:x='1'/><u p:y='2'/></s></message>`,
  ));
  const live = out.stanzas[0];
  const stored = String(live);
  assert.equal(String(parseStanza(stored)), stored);
  // Every prefix the serialized form uses is declared: a namespace-aware parser accepts it.
  const sax = new SaxesParser({ xmlns: true });
  const attrs: string[] = [];
  sax.on("opentag", (t) => {
    for (const a of Object.values(t.attributes)) {
      if (a.uri !== XMLNS) attrs.push(a.uri + " " + a.local);
    }
  });
  sax.write(`<w xmlns='jabber:client'>${stored}</w>`).close();
  assert.deepEqual(attrs.sort(), [" to", "urn:1 y", "urn:2 x", "urn:a attr", "urn:y at"]);
  // A declaration stays where it was made: a prefix may be used in content (here "q:content").
  assert.ok(stored.includes(`xmlns:q="urn:q"`));
});
