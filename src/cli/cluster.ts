// `parley cluster ca init --out DIR`, `parley cluster cert issue NODE --ca DIR --out DIR` and
// `parley cluster status [--json] [--node NAME]` (read from the running node's admin socket).
import { parseArgs } from "node:util";
import { caInit, certIssue } from "../cluster/pki.ts";
import type { MemberStatus } from "../cluster/node.ts";
import { defaultConfig, loadConfigFile } from "../config/load.ts";
import { componentsCommand } from "./components.ts";
import { adminCommand } from "./admin_query.ts";

export const CLUSTER_USAGE = `Usage:
  parley cluster ca init --out DIR             a new cluster CA: DIR/cluster-ca.pem and .key
  parley cluster cert issue NODE --ca DIR --out DIR
                                               the certificate of node NODE: DIR/NODE.pem and .key
  parley cluster status [--json] [--node NAME] [--config FILE]
                                               each member as the running node NAME sees it`;

/** Runs a `parley cluster …` command (`args` after "cluster"); returns the exit code. */
export async function clusterCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        out: { type: "string" },
        ca: { type: "string" },
        config: { type: "string", short: "c" },
        node: { type: "string" },
        json: { type: "boolean" },
      },
    });
  } catch (e) {
    console.error(`${(e as Error).message}\n${CLUSTER_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const command = positionals.slice(0, 2).join(" ");
  try {
    if (command === "ca init" && positionals.length === 2 && values.out) {
      const files = await caInit(values.out);
      console.log(`cluster CA written: ${files.cert} (give it to every node)`);
      console.log(
        `CA key written: ${files.key} (keep it off the nodes; it issues node certificates)`,
      );
      return 0;
    }
    if (command === "status" && positionals.length === 1) {
      const config = values.config
        ? await loadConfigFile(values.config, values.node)
        : defaultConfig();
      const json = values.json ?? false;
      const code = await adminCommand(config, { cmd: "cluster" }, json, showStatus);
      // Component pools span the cluster: their instances follow, as `parley components` lists
      // them (in JSON each member carries its count of instances).
      if (code !== 0 || json || !config.hosts.some((h) => h.components.length)) return code;
      console.log();
      return await componentsCommand(config, false);
    }
    if (command === "cert issue" && positionals.length === 3 && values.ca && values.out) {
      const files = await certIssue(positionals[2], values.ca, values.out);
      console.log(`certificate of node ${positionals[2]} written: ${files.cert} and ${files.key}`);
      return 0;
    }
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return 1;
  }
  console.error(CLUSTER_USAGE);
  return 2;
}

function showStatus(answer: MemberStatus[] | { error: string }): void {
  if (!Array.isArray(answer)) {
    console.log("this server is not part of a cluster (no cluster: section)");
    return;
  }
  const rows = answer.map((m) => [
    m.node,
    m.state,
    m.address,
    m.rttMs === null ? "-" : `${m.rttMs.toFixed(1)} ms`,
    String(m.queuedBytes),
    String(m.sessions),
    count(m.rooms),
    count(m.occupants),
    count(m.components),
    new Date(m.since).toISOString(),
  ]);
  const head = [
    "NODE",
    "STATE",
    "ADDRESS",
    "RTT",
    "QUEUED",
    "SESSIONS",
    "ROOMS",
    "OCCUPANTS",
    "COMPONENTS",
    "SINCE",
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const r of [head, ...rows]) console.log(r.map((c, i) => c.padEnd(widths[i])).join("  "));
}

/** A count a service added to a member (MUC rooms, component instances), or "-" without it. */
const count = (v: unknown): string => typeof v === "number" ? String(v) : "-";
