// docs/configuration.md documents every key of the configuration schema (CONFIG_SPEC), and the
// operator documents link only to what exists.
//
// Notation of a key: its dotted path from the top of the file, with `[]` for any entry of a list
// (`cluster.max_records_per_peer`, `hosts[].muc.max_occupants`, `cluster.peers[].node`). Every
// mapping and list is a key too (`hosts`, `hosts[].muc`, `cluster.tls`). A key is documented by a
// table row of docs/configuration.md whose first cell is the key in backticks.
//
// Links: every `](path)` and `](path#anchor)` in README.md and docs/*.md (outside fenced code)
// that is not a URL must name an existing file or directory, relative to the document; an anchor
// into a Markdown file (or `](#anchor)` into the document itself) must be the GitHub slug of one
// of its headings.
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { CONFIG_SPEC, type Spec } from "../../src/config/schema.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const REFERENCE = "docs/configuration.md";

/** Every key of a schema, by its dotted path (`[]` for a list's entries), in schema order. */
export function schemaKeys(spec: Spec, path = ""): string[] {
  const keys: string[] = path ? [path] : [];
  if (spec.kind === "object") {
    for (const [name, field] of Object.entries(spec.fields)) {
      keys.push(...schemaKeys(field, path ? `${path}.${name}` : name));
    }
  } else if (spec.kind === "list" && spec.of.kind === "object") {
    // The entries' own keys, without a key for the entry itself.
    keys.push(...schemaKeys(spec.of, `${path}[]`).slice(1));
  }
  return keys;
}

/** The keys a configuration reference documents: the first cells of its table rows. */
export function documentedKeys(markdown: string): string[] {
  return withoutFences(markdown).split("\n").flatMap((line) => {
    const m = /^\|\s*`([^`]+)`\s*\|/.exec(line);
    return m ? [m[1]] : [];
  });
}

/** The text with fenced code blocks blanked (their lines kept, so line numbers stay). */
function withoutFences(markdown: string): string {
  const lines = markdown.split("\n");
  let fence: RegExp | undefined;
  return lines.map((line) => {
    if (fence) {
      if (fence.test(line)) fence = undefined;
      return "";
    }
    const open = /^ *(`{3,}|~{3,})/.exec(line);
    if (open) {
      fence = new RegExp(`^ *${open[1][0]}{${open[1].length},}\\s*$`);
      return "";
    }
    return line;
  }).join("\n");
}

/** GitHub's anchor for a heading's text: lower case, punctuation dropped, spaces to hyphens. */
export function slug(heading: string): string {
  const text = heading.replace(/`/g, "").replace(/\*\*|__/g, "")
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1");
  return text.trim().toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "").replace(/ /g, "-");
}

/** The anchors of a Markdown document's headings (a repeated one gets -1, -2, … as on GitHub). */
export function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of withoutFences(markdown).split("\n")) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = slug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** The relative link targets of a Markdown text, with their lines. */
export function relativeLinks(markdown: string): { line: number; target: string }[] {
  const links: { line: number; target: string }[] = [];
  withoutFences(markdown).split("\n").forEach((text, i) => {
    for (const m of text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      const target = m[1].replace(/^<|>$/g, "");
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, …
      links.push({ line: i + 1, target });
    }
  });
  return links;
}

function documents(): string[] {
  const docs = [...Deno.readDirSync(join(ROOT, "docs"))]
    .filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e) => `docs/${e.name}`)
    .sort();
  return ["README.md", ...docs];
}

Deno.test("docs/configuration.md documents every key of CONFIG_SPEC, and no other", () => {
  const schema = schemaKeys(CONFIG_SPEC);
  const documented = documentedKeys(Deno.readTextFileSync(join(ROOT, REFERENCE)));
  const missing = schema.filter((k) => !documented.includes(k));
  const stale = documented.filter((k) => !schema.includes(k));
  const twice = documented.filter((k, i) => documented.indexOf(k) !== i);
  assert.deepEqual(missing, [], `keys of src/config/schema.ts missing from ${REFERENCE}`);
  assert.deepEqual(stale, [], `keys in ${REFERENCE} that src/config/schema.ts does not have`);
  assert.deepEqual(twice, [], `keys documented more than once in ${REFERENCE}`);
});

Deno.test("schema keys are named by dotted paths with [] for list entries", () => {
  const spec: Spec = {
    kind: "object",
    fields: {
      a: { kind: "int", default: 1, min: 0, max: 2 },
      l: {
        kind: "list",
        of: { kind: "object", fields: { b: { kind: "bool", default: false } } },
      },
      s: { kind: "list", of: { kind: "string" }, default: [] },
      o: { kind: "object", optional: true, fields: { c: { kind: "string" } } },
    },
  };
  assert.deepEqual(schemaKeys(spec), ["a", "l", "l[].b", "s", "o", "o.c"]);
  const keys = schemaKeys(CONFIG_SPEC);
  for (
    const k of ["cluster.max_records_per_peer", "hosts[].muc.max_occupants", "cluster.peers[].node"]
  ) {
    assert.ok(keys.includes(k), k);
  }
  assert.deepEqual(
    documentedKeys("| key |\n| --- |\n| `a.b` | x |\n```\n| `c` | y |\n```\n"),
    ["a.b"],
  );
});

Deno.test("every relative link in README.md and docs/*.md points at an existing file and heading", () => {
  const broken: string[] = [];
  for (const doc of documents()) {
    const markdown = Deno.readTextFileSync(join(ROOT, doc));
    for (const { line, target } of relativeLinks(markdown)) {
      const [path, anchor] = target.split("#", 2);
      const file = path
        ? normalize(join(dirname(join(ROOT, doc)), decodeURI(path)))
        : join(ROOT, doc);
      if (!file.startsWith(ROOT) || !existsSync(file)) {
        broken.push(`${doc}:${line}: ${target}: no such file`);
        continue;
      }
      if (anchor === undefined || !file.endsWith(".md") || statSync(file).isDirectory()) continue;
      if (!anchors(Deno.readTextFileSync(file)).has(anchor)) {
        broken.push(`${doc}:${line}: ${target}: no such heading`);
      }
    }
  }
  assert.deepEqual(broken, []);
});

Deno.test("anchors follow GitHub's slugs, and links are found outside code only", () => {
  assert.equal(slug("Streams (RFC 6120)"), "streams-rfc-6120");
  assert.equal(slug("`hosts[].muc`"), "hostsmuc");
  assert.equal(slug("Libraries, and why"), "libraries-and-why");
  assert.equal(slug("What it implements"), "what-it-implements");
  assert.deepEqual([...anchors("# A\n## A\n```\n# B\n```\n### C: d\n")], ["a", "a-1", "c-d"]);
  assert.deepEqual(
    relativeLinks("[a](x.md#y) [b](https://e.org) [c](#z)\n```\n[d](no.md)\n```\n"),
    [{ line: 1, target: "x.md#y" }, { line: 1, target: "#z" }],
  );
});
