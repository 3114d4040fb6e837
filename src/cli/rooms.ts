// `parley rooms`: the chat rooms the running server holds, with occupants and main settings.
import type { Config } from "../config/schema.ts";
import type { RoomStatus } from "../admin/socket.ts";
import { adminCommand } from "./admin_query.ts";

export function roomsCommand(config: Config, json: boolean): Promise<number> {
  return adminCommand<RoomStatus[]>(config, { cmd: "rooms" }, json, (rooms) => {
    if (rooms.length === 0) console.log("no chat rooms");
    for (const r of rooms) {
      const flags = [
        r.persistent ? "persistent" : "temporary",
        r.public ? "public" : "hidden",
        r.membersOnly ? "members-only" : "open",
        r.locked && "locked",
      ].filter(Boolean).join(",");
      console.log(`${r.jid}  occupants=${r.occupants}  ${flags}${r.name ? `  "${r.name}"` : ""}`);
    }
  });
}
