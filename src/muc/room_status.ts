// A room as `parley rooms` shows it (and as a node announces its rooms to the others).
import type { RoomStatus } from "../admin/socket.ts";
import type { MucService } from "./service.ts";
import type { Room } from "./room.ts";

/** The rooms this node runs. */
export function localRoomStatus(muc: MucService): RoomStatus[] {
  return [...muc.rooms.values()].map((room) => statusOfRoom(muc, room));
}

/** One room this node runs, as `parley rooms` shows it. */
export function statusOfRoom(muc: MucService, room: Room): RoomStatus {
  return {
    jid: room.jid.bare,
    name: room.config.name,
    occupants: room.occupantCount,
    persistent: room.config.persistent,
    public: room.config.public,
    membersOnly: room.config.membersOnly,
    locked: room.locked,
    ...muc.distribution.node !== null && { node: muc.distribution.node },
  };
}
