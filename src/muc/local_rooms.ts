// Multi-User Chat on one node alone (the local RoomDistribution): every room runs here, and a
// room's message goes to each occupant session through the router. A cluster's distribution is
// src/cluster/muc_rooms.ts.
import type { Element } from "../xml/element.ts";
import type { Jid } from "../jid/jid.ts";
import { readdressed } from "../im/delivery.ts";
import type { RoomStatus } from "../admin/socket.ts";
import type { Occupant } from "./occupant.ts";
import type { MucService, RoomDistribution } from "./service.ts";

export class LocalRooms implements RoomDistribution {
  readonly node = null;

  serve(): void {}

  route(muc: MucService, stanza: Element, from: Jid, to: Jid): void {
    muc.handle(stanza, from, to);
  }

  fanout(muc: MucService, stanza: Element, from: Jid, occupants: Iterable<Occupant>): void {
    for (const occ of occupants) {
      for (const s of occ.sessions.values()) {
        muc.router.route(readdressed(stanza, s.jid.full), from, s.jid);
      }
    }
  }

  added(): void {}
  removed(): void {}

  nodeOf(): string | null {
    return null;
  }

  elsewhere(): RoomStatus[] {
    return [];
  }

  ownedElsewhere(): Iterable<string> {
    return [];
  }
}
