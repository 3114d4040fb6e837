// The admin channel: a Unix socket in the data directory (owner-only), one JSON request line in,
// one JSON answer out. `parley components`, `parley rooms` and `parley cluster status` read the
// running server here; the answers come from the services' plug-ins (src/server/services.ts) and
// the cluster node.
import { join } from "node:path";
import { logger } from "../log/logger.ts";
import { writeAll } from "../stream/write_all.ts";
import { acceptLoop } from "../stream/accept_loop.ts";

const log = logger("admin");

export type AdminCommand =
  | { cmd: "components" }
  | { cmd: "rooms"; room?: string }
  | { cmd: "cluster" };

/** The answer to each command, by command name. */
export type AdminHandlers = Record<string, (cmd: AdminCommand) => unknown>;

export interface ComponentStatus {
  domain: string;
  balance: string;
  instances: {
    id: string;
    /** The node the instance is connected to. */
    node: string;
    remote: string;
    connectedAt: string;
    received: number;
    sent: number;
    /** Its share of the keys, 0–1. */
    share: number;
  }[];
}

export interface RoomStatus {
  jid: string;
  name: string;
  occupants: number;
  persistent: boolean;
  public: boolean;
  membersOnly: boolean;
  locked: boolean;
  /** In a cluster: the node that runs the room. */
  node?: string;
}

/** `parley rooms --room JID`: a room, or where it would run when it is not running. */
export type RoomLookup = RoomStatus | { jid: string; node: string | null; running: false };

export function adminSocketPath(dataDir: string): string {
  return join(dataDir, "admin.sock");
}

export class AdminSocket {
  #listener: Deno.Listener;

  private constructor(listener: Deno.Listener, readonly path: string) {
    this.#listener = listener;
  }

  static async start(dataDir: string, handlers: AdminHandlers): Promise<AdminSocket> {
    const path = adminSocketPath(dataDir);
    await Deno.mkdir(dataDir, { recursive: true });
    await Deno.remove(path).catch(() => {}); // left over by a crash
    const listener = Deno.listen({ transport: "unix", path });
    await Deno.chmod(path, 0o600);
    const admin = new AdminSocket(listener, path);
    admin.#serve((cmd) =>
      Object.hasOwn(handlers, cmd.cmd)
        ? handlers[cmd.cmd](cmd)
        : { error: `unknown command ${cmd.cmd}` }
    );
    return admin;
  }

  #serve(handle: (cmd: AdminCommand) => unknown): void {
    void acceptLoop(this.#listener, log, async (conn) => {
      try {
        const buf = new Uint8Array(4096);
        const n = await conn.read(buf);
        const cmd = JSON.parse(new TextDecoder().decode(buf.subarray(0, n ?? 0)));
        // An answer may take a round trip to the cluster's other nodes.
        const answer = await handle(cmd);
        await writeAll(conn, new TextEncoder().encode(JSON.stringify(answer) + "\n"));
      } catch (e) {
        log.debug("admin request failed: {error}", { error: String(e) });
      } finally {
        conn.close();
      }
    });
  }

  async close(): Promise<void> {
    this.#listener.close();
    await Deno.remove(this.path).catch(() => {});
  }
}

/** Sends one command to a running server. */
export async function adminRequest(dataDir: string, cmd: AdminCommand): Promise<unknown> {
  const conn = await Deno.connect({ transport: "unix", path: adminSocketPath(dataDir) });
  try {
    await writeAll(conn, new TextEncoder().encode(JSON.stringify(cmd)));
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
