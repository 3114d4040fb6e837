// A Multi-User Chat service (XEP-0045), e.g. conference.example.org: the domain handler that
// finds or creates the room a stanza is for, answers discovery, and keeps persistent rooms in
// storage. Rooms reach users only through the router. A cluster (src/cluster/muc_*.ts) plugs in
// through `intercept` (stanzas for rooms another node runs), `fanout`, `observer`, `restore` and
// `unload`; the service itself knows nothing of other nodes.
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
import { type Fanout, Room, type RoomServices, type RoomSnapshot, type RoomState } from "./room.ts";
import { roomFeatures } from "./room_config.ts";
import { adminIq } from "./room_admin.ts";
import { mucBounce } from "./room_stanzas.ts";
import { ownerIq } from "./room_owner.ts";
import type { Affiliation } from "./roles.ts";
import type { RoomStatus } from "../admin/socket.ts";

const log = logger("muc");

/** Where rooms run when a cluster spreads them over its nodes (for `parley rooms`). */
export interface RoomPlacement {
  /** This node's name. */
  readonly node: string;
  /** The node running `room`, or the one that would run it now; null when none may. */
  nodeOf(room: string): string | null;
  /** The rooms of this service that other nodes run, as they last reported them. */
  elsewhere(): RoomStatus[];
}

/** Hears of rooms coming into this service's memory and leaving it. */
export interface RoomObserver {
  added(room: Room): void;
  /** Destroyed, emptied while temporary, hibernated or unloaded. */
  removed(room: Room): void;
}

export class MucService implements DomainHandler, RoomServices {
  readonly jid: Jid;
  readonly rooms = new Map<string, Room>();
  /** Rooms whose state is in storage. */
  #stored = new Set<string>();
  /** How many existing rooms each account owns, for `max_rooms_per_user`. */
  #owned = new Map<string, number>();
  #serviceIq: IqHandlers;
  #roomIq: IqHandlers;
  /** Stored rooms not in memory (hibernated) when rooms are loaded at start. */
  #hibernated = new Set<string>();
  /** Stanzas waiting for a room being read from storage. */
  #loading = new Map<string, [Element, Jid, Jid][]>();
  #sweeper: ReturnType<typeof setInterval> | undefined;
  /** Sees each stanza first; true when it took it (a cluster forwarding to the room's node). */
  intercept: ((stanza: Element, from: Jid, to: Jid) => boolean) | undefined;
  fanout: Fanout | undefined;
  observer: RoomObserver | undefined;
  placement: RoomPlacement | undefined;

  constructor(
    readonly config: MucConfig,
    readonly router: Router,
    readonly store: Store,
    readonly serial: SerialQueues,
    /** Domains whose users may create rooms when `create` is "local". */
    readonly localDomains: Set<string>,
    /** Persistent rooms are read from storage when first needed, not all at start (a cluster). */
    readonly onDemand = false,
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

  /** Brings back the persistent rooms (on demand: none), and starts hibernating idle ones. */
  async start(): Promise<void> {
    if (!this.onDemand) {
      for (const stored of await this.store.loadRooms(this.domain)) this.#loaded(stored);
    }
    const idleMs = this.config.hibernate_after * 1000;
    if (idleMs > 0) {
      this.#sweeper = setInterval(() => this.#hibernate(idleMs), Math.min(idleMs / 2, 30_000));
    }
  }

  #loaded({ room, state }: { room: string; state: string }): void {
    try {
      const r = new Room(this, new Jid(room, this.domain), JSON.parse(state) as RoomState);
      this.#stored.add(room);
      this.#countOwners(r, 1);
      this.#add(r);
    } catch (e) {
      log.error("room {room} could not be loaded: {error}", { room, error: String(e) });
    }
  }

  #add(room: Room): void {
    this.rooms.set(room.name, room);
    this.observer?.added(room);
  }

  /** Persistent rooms nobody has been in for `idleMs` leave memory; storage keeps them. */
  #hibernate(idleMs: number): void {
    const now = Date.now();
    for (const room of [...this.rooms.values()]) {
      if (room.occupantCount > 0 || !this.#stored.has(room.name)) continue;
      if (now - room.lastActive < idleMs) continue;
      this.unload(room);
      if (!this.onDemand) this.#hibernated.add(room.name);
    }
  }

  /** Drops a room from memory, telling nobody and leaving storage alone (hibernation, a merge). */
  unload(room: Room): void {
    if (this.rooms.get(room.name) !== room) return;
    this.rooms.delete(room.name);
    this.#countOwners(room, -1);
    this.observer?.removed(room);
  }

  /** Brings a room back from a snapshot taken on another node (a takeover), occupants included. */
  restore(name: string, snap: RoomSnapshot): Room {
    const room = new Room(this, new Jid(name, this.domain), snap);
    room.restore(snap);
    if (snap.config.persistent && !snap.locked) this.#stored.add(name);
    this.#countOwners(room, 1);
    this.#add(room);
    return room;
  }

  /** Tells every occupant the service is going away (status 332). */
  stop(): void {
    clearInterval(this.#sweeper);
    for (const room of this.rooms.values()) room.shutdown();
  }

  receive(stanza: Element, from: Jid, to: Jid): void {
    if (this.intercept?.(stanza, from, to)) return;
    this.handle(stanza, from, to);
  }

  /** Handles a stanza here, reading its room from storage first if it may be there. */
  handle(stanza: Element, from: Jid, to: Jid): void {
    const name = to.local;
    if (!to.isDomain && !this.rooms.has(name)) {
      const queued = this.#loading.get(name);
      if (queued) return void queued.push([stanza, from, to]);
      if (this.onDemand || this.#hibernated.has(name)) return this.#load(name, [stanza, from, to]);
    }
    this.#dispatch(stanza, from, to);
  }

  /** Reads one room from storage (behind its pending writes), then handles what waited for it. */
  #load(name: string, first: [Element, Jid, Jid]): void {
    const queued = [first];
    this.#loading.set(name, queued);
    this.serial.call(this.#key(name), () => this.store.loadRoom(this.domain, name)).then(
      (state) => {
        this.#loading.delete(name);
        this.#hibernated.delete(name);
        if (state !== null && !this.rooms.has(name)) this.#loaded({ room: name, state });
        for (const [stanza, from, to] of queued) this.#dispatch(stanza, from, to);
      },
      (e) => {
        this.#loading.delete(name);
        log.error("room {room} could not be read: {error}", { room: name, error: String(e) });
        for (const [stanza] of queued) this.router.bounce(stanza, "internal-server-error");
      },
    );
  }

  #dispatch(stanza: Element, from: Jid, to: Jid): void {
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
      this.#add(room);
      room.receive(stanza, from, to);
      // A refused first entry (an invalid nick) leaves no empty room behind.
      if (room.occupantCount === 0) this.removed(room);
      return;
    }
    room.lastActive = Date.now();
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
    this.unload(room);
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
    this.serial.run(this.#key(room), task);
  }

  #key(room: string): string {
    return `muc:${room}@${this.domain}`;
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
