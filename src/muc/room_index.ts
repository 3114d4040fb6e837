// What a service knows of rooms it does not hold in memory: the stored ones (read once at start,
// kept up to date on every save and delete) and, in a cluster, those other nodes run (from their
// announcements). Enough for the service's disco#items and the `max_rooms_per_user` count,
// without reading or loading a room.
import type { RoomState } from "./room.ts";

/** What disco#items and the per-account room count need of a room. */
export interface RoomFacts {
  /** The room's name (muc#roomconfig_roomname), "" when unset. */
  name: string;
  public: boolean;
  /** Listed by disco only once unlocked; stored rooms never are locked. */
  locked: boolean;
  /** The accounts with the owner affiliation. */
  owners: string[];
}

export function storedFacts(state: RoomState): RoomFacts {
  return {
    name: state.config.name,
    public: state.config.public,
    locked: false,
    owners: Object.entries(state.affiliations).flatMap(([bare, aff]) =>
      aff === "owner" ? [bare] : []
    ),
  };
}

/** Rooms by name, with the rooms each account owns. */
export class RoomIndex<T extends RoomFacts = RoomFacts> {
  readonly rooms = new Map<string, T>();
  #owned = new Map<string, Set<string>>();

  has(room: string): boolean {
    return this.rooms.has(room);
  }

  /** Sets a room's facts; false when they were already these. */
  set(room: string, facts: T): boolean {
    const before = this.rooms.get(room);
    if (before && sameFacts(before, facts)) return false;
    this.delete(room);
    this.rooms.set(room, facts);
    for (const bare of facts.owners) {
      let set = this.#owned.get(bare);
      if (!set) this.#owned.set(bare, set = new Set());
      set.add(room);
    }
    return true;
  }

  delete(room: string): boolean {
    const before = this.rooms.get(room);
    if (!before) return false;
    this.rooms.delete(room);
    for (const bare of before.owners) {
      const set = this.#owned.get(bare);
      set?.delete(room);
      if (set?.size === 0) this.#owned.delete(bare);
    }
    return true;
  }

  clear(): void {
    this.rooms.clear();
    this.#owned.clear();
  }

  /** The rooms `bare` owns. */
  owned(bare: string): ReadonlySet<string> {
    return this.#owned.get(bare) ?? NONE;
  }
}

const NONE: ReadonlySet<string> = new Set();

function sameFacts(a: RoomFacts, b: RoomFacts): boolean {
  return a.name === b.name && a.public === b.public && a.locked === b.locked &&
    a.owners.length === b.owners.length && a.owners.every((o, i) => o === b.owners[i]);
}
