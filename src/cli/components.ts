// `parley components`: each component domain's instances and the traffic each has taken.
import type { Config } from "../config/schema.ts";
import { adminRequest, type ComponentStatus } from "../admin/socket.ts";

export async function componentsCommand(config: Config, json: boolean): Promise<number> {
  let status: ComponentStatus[];
  try {
    status = await adminRequest(config.data_dir, { cmd: "components" }) as ComponentStatus[];
  } catch (e) {
    console.error(
      `error: cannot reach the server through ${config.data_dir}/admin.sock: ${
        (e as Error).message
      }`,
    );
    return 1;
  }
  if (json) {
    console.log(JSON.stringify(status, null, 2));
    return 0;
  }
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
  return 0;
}
