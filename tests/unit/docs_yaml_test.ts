// Every ```yaml (or ```yml) fenced block in README.md and docs/*.md is tried:
//
// - Each block parses with the yaml library as Parley reads configurations (duplicate keys are
//   errors).
// - Each block whose top level is a mapping is a configuration, and passes what
//   `parley config check FILE` checks (src/config/load.ts parseConfig, which runs checkCluster):
//   as any node, then, for a file with a `cluster:` section, as each node of `cluster.peers` in
//   turn. Keys left out take their defaults, so a block such as `storage: { … }` alone is a
//   whole configuration and is checked too.
// - A block whose first line is a comment starting `# fragment` (e.g. `# fragment: the cluster
//   section`) is only parsed: a piece of a configuration that does not stand alone, or YAML that
//   is not Parley's configuration. So is a block whose top level is not a mapping.
//
// The certificate and key files a configuration names (cluster.tls.ca/cert/key,
// hosts[].certificate.cert/key, with {node} and {node_host} filled in for each peer) are made by
// the test in a temporary directory with Parley's own PKI (src/cluster/pki.ts): each path,
// relative or absolute, is rewritten in the block's text to lie under that directory. Problems
// are reported with the document's file name and line (columns count from the fence's indent).
import assert from "node:assert/strict";
import { basename, dirname, join } from "node:path";
import { isMap, isScalar, parseDocument } from "yaml";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { ANY_NODE, NODE_NAME, parseAddress } from "../../src/cluster/config.ts";
import { caInit, certIssue } from "../../src/cluster/pki.ts";

const ROOT = new URL("../../", import.meta.url);

export interface YamlBlock {
  /** The document, relative to the repository. */
  file: string;
  /** Line of the block's first content line in the document (1-based). */
  line: number;
  text: string;
}

/** The ```yaml / ~~~yml fenced blocks of a Markdown text, indented ones (in lists) included. */
export function yamlBlocks(file: string, markdown: string): YamlBlock[] {
  const lines = markdown.split("\n");
  const blocks: YamlBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)(`{3,}|~{3,})\s*([\w-]*)/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, lang] = open;
    const close = new RegExp(`^ *${fence[0]}{${fence.length},}\\s*$`);
    let end = i + 1;
    while (end < lines.length && !close.test(lines[end])) end++;
    if (/^ya?ml$/i.test(lang)) {
      const body = lines.slice(i + 1, end).map((l) =>
        l.startsWith(indent) ? l.slice(indent.length) : l.trimStart()
      );
      blocks.push({ file, line: i + 2, text: body.join("\n") + "\n" });
    }
    i = end;
  }
  return blocks;
}

function documents(): string[] {
  const docs = [...Deno.readDirSync(new URL("docs/", ROOT))]
    .filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e) => `docs/${e.name}`)
    .sort();
  return ["README.md", ...docs];
}

const isFragment = (text: string) => /^\s*#\s*fragment\b/i.test(text);

/** Where a block says what `parley config check` would: the document's file and line. */
const located = (block: YamlBlock, text: string) => "\n".repeat(block.line - 1) + text;

/** The YAML paths of certificate and key files a configuration may name. */
function fileKeys(data: Record<string, unknown>): (string | number)[][] {
  const keys: (string | number)[][] = [["cluster", "tls", "ca"]];
  for (const k of ["cert", "key"]) keys.push(["cluster", "tls", k]);
  const hosts = Array.isArray(data.hosts) ? data.hosts : [];
  hosts.forEach((_, i) => keys.push(["hosts", i, "certificate", "cert"]));
  hosts.forEach((_, i) => keys.push(["hosts", i, "certificate", "key"]));
  return keys;
}

/**
 * The block's text with every certificate path moved under `dir`, and the files made there: the
 * cluster CA, each peer's certificate and key (by its node name), a host's certificate and key.
 */
async function withCertificates(text: string, dir: string): Promise<string> {
  const doc = parseDocument(text, { uniqueKeys: true });
  const data = (doc.toJS() ?? {}) as Record<string, unknown>;
  const edits: { from: number; to: number; value: string }[] = [];
  const named: { path: string; role: "ca" | "cert" | "key" }[] = [];
  for (const key of fileKeys(data)) {
    const node = doc.getIn(key, true);
    if (!isScalar(node) || typeof node.value !== "string" || !node.range) continue;
    const moved = join(dir, node.value);
    edits.push({ from: node.range[0], to: node.range[1], value: JSON.stringify(moved) });
    const last = key[key.length - 1];
    named.push({ path: moved, role: last === "ca" ? "ca" : last === "key" ? "key" : "cert" });
  }
  const peers = ((data.cluster as { peers?: unknown })?.peers ?? []) as {
    node?: unknown;
    address?: unknown;
  }[];
  const nodes = peers.filter((p) => typeof p?.node === "string").map((p) => ({
    name: p.node as string,
    host: typeof p.address === "string" ? parseAddress(p.address)?.host : undefined,
  }));
  const pki = join(dir, ".pki");
  await Deno.mkdir(pki);
  await caInit(pki);
  for (const { path, role } of named) {
    const targets = /\{node(?:_host)?\}/.test(path)
      ? nodes.map((n) => ({
        file: path.replaceAll("{node}", n.name).replaceAll("{node_host}", n.host ?? ""),
        node: n.name,
      }))
      : [{ file: path, node: nodes.find((n) => basename(path).split(".")[0] === n.name)?.name }];
    for (const { file, node } of targets) {
      const name = node && NODE_NAME.test(node) ? node : "host";
      if (role !== "ca") await certIssueOnce(name, pki);
      const source = role === "ca" ? "cluster-ca.pem" : `${name}.${role === "key" ? "key" : "pem"}`;
      await Deno.mkdir(dirname(file), { recursive: true });
      await Deno.copyFile(join(pki, source), file);
    }
  }
  for (const e of edits.sort((a, b) => b.from - a.from)) {
    text = text.slice(0, e.from) + e.value + text.slice(e.to);
  }
  return text;
}

async function certIssueOnce(node: string, pki: string): Promise<void> {
  try {
    await Deno.stat(join(pki, `${node}.pem`));
  } catch {
    await certIssue(node, pki, pki);
  }
}

/** What `parley config check` does with a file (main.ts checkConfig): as any node, then each. */
function configCheck(text: string, file: string): void {
  const cfg = parseConfig(text, file, ANY_NODE);
  const nodes = cfg.cluster ? cfg.cluster.peers.map((p) => p.node) : [];
  for (const n of nodes) if (n !== cfg.cluster?.node) parseConfig(text, file, n);
}

const blocks = documents().flatMap((file) =>
  yamlBlocks(file, Deno.readTextFileSync(new URL(file, ROOT)))
);

for (const block of blocks) {
  const doc = parseDocument(block.text, { uniqueKeys: true });
  const config = !isFragment(block.text) && doc.errors.length === 0 &&
    isMap(doc.contents);
  const kind = config ? "parses and passes config check" : "parses";
  Deno.test(`${block.file}:${block.line}: the yaml block ${kind}`, async () => {
    const problems = (() => {
      try {
        // Read as Parley reads a configuration file, for its one positioned error (with the
        // hint for a known pitfall); only YAML errors count here.
        parseConfig(located(block, block.text), block.file);
        return [];
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        return e.problems.filter((p) => p.includes(": invalid YAML: "));
      }
    })();
    assert.deepEqual(problems, [], `${block.file}:${block.line}: not valid YAML`);
    if (!config) return;
    const dir = await Deno.makeTempDir({ prefix: "parley-docs-yaml-" });
    try {
      const text = await withCertificates(located(block, block.text), dir);
      try {
        configCheck(text, block.file);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        assert.fail(
          `${block.file}:${block.line}: the configuration fails config check (a block that is ` +
            `only part of a configuration starts with the line "# fragment"):\n${e.message}`,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("the three-node walkthrough (docs/clustering.md) is among the configurations checked", () => {
  const walkthrough = blocks.filter((b) =>
    b.file === "docs/clustering.md" && /^cluster:/m.test(b.text) && !isFragment(b.text)
  );
  assert.ok(walkthrough.length >= 1, "no yaml block with a cluster: section in docs/clustering.md");
});

Deno.test("yaml blocks are found in fences of any length, indented, and only yaml ones", () => {
  const md = [
    "Text",
    "```yaml",
    "a: 1",
    "```",
    "```sh",
    "b: 2",
    "```",
    "- item:",
    "  ````yml",
    "  c:",
    "    d: 3",
    "  ```",
    "  e: 4",
    "  ````",
    "~~~ yaml",
    "# fragment",
    "~~~",
  ].join("\n");
  assert.deepEqual(yamlBlocks("x.md", md), [
    { file: "x.md", line: 3, text: "a: 1\n" },
    { file: "x.md", line: 10, text: "c:\n  d: 3\n```\ne: 4\n" },
    { file: "x.md", line: 16, text: "# fragment\n" },
  ]);
  assert.ok(isFragment("# fragment: the cluster section\ncluster: {}\n"));
  assert.ok(!isFragment("data_dir: x # fragment\n"));
});
