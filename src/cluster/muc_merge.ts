// Two copies of one room (made on both sides of a network partition, or by nodes that briefly
// disagreed on who is alive) become one: the copy that stays absorbs the other. Its configuration
// wins; the other's affiliations fill gaps, its history joins in time order, and its occupants
// enter, seeing everyone and seen by everyone, unless another account holds their nick here or the
// room is full (its maxUsers: a merge never makes a room outgrow it): then they are told they left.
import type { Room, RoomSnapshot } from "../muc/room.ts";

/** Why an occupant of a merged copy of a room is not in the room that stays. */
export const FULL = "the room was full when its two copies merged";
const NICK_HELD = "another occupant holds this nick in the room after a network partition";

/** Merges `other`, another copy of `room`, into it. */
export function absorb(room: Room, other: RoomSnapshot): void {
  const known = new Set([...room.affiliations()].map(([bare]) => bare));
  for (const [bare, aff] of Object.entries(other.affiliations)) {
    if (!known.has(bare) && !room.affiliationsFull()) room.setAffiliation(bare, aff);
  }
  let free = room.config.maxUsers - room.occupantCount;
  for (const o of other.occupants) {
    const holder = room.occupantByNick(o.nick);
    const fresh = o.sessions.filter((s) => !room.occupantOf(s.jid));
    if (fresh.length === 0) continue;
    if (holder && holder.bare !== o.bare) {
      room.refuseFromCopy({ ...o, sessions: fresh }, NICK_HELD);
    } else if (holder) room.addSessions(holder, fresh);
    else if (free-- > 0) room.enterFromCopy({ ...o, sessions: fresh });
    else room.refuseFromCopy({ ...o, sessions: fresh }, FULL);
  }
  room.history.restore(other.history);
  room.svc.persist(room);
}
