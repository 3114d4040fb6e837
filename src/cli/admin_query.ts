// Commands that ask the running server over its admin socket: JSON as it comes with --json,
// otherwise the command's own text; a plain error when the server is not there.
import type { Config } from "../config/schema.ts";
import { type AdminCommand, adminRequest } from "../admin/socket.ts";

export async function adminCommand<T>(
  config: Config,
  cmd: AdminCommand,
  json: boolean,
  render: (answer: T) => void,
): Promise<number> {
  let answer: T;
  try {
    answer = await adminRequest(config.data_dir, cmd) as T;
  } catch (e) {
    console.error(
      `error: cannot reach the server through ${config.data_dir}/admin.sock: ${
        (e as Error).message
      }`,
    );
    return 1;
  }
  if (json) console.log(JSON.stringify(answer, null, 2));
  else render(answer);
  return 0;
}
