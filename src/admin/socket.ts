// The admin channel: a Unix socket in the data directory (owner-only), one JSON request line in,
// one JSON answer out. `parley components` (and later cluster status) read the running server here.
import { join } from "node:path";
import type { ComponentPool } from "../component/pool.ts";
import { logger } from "../log/logger.ts";

const log = logger("admin");

export type AdminCommand = { cmd: "components" };

export interface ComponentStatus {
  domain: string;
  balance: string;
  instances: { id: string; remote: string; connectedAt: string; received: number; sent: number }[];
}

export function adminSocketPath(dataDir: string): string {
  return join(dataDir, "admin.sock");
}

export class AdminSocket {
  #listener: Deno.Listener;

  private constructor(listener: Deno.Listener, readonly path: string) {
    this.#listener = listener;
  }

  static async start(
    dataDir: string,
    components: Map<string, ComponentPool>,
  ): Promise<AdminSocket> {
    const path = adminSocketPath(dataDir);
    await Deno.mkdir(dataDir, { recursive: true });
    await Deno.remove(path).catch(() => {}); // left over by a crash
    const listener = Deno.listen({ transport: "unix", path });
    await Deno.chmod(path, 0o600);
    const admin = new AdminSocket(listener, path);
    admin.#serve((cmd) => answer(cmd, components));
    return admin;
  }

  async #serve(handle: (cmd: AdminCommand) => unknown): Promise<void> {
    for await (const conn of this.#listener) {
      (async () => {
        try {
          const buf = new Uint8Array(4096);
          const n = await conn.read(buf);
          const cmd = JSON.parse(new TextDecoder().decode(buf.subarray(0, n ?? 0)));
          await conn.write(new TextEncoder().encode(JSON.stringify(handle(cmd)) + "\n"));
        } catch (e) {
          log.debug("admin request failed: {error}", { error: String(e) });
        } finally {
          conn.close();
        }
      })();
    }
  }

  async close(): Promise<void> {
    this.#listener.close();
    await Deno.remove(this.path).catch(() => {});
  }
}

function answer(cmd: AdminCommand, components: Map<string, ComponentPool>): unknown {
  if (cmd.cmd !== "components") return { error: `unknown command ${cmd.cmd}` };
  return [...components.values()].map((pool): ComponentStatus => ({
    domain: pool.domain,
    balance: pool.config.balance,
    instances: [...pool.instances.values()].map((i) => ({
      id: i.id,
      remote: i.remote,
      connectedAt: new Date(i.connectedAt).toISOString(),
      received: i.stats.received,
      sent: i.stats.sent,
    })),
  }));
}

/** Sends one command to a running server. */
export async function adminRequest(dataDir: string, cmd: AdminCommand): Promise<unknown> {
  const conn = await Deno.connect({ transport: "unix", path: adminSocketPath(dataDir) });
  try {
    await conn.write(new TextEncoder().encode(JSON.stringify(cmd)));
    let text = "";
    const buf = new Uint8Array(65536);
    while (!text.endsWith("\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return JSON.parse(text);
  } finally {
    conn.close();
  }
}
