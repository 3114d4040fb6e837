// Malformed payloads made from a frame type's valid example, not listed by hand: garbage in place
// of the whole payload, and, part by part (each line; in a JSON part, each value at every depth),
// a missing field, a wrong type, null, a huge array, an invalid JID, an oversized string.
export interface Mutation {
  /** What was changed, for messages. */
  what: string;
  payload: Uint8Array;
}

const encoder = new TextEncoder();
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** A huge array: 100,000 copies of `item`, fewer if that would not fit in a frame. */
function huge(item: Json): Json[] {
  const n = Math.min(100_000, Math.floor(4_000_000 / (JSON.stringify(item).length + 1)));
  return Array.from({ length: n }, () => item);
}

/** Values put in place of a JSON value. */
function replacements(v: Json): [string, Json][] {
  const out: [string, Json][] = [
    ["null", null],
    ["an invalid JID", "@@/"],
    ["a long string", "x".repeat(100_000)],
    ["a negative number", -1],
    ["a fraction", 1.5],
    ["a huge number", 1e300],
    ["true", true],
    ["an object", {}],
    ["a huge array", huge(Array.isArray(v) ? v[0] ?? 0 : v)],
  ];
  return out.filter(([, r]) => JSON.stringify(r) !== JSON.stringify(v));
}

/** Every copy of `root` with one value changed or removed, with its path. */
function jsonMutations(root: Json): [string, Json][] {
  const out: [string, Json][] = [];
  const walk = (v: Json, path: (string | number)[], set: (x: Json | undefined) => Json) => {
    for (const [what, r] of replacements(v)) {
      out.push([`${path.join(".") || "root"}: ${what}`, set(r)]);
    }
    if (Array.isArray(v)) {
      v.forEach((item, i) =>
        walk(item, [...path, i], (x) => {
          const copy = [...v];
          if (x === undefined) copy.splice(i, 1);
          else copy[i] = x;
          return set(copy);
        })
      );
    } else if (v !== null && typeof v === "object") {
      for (const k of Object.keys(v)) {
        const at = (x: Json | undefined) => {
          const copy = { ...v };
          if (x === undefined) delete copy[k];
          else copy[k] = x;
          return set(copy);
        };
        out.push([`${[...path, k].join(".")}: missing`, at(undefined)]);
        walk(v[k], [...path, k], at);
      }
    }
  };
  walk(root, [], (x) => x as Json);
  return out;
}

function tryJson(text: string): Json | undefined {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Replacements of a line that is not JSON. */
const TEXT_LINES: [string, string][] = [
  ["empty", ""],
  ["an invalid JID", "@@/"],
  ["not a number", "abc"],
  ["negative", "-1"],
  ["unclosed XML", "<message><body>"],
  ["not XML", "<<>>"],
  ["two stanzas", "<message/><message/>"],
  ["a long line", "y".repeat(100_000)],
];

export function mutations(example: string): Mutation[] {
  const out: Mutation[] = [];
  const add = (what: string, text: string) => out.push({ what, payload: encoder.encode(text) });
  add("empty payload", "");
  add("not JSON", "{bad");
  add("JSON null", "null");
  add("a JSON array", "[]");
  add("a JSON number", "0");
  add("truncated", example.slice(0, Math.floor(example.length / 2)));
  out.push({ what: "invalid UTF-8", payload: new Uint8Array([0xff, 0xfe, 0x80, 0x0a, 0xc3]) });
  out.push({
    what: "random bytes",
    payload: Uint8Array.from({ length: 64 }, (_, i) => (i * 73 + 11) & 0xff),
  });
  const whole = tryJson(example);
  if (whole !== undefined) {
    for (const [what, v] of jsonMutations(whole)) add(what, JSON.stringify(v));
    return out;
  }
  const lines = example.split("\n");
  lines.forEach((line, i) => {
    const rest = (l: string) => [...lines.slice(0, i), l, ...lines.slice(i + 1)].join("\n");
    const json = tryJson(line);
    if (json !== undefined && typeof json === "object") {
      for (const [what, v] of jsonMutations(json)) {
        add(`line ${i + 1}, ${what}`, rest(JSON.stringify(v)));
      }
    }
    for (const [what, l] of TEXT_LINES) add(`line ${i + 1}: ${what}`, rest(l));
  });
  add("a line missing", lines.slice(0, -1).join("\n"));
  return out;
}
