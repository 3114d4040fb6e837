// The admin channel: a Unix socket in the data directory (owner-only), one JSON request line in,
// one JSON answer out. `parley components` and `parley rooms` (and later cluster status) read the
// running server here.
import { join } from "node:path";
import type { ComponentPool } from "../component/pool.ts";
import type { MucService } from "../muc/service.ts";
import { logger } from "../log/logger.ts";
import { writeAll } from "../stream/write_all.ts";

const log = logger("admin");

export type AdminCommand = { cmd: "components" } | { cmd: "rooms" };

/** What the admin socket reports on. */
export interface AdminSources {
  components: Map<string, ComponentPool>;
  mucs: Map<string, MucService>;
}

export interface ComponentStatus {
  domain: string;
  balance: string;
  instances: { id: string; remote: string; connectedAt: string; received: number; sent: number }[];
}

export interface RoomStatus {
  jid: string;
  name: string;
  occupants: number;
  persistent: boolean;
  public: boolean;
  membersOnly: boolean;
  locked: boolean;
}

export function adminSocketPath(dataDir: string): string {
  return join(dataDir, "admin.sock");
}

export class AdminSocket {
  #listener: Deno.Listener;

  private constructor(listener: Deno.Listener, readonly path: string) {
    this.#listener = listener;
  }

  static async start(dataDir: string, sources: AdminSources): Promise<AdminSocket> {
    const path = adminSocketPath(dataDir);
    await Deno.mkdir(dataDir, { recursive: true });
    await Deno.remove(path).catch(() => {}); // left over by a crash
    const listener = Deno.listen({ transport: "unix", path });
    await Deno.chmod(path, 0o600);
    const admin = new AdminSocket(listener, path);
    admin.#serve((cmd) => answer(cmd, sources));
    return admin;
  }

  async #serve(handle: (cmd: AdminCommand) => unknown): Promise<void> {
    for await (const conn of this.#listener) {
      (async () => {
        try {
          const buf = new Uint8Array(4096);
          const n = await conn.read(buf);
          const cmd = JSON.parse(new TextDecoder().decode(buf.subarray(0, n ?? 0)));
          await writeAll(conn, new TextEncoder().encode(JSON.stringify(handle(cmd)) + "\n"));
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

function answer(cmd: AdminCommand, sources: AdminSources): unknown {
  switch (cmd.cmd) {
    case "components":
      return components(sources.components);
    case "rooms":
      return rooms(sources.mucs);
    default:
      return { error: `unknown command ${(cmd as { cmd: string }).cmd}` };
  }
}

function rooms(mucs: Map<string, MucService>): RoomStatus[] {
  const out: RoomStatus[] = [];
  for (const muc of mucs.values()) {
    for (const room of muc.rooms.values()) {
      out.push({
        jid: room.jid.bare,
        name: room.config.name,
        occupants: room.occupantCount,
        persistent: room.config.persistent,
        public: room.config.public,
        membersOnly: room.config.membersOnly,
        locked: room.locked,
      });
    }
  }
  return out.sort((a, b) => a.jid < b.jid ? -1 : 1);
}

function components(pools: Map<string, ComponentPool>): ComponentStatus[] {
  return [...pools.values()].map((pool): ComponentStatus => ({
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
