// `parley components`: each component domain's instances (in a cluster, on every node) and the
// traffic each has taken.
import type { Config } from "../config/schema.ts";
import type { ComponentStatus } from "../admin/socket.ts";
import { adminCommand } from "./admin_query.ts";

export function componentsCommand(config: Config, json: boolean): Promise<number> {
  return adminCommand<ComponentStatus[]>(config, { cmd: "components" }, json, (status) => {
    if (status.length === 0) console.log("no external components are configured");
    for (const c of status) {
      console.log(`${c.domain}  balance=${c.balance}  instances=${c.instances.length}`);
      const rows = c.instances.map((i) => [
        i.id,
        i.node,
        i.remote,
        i.connectedAt,
        String(i.received),
        String(i.sent),
        `${(i.share * 100).toFixed(1)} %`,
      ]);
      if (rows.length === 0) continue;
      const head = ["ID", "NODE", "REMOTE", "SINCE", "RECEIVED", "SENT", "SHARE"];
      const widths = head.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k].length)));
      for (const r of [head, ...rows]) {
        console.log("  " + r.map((cell, k) => cell.padEnd(widths[k])).join("  ").trimEnd());
      }
    }
  });
}
