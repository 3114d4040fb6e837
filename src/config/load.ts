// Loads and validates the YAML configuration. Unknown keys, wrong types and out-of-range values
// are errors that name file:line:column and the key, never silently ignored. A YAML syntax error
// is reported once, at its first position, with what to write instead for a known pitfall.
import {
  Document,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  type YAMLError,
} from "yaml";
import { type Config, CONFIG_SPEC, type Spec } from "./schema.ts";
import { prepDomain } from "../jid/precis.ts";
import { parseJid } from "../jid/jid.ts";
import { checkCluster } from "../cluster/config.ts";
import { parseRange } from "../core/address_list.ts";
import { TYPE_PATTERN } from "../upload/names.ts";

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
  }
}

interface Problem {
  line: number;
  col: number;
  text: string;
}

class Validator {
  found: Problem[] = [];
  constructor(readonly file: string, readonly lines: LineCounter, readonly text = "") {}

  /** Problems in file order. */
  get problems(): string[] {
    return this.found.sort((a, b) => a.line - b.line || a.col - b.col)
      .map((p) => `${this.file}:${p.line}:${p.col}: ${p.text}`);
  }

  add(offset: number | undefined, text: string): void {
    const pos = offset === undefined ? { line: 1, col: 1 } : this.lines.linePos(offset);
    this.found.push({ line: pos.line, col: pos.col, text });
  }

  at(node: Node | null | undefined, path: string, msg: string): void {
    this.add(node?.range?.[0], `${path || "(root)"}: ${msg}`);
  }

  value(spec: Spec, node: Node | null | undefined, path: string): unknown {
    if (node === undefined || node === null || (isScalar(node) && node.value === null)) {
      return this.missing(spec, node, path);
    }
    switch (spec.kind) {
      case "string": {
        if (!isScalar(node) || typeof node.value !== "string") {
          return this.at(node, path, `expected a string${this.braceHint(node)}`);
        }
        const v = node.value;
        if (spec.enum && !spec.enum.includes(v)) {
          return this.at(node, path, `must be one of ${spec.enum.join(", ")} (got "${v}")`);
        }
        return v;
      }
      case "int": {
        if (!isScalar(node) || typeof node.value !== "number" || !Number.isInteger(node.value)) {
          return this.at(node, path, "expected an integer");
        }
        if (node.value < spec.min || node.value > spec.max) {
          return this.at(node, path, `must be between ${spec.min} and ${spec.max}`);
        }
        return node.value;
      }
      case "bool":
        if (!isScalar(node) || typeof node.value !== "boolean") {
          return this.at(node, path, "expected true or false");
        }
        return node.value;
      case "list": {
        if (!isSeq(node)) return this.at(node, path, "expected a list");
        if (spec.minItems && node.items.length < spec.minItems) {
          this.at(node, path, `needs at least ${spec.minItems} entry`);
        }
        return node.items.map((item, i) => this.value(spec.of, item as Node, `${path}[${i}]`));
      }
      case "object": {
        if (!isMap(node)) return this.at(node, path, "expected a mapping");
        const out: Record<string, unknown> = {};
        const seen = new Map<string, Node>();
        for (const pair of node.items) {
          const key = isScalar(pair.key) ? String(pair.key.value) : "";
          const keyPath = path ? `${path}.${key}` : key;
          const sub = spec.fields[key];
          if (!sub) {
            const known = Object.keys(spec.fields).join(", ");
            this.at(pair.key as Node, keyPath, `unknown key (known keys: ${known})`);
            continue;
          }
          seen.set(key, pair.value as Node);
        }
        for (const [key, sub] of Object.entries(spec.fields)) {
          const child = seen.get(key);
          const p = path ? `${path}.${key}` : key;
          // A missing key is reported at the mapping that should hold it.
          const v = child === undefined ? this.missing(sub, node, p) : this.value(sub, child, p);
          if (v !== undefined) out[key] = v;
        }
        return out;
      }
    }
  }

  /**
   * A hint for a value such as `{node}` written unquoted: YAML reads it as a mapping whose keys
   * have no values, where a string was meant.
   */
  braceHint(node: Node): string {
    if (!isMap(node) || !node.flow || !node.items.length || !node.range) return "";
    if (node.items.some((p) => !isScalar(p.key) || (p.value !== null && !isNullScalar(p.value)))) {
      return "";
    }
    const written = this.text.slice(node.range[0], node.range[1]).trim();
    return ` (YAML reads ${written} as a mapping: quote the value, "${written}")`;
  }

  missing(spec: Spec, node: Node | null | undefined, path: string): unknown {
    if (spec.kind === "object") {
      return spec.optional ? undefined : this.value(spec, emptyMap(), path);
    }
    if (spec.kind === "list" && spec.default) {
      // Defaults go through the same validation, so their entries get defaults of their own.
      return this.value(spec, new Document(spec.default).contents as Node, path);
    }
    if ("default" in spec && spec.default !== undefined) return structuredClone(spec.default);
    if ((spec.kind === "string" || spec.kind === "int") && spec.optional) return undefined;
    this.at(node, path, "is required");
  }
}

const emptyMap = (): Node => parseDocument("{}").contents as Node;

const isNullScalar = (n: unknown): boolean => isScalar(n) && n.value === null;

/**
 * A plain (unquoted) value with a `{…}` in it, such as `certs/{node}.pem`, after its key if it has
 * one: in YAML its `{` opens a mapping.
 */
const BRACED_VALUE =
  /(?<=^|[\s,[{])(?:([\w.-]+):[ \t]+)?((?:[^\s,[\]{}"'#]*\{[\w-]*\})+[^\s,[\]{}"'#]*)/g;

/**
 * The syntax error to report: the first one only (after it the parser reports every following
 * token again), and for a known pitfall what to write instead. An unquoted `{` inside a value
 * (`cert: certs/{node}.pem`, or `{node}.pem` anywhere) opens a mapping where a string was meant:
 * the error is reported at that `{`, with the value quoted (and any such value after it on the
 * line, which would be the next error).
 */
function syntaxError(text: string, errors: YAMLError[]): { offset: number; text: string } {
  const first = errors.reduce((a, b) => (b.pos[0] < a.pos[0] ? b : a));
  const offset = first.pos[0];
  const lineStart = text.lastIndexOf("\n", offset - 1) + 1;
  const lineEnd = text.indexOf("\n", offset) < 0 ? text.length : text.indexOf("\n", offset);
  const column = offset - lineStart;
  let brace: number | undefined;
  const quoted: string[] = [];
  for (const m of text.slice(lineStart, lineEnd).matchAll(BRACED_VALUE)) {
    const [whole, key, value] = m;
    const start = m.index + whole.length - value.length;
    // `{node}` alone is a valid mapping (its hint comes with "expected a string").
    if (/^\{[\w-]*\}$/.test(value) || column > start + value.length) continue;
    if (brace === undefined) {
      if (column < start) break;
      brace = lineStart + start + value.indexOf("{");
    }
    quoted.push(`${key ? `${key}: ` : ""}"${value}"`);
  }
  if (brace !== undefined) {
    return {
      offset: Math.min(brace, offset),
      text: `invalid YAML: a "{" in an unquoted value opens a mapping: quote the value${
        quoted.length > 1 ? "s" : ""
      } (${quoted.join(", ")})`,
    };
  }
  return { offset, text: `invalid YAML: ${first.message}` };
}

/**
 * Parses and validates configuration text; `file` names it in error messages. `node` (from
 * `parley serve --node`) names this cluster node when the file serves several.
 */
export function parseConfig(text: string, file: string, node?: string): Config {
  const lines = new LineCounter();
  // prettyErrors off: messages without the library's own "at line …, column …:" and excerpt.
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const v = new Validator(file, lines, text);
  if (doc.errors.length) {
    const error = syntaxError(text, doc.errors);
    v.add(error.offset, error.text);
    throw new ConfigError(v.problems);
  }
  const root = doc.contents && !(isScalar(doc.contents) && doc.contents.value === null)
    ? doc.contents as Node
    : emptyMap();
  const cfg = v.value(CONFIG_SPEC, root, "") as Config;
  // The cluster section first: it fills {node} and {node_host} in, which the cross-checks read.
  if (v.found.length === 0) checkCluster(cfg, root, (n, p, m) => v.at(n, p, m), node);
  if (v.found.length === 0) crossCheck(cfg, root, v);
  if (v.found.length) throw new ConfigError(v.problems);
  return cfg;
}

function crossCheck(cfg: Config, root: Node, v: Validator): void {
  // Node lookups for error positions (fall back to the enclosing node).
  const child = (n: Node | undefined, key: string) => isMap(n) ? n.get(key, true) as Node : n;
  const item = (n: Node | undefined, i: number) => isSeq(n) ? n.items[i] as Node : n;
  const seen = new Set<string>();
  /** Prepares a domain this server will answer for; each may be served once. */
  const claim = (domain: string, node: Node | undefined, path: string, twice: string): string => {
    const prepped = prepDomain(domain);
    if (prepped === null) {
      v.at(node, path, "is not a valid domain");
      return domain;
    }
    if (seen.has(prepped)) v.at(node, path, `"${prepped}" ${twice}`);
    seen.add(prepped);
    return prepped;
  };
  const storage = child(root, "storage");
  if (cfg.storage.type === "postgres" && cfg.storage.url === undefined) {
    v.at(storage, "storage.url", "is required when type is postgres");
  } else if (cfg.storage.url !== undefined && !/^postgres(?:ql)?:\/\//.test(cfg.storage.url)) {
    v.at(child(storage, "url"), "storage.url", "expected postgres://user@host/database");
  }
  const hostsNode = child(root, "hosts");
  cfg.hosts.forEach((host, i) => {
    host.domain = claim(host.domain, item(hostsNode, i), `hosts[${i}].domain`, "is listed twice");
  });
  cfg.hosts.forEach((host, i) => {
    const hostNode = item(hostsNode, i);
    const proxy = host.proxy65;
    if (proxy) {
      const node = child(hostNode, "proxy65");
      proxy.domain = claim(proxy.domain, node, `hosts[${i}].proxy65.domain`, "is already served");
      // Behind NAT the proxy listens on one address and must announce another (checked here).
      if (!proxy.host && /^(0\.0\.0\.0|::|\[::\])$/.test(proxy.bind)) {
        v.at(
          node,
          `hosts[${i}].proxy65.host`,
          `is required when bind is the wildcard ${proxy.bind}`,
        );
      }
    }
    if (host.muc) {
      const node = child(hostNode, "muc");
      host.muc.domain = claim(host.muc.domain, node, `hosts[${i}].muc.domain`, "is already served");
      host.muc.admins.forEach((a, k) => {
        const jid = parseJid(a);
        if (!jid || !jid.isBare) v.at(node, `hosts[${i}].muc.admins[${k}]`, "is not a bare JID");
        else host.muc!.admins[k] = jid.bare;
      });
    }
    if (host.upload) {
      const node = child(hostNode, "upload");
      const path = `hosts[${i}].upload`;
      host.upload.domain = claim(host.upload.domain, node, `${path}.domain`, "is already served");
      // Files go up and down over HTTP: slots name the http listener's URL.
      if (!cfg.listeners.some((l) => l.type === "http")) {
        v.at(node, path, "needs a listener of type http (files are uploaded over HTTP)");
      }
      host.upload.allowed_types.forEach((t, k) => {
        const at = item(child(node, "allowed_types"), k);
        if (!TYPE_PATTERN.test(t)) {
          v.at(at, `${path}.allowed_types[${k}]`, "expected type/subtype or type/*");
        }
      });
    }
    const list = child(hostNode, "components");
    host.components.forEach((c, k) => {
      c.domain = claim(
        c.domain,
        item(list, k),
        `hosts[${i}].components[${k}].domain`,
        "is already served",
      );
    });
  });
  const ranges = (entries: string[], node: Node | undefined, path: string) =>
    entries.forEach((entry, i) => {
      try {
        parseRange(entry);
      } catch {
        v.at(item(node, i), `${path}[${i}]`, "is not an IP address or CIDR range");
      }
    });
  ranges(cfg.metrics.allow, child(child(root, "metrics"), "allow"), "metrics.allow");
  cfg.listeners.forEach((l, i) => {
    const node = child(item(child(root, "listeners"), i), "trusted_proxies");
    ranges(l.trusted_proxies, node, `listeners[${i}].trusted_proxies`);
  });
}

export async function loadConfigFile(path: string, node?: string): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError([`${path}: cannot read the configuration: ${readError(e as Error)}`]);
  }
  return parseConfig(text, path, node);
}

/** An OS error in words, without Deno's "(os error 2): readfile '…'" suffix. */
function readError(e: Error): string {
  if (e instanceof Deno.errors.NotFound) return "no such file";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.IsADirectory) return "it is a directory";
  return e.message;
}

/** The configuration used when none is given: every default. */
export function defaultConfig(): Config {
  return parseConfig("", "(defaults)");
}
