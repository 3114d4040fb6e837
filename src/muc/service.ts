// A Multi-User Chat service (XEP-0045), e.g. conference.example.org: the domain handler that
// finds or creates the room a stanza is for, answers discovery, and keeps persistent rooms in
// storage. Rooms reach users only through the router.
import type { Element } from "../xml/element.ts";
import { x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { dataForm } from "../xml/data_form.ts";
import { Jid } from "../jid/jid.ts";
import type { DomainHandler, Router } from "../router/router.ts";
import { discoInfoPayload, IqHandlers, type IqRequest } from "../core/iq.ts";
import type { SerialQueues } from "../core/serial.ts";
import type { Store } from "../storage/store.ts";
import type { MucConfig } from "../config/schema.ts";
import { logger } from "../log/logger.ts";
import { Room, type RoomServices, type RoomState } from "./room.ts";
import { roomFeatures } from "./room_config.ts";
import { adminIq } from "./room_admin.ts";
import { mucBounce } from "./room_stanzas.ts";
import { ownerIq } from "./room_owner.ts";
import type { Affiliation } from "./roles.ts";

const log = logger("muc");

export class MucService implements DomainHandler, RoomServices {
  readonly jid: Jid;
  readonly rooms = new Map<string, Room>();
  /** Rooms whose state is in storage. */
  #stored = new Set<string>();
  /** How many existing rooms each account owns, for `max_rooms_per_user`. */
  #owned = new Map<string, number>();
  #serviceIq: IqHandlers;
  #roomIq: IqHandlers;

  constructor(
    readonly config: MucConfig,
    readonly router: Router,
    readonly store: Store,
    readonly serial: SerialQueues,
    /** Domains whose users may create rooms when `create` is "local". */
    readonly localDomains: Set<string>,
  ) {
    this.jid = new Jid("", config.domain);
    const info = discoInfoPayload(
      [{ category: "conference", type: "text", name: config.name }],
      [NS.discoInfo, NS.discoItems, NS.muc],
    );
    this.#serviceIq = new IqHandlers(router, log)
      .onGet(NS.discoInfo, (iq) => iq.reply(info))
      .onGet(NS.discoItems, (iq) => iq.reply(this.#publicRooms()))
      .on(NS.ping, (iq) => iq.reply());
    const inRoom = (fn: (room: Room, iq: IqRequest) => void) => (iq: IqRequest) =>
      fn(this.rooms.get(iq.to.local)!, iq);
    this.#roomIq = new IqHandlers(router, log)
      .onGet(NS.discoInfo, inRoom((room, iq) => iq.reply(roomInfo(room))))
      .onGet(NS.discoItems, (iq) => iq.reply(x("query", { xmlns: NS.discoItems })))
      .on(NS.mucAdmin, inRoom(adminIq))
      .on(NS.mucOwner, inRoom(ownerIq))
      .on(NS.ping, (iq) => iq.reply());
  }

  get domain(): string {
    return this.config.domain;
  }

  /** Brings back the persistent rooms. */
  async start(): Promise<void> {
    for (const { room, state } of await this.store.loadRooms(this.domain)) {
      try {
        const r = new Room(this, new Jid(room, this.domain), JSON.parse(state) as RoomState);
        this.rooms.set(room, r);
        this.#stored.add(room);
        this.#countOwners(r, 1);
      } catch (e) {
        log.error("room {room} could not be loaded: {error}", { room, error: String(e) });
      }
    }
  }

  /** Tells every occupant the service is going away (status 332). */
  stop(): void {
    for (const room of this.rooms.values()) room.shutdown();
  }

  receive(stanza: Element, from: Jid, to: Jid): void {
    if (to.isDomain) {
      if (stanza.name === "iq") this.#serviceIq.dispatch(stanza, from, to);
      else if (stanza.name === "message") this.router.bounce(stanza, "bad-request");
      return;
    }
    let room = this.rooms.get(to.local);
    if (room?.locked && stanza.name === "iq" && room.affiliation(from.bare) !== "owner") {
      room = undefined; // a room being created does not exist for anyone else yet
    }
    if (!room) {
      const join = stanza.name === "presence" && stanza.attrs.type === undefined;
      if (!join) {
        if (stanza.name !== "presence") this.router.bounce(stanza, "item-not-found");
        return;
      }
      if (to.isBare) return mucBounce(this.router, stanza, "jid-malformed", { text: "no nick" });
      if (!this.#mayCreate(from)) {
        return mucBounce(this.router, stanza, "not-allowed", { text: "you may not create rooms" });
      }
      // A quota, not a passing shortage: not-allowed (XEP-0045's refusal of creation), not
      // resource-constraint, whose type wait would invite retries that cannot succeed.
      const max = this.config.max_rooms_per_user;
      if ((this.#owned.get(from.bare) ?? 0) >= max && !this.config.admins.includes(from.bare)) {
        return mucBounce(this.router, stanza, "not-allowed", {
          text: `you own ${max} rooms, the most allowed: destroy one first`,
        });
      }
      room = new Room(this, to.toBare());
      this.rooms.set(to.local, room);
      room.receive(stanza, from, to);
      // A refused first entry (an invalid nick) leaves no empty room behind.
      if (room.occupantCount === 0) this.removed(room);
      return;
    }
    const type = stanza.attrs.type;
    if (stanza.name === "iq" && to.isBare && (type === "get" || type === "set")) {
      this.#roomIq.dispatch(stanza, from, to);
    } else room.receive(stanza, from, to);
  }

  #mayCreate(from: Jid): boolean {
    switch (this.config.create) {
      case "anyone":
        return true;
      case "local":
        return this.localDomains.has(from.domain);
      case "admins":
        return this.config.admins.includes(from.bare);
    }
  }

  #publicRooms(): Element {
    const q = x("query", { xmlns: NS.discoItems });
    for (const room of this.rooms.values()) {
      if (room.config.public && !room.locked) {
        q.append(x("item", { jid: room.jid.bare, name: room.config.name || room.name }));
      }
    }
    return q;
  }

  persist(room: Room): void {
    const name = room.name;
    if (room.config.persistent && !room.locked) {
      const state = JSON.stringify(room.state());
      this.#stored.add(name);
      this.#write(name, () => this.store.saveRoom(this.domain, name, state));
    } else this.#forget(name);
  }

  removed(room: Room): void {
    if (this.rooms.get(room.name) !== room) return;
    this.rooms.delete(room.name);
    this.#countOwners(room, -1);
    this.#forget(room.name);
  }

  affiliationChanged(bare: string, before: Affiliation, after: Affiliation): void {
    if (before !== "owner" && after === "owner") this.#countOwned(bare, 1);
    else if (before === "owner" && after !== "owner") this.#countOwned(bare, -1);
  }

  #countOwners(room: Room, delta: number): void {
    for (const [bare, aff] of room.affiliations()) {
      if (aff === "owner") this.#countOwned(bare, delta);
    }
  }

  #countOwned(bare: string, delta: number): void {
    const n = (this.#owned.get(bare) ?? 0) + delta;
    if (n > 0) this.#owned.set(bare, n);
    else this.#owned.delete(bare);
  }

  /** Deletes a room's stored state, if it has any. */
  #forget(name: string): void {
    if (this.#stored.delete(name)) {
      this.#write(name, () => this.store.deleteRoom(this.domain, name));
    }
  }

  /** Storage writes of one room run in order. */
  #write(room: string, task: () => Promise<void>): void {
    this.serial.run(`muc:${room}@${this.domain}`, task);
  }
}

/** A room's disco#info (XEP-0045 §6.4): identity, features from its configuration, roominfo. */
function roomInfo(room: Room): Element {
  const c = room.config;
  const q = discoInfoPayload(
    [{ category: "conference", type: "text", name: c.name || room.name }],
    [NS.discoInfo, ...roomFeatures(c)],
  );
  q.append(dataForm("result", NS.mucRoomInfo, [
    { var: "muc#roominfo_description", values: [c.description] },
    { var: "muc#roominfo_occupants", values: [String(room.occupantCount)] },
    { var: "muc#roominfo_subject", values: [room.subject.text] },
    { var: "muc#roomconfig_roomname", values: [c.name] },
  ]));
  return q;
}
