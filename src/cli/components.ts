// `parley components`: each component domain's instances and the traffic each has taken.
import type { Config } from "../config/schema.ts";
import type { ComponentStatus } from "../admin/socket.ts";
import { adminCommand } from "./admin_query.ts";

export function componentsCommand(config: Config, json: boolean): Promise<number> {
  return adminCommand<ComponentStatus[]>(config, { cmd: "components" }, json, (status) => {
    if (status.length === 0) console.log("no external components are configured");
    for (const c of status) {
      console.log(`${c.domain}  balance=${c.balance}  instances=${c.instances.length}`);
      for (const i of c.instances) {
        console.log(
          `  ${i.id.padEnd(14)} ${
            i.remote.padEnd(22)
          } since ${i.connectedAt}  received ${i.received}  sent ${i.sent}`,
        );
      }
    }
  });
}
