// A room's data between nodes stays within this node's MUC limits, both ways: what it sends is cut
// to the limits its peers check (they run the same configuration), and what a peer sends beyond
// them is invalid input (FrameError: the link closes).
import type { MucService } from "../muc/service.ts";
import type { OccupantData, RoomSnapshot } from "../muc/room.ts";
import { FrameError } from "./codec.ts";
import type { AnnouncedRoom, WireSnapshot } from "./muc_wire.ts";

/** A room's state as this node sends it, and the occupants cut from it. */
export function withinLimits(muc: MucService, snap: RoomSnapshot): [RoomSnapshot, OccupantData[]] {
  const { max_occupants, max_history } = muc.config;
  if (snap.occupants.length <= max_occupants && snap.history.length <= max_history) {
    return [snap, []];
  }
  const occupants = snap.occupants.slice(0, max_occupants);
  const history = max_history === 0 ? [] : snap.history.slice(-max_history);
  return [{ ...snap, occupants, history }, snap.occupants.slice(max_occupants)];
}

/** A room's state from a peer: within this node's limits of its MUC service, or a FrameError. */
export function checkSnapshot(muc: MucService, snapshot: WireSnapshot): void {
  const most = muc.config.max_occupants;
  if (snapshot.occupants.length > most) {
    throw new FrameError(`a room of more than ${most} occupants (max_occupants)`);
  }
  checkHistory(muc, snapshot.history);
}

export function checkHistory(muc: MucService, history: WireSnapshot["history"]): void {
  const most = muc.config.max_history;
  if (history.length > most) throw new FrameError(`more than ${most} messages of history`);
}

/** A room's owners as a peer announces them: at most max_affiliations, or a FrameError. */
export function checkOwners(muc: MucService, room: AnnouncedRoom): void {
  const most = muc.config.max_affiliations;
  if (room.owners.length > most) throw new FrameError(`more than ${most} owners of a room`);
}
