// `parley rooms`: the chat rooms the running server holds, with occupants and main settings; in a
// cluster, every node's rooms, how many rooms and occupants each node runs, and (`--room JID`)
// which node runs one room.
import type { Config } from "../config/schema.ts";
import type { RoomLookup, RoomStatus } from "../admin/socket.ts";
import { adminCommand } from "./admin_query.ts";

export function roomsCommand(config: Config, json: boolean, room?: string): Promise<number> {
  if (room !== undefined) {
    return adminCommand<RoomLookup>(config, { cmd: "rooms", room }, json, (r) => {
      if ("running" in r) console.log(`${r.jid}  not running; would run on ${r.node ?? "no node"}`);
      else console.log(line(r));
    });
  }
  return adminCommand<RoomStatus[]>(config, { cmd: "rooms" }, json, (rooms) => {
    if (rooms.length === 0) console.log("no chat rooms");
    const perNode = new Map<string, { rooms: number; occupants: number }>();
    for (const r of rooms) {
      if (r.node === undefined) continue;
      const n = perNode.get(r.node) ?? { rooms: 0, occupants: 0 };
      perNode.set(r.node, { rooms: n.rooms + 1, occupants: n.occupants + r.occupants });
    }
    for (const [node, n] of [...perNode].sort()) {
      console.log(`node ${node}  rooms=${n.rooms}  occupants=${n.occupants}`);
    }
    for (const r of rooms) console.log(line(r));
  });
}

function line(r: RoomStatus): string {
  const flags = [
    r.persistent ? "persistent" : "temporary",
    r.public ? "public" : "hidden",
    r.membersOnly ? "members-only" : "open",
    r.locked && "locked",
  ].filter(Boolean).join(",");
  const node = r.node === undefined ? "" : `  node=${r.node}`;
  return `${r.jid}  occupants=${r.occupants}  ${flags}${r.name ? `  "${r.name}"` : ""}${node}`;
}
