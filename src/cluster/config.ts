// The `cluster:` section beyond what the schema checks: this node's name (from the file or
// `--node`), its own entry in the peer list, `{node}` / `{node_host}` in any string of the
// file, and the links' settings. Kept apart from the schema so a single node never loads it.
import { isMap, isSeq, type Node } from "yaml";
import type { ClusterConfig, Config } from "../config/schema.ts";
import type { MeshOptions } from "./mesh.ts";
import type { ClusterTls } from "./tls.ts";
import { parseDuration } from "../config/duration.ts";

/** Node names: one DNS label in lower case, since the name is the certificate's dNSName. */
export const NODE_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Reports a problem at a YAML node (the nearest one present) under a key path. */
export type Report = (node: Node | undefined, path: string, message: string) => void;

/** "host:port" or "[v6]:port"; undefined when malformed. */
export function parseAddress(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  return m && port >= 1 && port <= 65535 ? { host: m[1] ?? m[2], port } : undefined;
}

/** The YAML node at a key path, or the deepest one on the way. */
function nodeAt(root: Node | undefined, path: (string | number)[]): Node | undefined {
  let n = root;
  for (const key of path) {
    const next = isMap(n)
      ? n.get(key, true) as Node | undefined
      : isSeq(n) && typeof key === "number"
      ? n.items[key] as Node | undefined
      : undefined;
    if (!next) return n;
    n = next;
  }
  return n;
}

/**
 * For commands that only use what every node shares (the store): read the file as its own node,
 * or as the first peer when it names none.
 */
export const ANY_NODE = "*";

/**
 * Completes and checks the cluster section of a schema-valid configuration, in place: applies
 * `nodeOverride` (`parley serve --node`), defaults `listen` to the node's own peer address,
 * replaces `{node}` and `{node_host}` in every string of the configuration, and reports a
 * missing or unknown node name, a peer list without this node, duplicate names or addresses,
 * bad durations, certificate files that do not exist and a store local to one node.
 */
export function checkCluster(
  cfg: Config,
  root: Node | undefined,
  report: Report,
  nodeOverride?: string,
): void {
  const at = (path: (string | number)[], message: string) =>
    report(nodeAt(root, path), path.join(".").replace(/\.(\d+)/g, "[$1]"), message);
  const cluster = cfg.cluster;
  if (!cluster) {
    substitute(cfg, [], (path) => at(path, "{node} needs a cluster section"));
    return;
  }
  // Every node must read what the others wrote: a node-local store cannot serve a cluster.
  if (cfg.storage.type !== "postgres") {
    const type = nodeAt(root, ["storage", "type"]);
    report(
      type === root ? nodeAt(root, ["cluster"]) : type,
      "storage.type",
      `${cfg.storage.type} is local to one node: a cluster needs a shared store (type: postgres)`,
    );
  }
  const node = nodeOverride === ANY_NODE
    ? cluster.node ?? cluster.peers[0]?.node
    : nodeOverride ?? cluster.node;
  if (node === undefined) return at(["cluster", "node"], "is required (or give --node)");
  if (!NODE_NAME.test(node)) return at(["cluster", "node"], `"${node}" is not a node name`);
  const names = new Set<string>();
  const addresses = new Set<string>();
  let nodeHost: string | undefined;
  cluster.peers.forEach((peer, i) => {
    if (!NODE_NAME.test(peer.node)) at(["cluster", "peers", i, "node"], "is not a node name");
    else if (names.has(peer.node)) {
      at(["cluster", "peers", i, "node"], `${peer.node} is listed twice`);
    }
    names.add(peer.node);
    const address = parseAddress(peer.address);
    const key = address && `${address.host.toLowerCase()}:${address.port}`;
    if (!key) at(["cluster", "peers", i, "address"], "expected host:port");
    else if (addresses.has(key)) at(["cluster", "peers", i, "address"], `${key} is listed twice`);
    if (key) addresses.add(key);
    if (peer.node === node) nodeHost = address?.host;
  });
  if (!names.has(node)) return at(["cluster", "peers"], `has no entry for this node (${node})`);
  if (nodeHost === undefined) return;
  cluster.node = node;
  substitute(cfg, [], () => {}, { "{node}": node, "{node_host}": nodeHost });
  cluster.listen ??= cluster.peers.find((p) => p.node === node)!.address;
  if (!parseAddress(cluster.listen)) at(["cluster", "listen"], "expected host:port");
  const heartbeat = parseDuration(cluster.heartbeat);
  const deadAfter = parseDuration(cluster.dead_after);
  if (!heartbeat) at(["cluster", "heartbeat"], "expected a duration such as 1s or 500ms");
  if (deadAfter === undefined) at(["cluster", "dead_after"], "expected a duration such as 5s");
  else if (heartbeat && deadAfter < 2 * heartbeat) {
    at(["cluster", "dead_after"], "must be at least twice the heartbeat");
  }
  for (const key of ["ca", "cert", "key"] as const) {
    const file = cluster.tls[key];
    try {
      Deno.statSync(file);
    } catch {
      at(["cluster", "tls", key], `${file}: no such file`);
    }
  }
}

/** Replaces the placeholders in every string under `value`; `found` hears of each one. */
function substitute(
  value: unknown,
  path: (string | number)[],
  found: (path: (string | number)[]) => void,
  values: Record<string, string> = {},
): void {
  if (typeof value !== "object" || value === null) return;
  const obj = value as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    const v = obj[key];
    const here = [...path, Array.isArray(value) ? Number(key) : key];
    if (typeof v !== "string") substitute(v, here, found, values);
    else if (/\{node(?:_host)?\}/.test(v)) {
      found(here);
      obj[key] = v.replace(/\{node(?:_host)?\}/g, (p) => values[p] ?? p);
    }
  }
}

/** The mesh's settings from a section checked by checkCluster, with the PEM texts read. */
export function meshOptions(cluster: ClusterConfig, tls: ClusterTls): MeshOptions {
  return {
    node: cluster.node!,
    listen: parseAddress(cluster.listen!)!,
    peers: cluster.peers.map((p) => ({ node: p.node, ...parseAddress(p.address)! })),
    tls,
    heartbeatMs: parseDuration(cluster.heartbeat)!,
    deadAfterMs: parseDuration(cluster.dead_after)!,
    invalidInputBackoffMs: parseDuration(cluster.invalid_input_backoff)!,
  };
}
