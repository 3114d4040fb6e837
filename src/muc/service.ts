// A Multi-User Chat service (XEP-0045), e.g. conference.example.org: the domain handler that
// finds or creates the room a stanza is for, answers discovery, and keeps persistent rooms in
// storage. Rooms reach users only through the router. The service is spread over nodes through
// the RoomDistribution it is given (src/core/distribution.ts): alone, LocalRooms; in a cluster,
// src/cluster/muc_rooms.ts, which uses `handle`, `restore` and `unload`. It never learns which.
import type { Element } from "../xml/element.ts";
import { x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { dataForm } from "../xml/data_form.ts";
import { Jid } from "../jid/jid.ts";
import type { DomainHandler, Router } from "../router/router.ts";
import { discoInfoPayload, IqHandlers, type IqRequest } from "../core/iq.ts";
import type { SerialQueues } from "../core/serial.ts";
import { type MapStore, type Store, STORES } from "../storage/store.ts";
import type { SharedCaches } from "../core/caches.ts";
import { failureError, logFailure } from "../core/failure.ts";
import type { MucConfig } from "../config/schema.ts";
import { logger } from "../log/logger.ts";
import { Room, type RoomServices, type RoomSnapshot, type RoomState } from "./room.ts";
import { roomFeatures } from "./room_config.ts";
import { adminIq } from "./room_admin.ts";
import { mucBounce } from "./room_stanzas.ts";
import { ownerIq } from "./room_owner.ts";
import type { RoomStatus } from "../admin/socket.ts";
import type { Distribution } from "../core/distribution.ts";
import type { Occupant } from "./occupant.ts";
import { type RoomFacts, RoomIndex, storedFacts } from "./room_index.ts";
import { type ListedRoom, roomItems } from "./disco_items.ts";
import type { RoomArchive } from "../mam/room_archive.ts";
import { occupantId } from "./occupant_id.ts";
import { archiveIq, moderateIq } from "./room_archive_iq.ts";

const log = logger("muc");

/** How Multi-User Chat is spread over nodes: where a room runs, how its stanzas reach it. */
export interface RoomDistribution extends Distribution<MucService> {
  /** This node's name in a cluster (shown beside each room it runs), null alone. */
  readonly node: string | null;
  /** Takes a stanza for a room: handled here (`muc.handle`), or where the room runs. */
  route(muc: MucService, stanza: Element, from: Jid, to: Jid): void;
  /** Sends one stanza of a room to every session of `occupants`. */
  fanout(muc: MucService, stanza: Element, from: Jid, occupants: Iterable<Occupant>): void;
  /** A room came into `muc`'s memory. */
  added(muc: MucService, room: Room): void;
  /** A room left it: destroyed, emptied while temporary, hibernated or unloaded. */
  removed(muc: MucService, room: Room): void;
  /** The node running `room`, or the one that would run it now; null when none may (or alone). */
  nodeOf(muc: MucService, room: string): string | null;
  /** The rooms of `muc` that other nodes run, as they last reported them. */
  elsewhere(muc: MucService): RoomStatus[];
  /** The names of the rooms of `muc` that other nodes run and `bare` owns. */
  ownedElsewhere(muc: MucService, bare: string): Iterable<string>;
}

export class MucService implements DomainHandler, RoomServices {
  readonly jid: Jid;
  readonly rooms = new Map<string, Room>();
  /**
   * Rooms whose state is in storage, read once at start and kept up to date on each save and
   * delete (here, or on another node through a cache invalidation): a stanza for a room neither
   * running nor in it is answered without reading storage.
   */
  #stored = new RoomIndex();
  /** The rooms in memory, for `max_rooms_per_user`. */
  #live = new RoomIndex();
  /** A full re-read of the stored rooms is under way; `again` when another was asked meanwhile. */
  #reindexing: { again: boolean } | undefined;
  /** Persistent rooms' state: owner (user "", host this service), key the room's name. */
  #storage: MapStore<RoomState>;
  #serviceIq: IqHandlers;
  #roomIq: IqHandlers;
  /** Stanzas waiting for a room being read from storage. */
  #loading = new Map<string, [Element, Jid, Jid][]>();
  #sweeper: ReturnType<typeof setInterval> | undefined;
  readonly #secret: Uint8Array;
  readonly archive: RoomArchive | undefined;

  constructor(
    readonly config: MucConfig,
    readonly router: Router,
    readonly store: Store,
    readonly serial: SerialQueues,
    /** Domains whose users may create rooms when `create` is "local". */
    readonly localDomains: Set<string>,
    readonly distribution: RoomDistribution,
    /** Stored-room changes made by other nodes of a cluster arrive as invalidations. */
    readonly caches?: SharedCaches,
    /**
     * The server's secret, behind occupant ids (the same on every node: a random one makes ids
     * that last only as long as this process), and the rooms' archive when rooms archive.
     */
    extras: { secret?: Uint8Array; archive?: RoomArchive } = {},
  ) {
    this.#secret = extras.secret ?? crypto.getRandomValues(new Uint8Array(32));
    this.archive = extras.archive;
    this.jid = new Jid("", config.domain);
    this.#storage = store.map<RoomState>(STORES.rooms);
    distribution.serve(this);
    const info = discoInfoPayload(
      [{ category: "conference", type: "text", name: config.name }],
      [NS.discoInfo, NS.discoItems, NS.muc],
    );
    this.#serviceIq = new IqHandlers(router, log)
      .onGet(NS.discoInfo, (iq) => iq.reply(info))
      .onGet(NS.discoItems, (iq) => iq.reply(roomItems(this.#publicRooms(), iq.payload)))
      .on(NS.ping, (iq) => iq.reply());
    const inRoom = (fn: (room: Room, iq: IqRequest) => void) => (iq: IqRequest) =>
      fn(this.rooms.get(iq.to.local)!, iq);
    this.#roomIq = new IqHandlers(router, log)
      .onGet(NS.discoInfo, inRoom((room, iq) => iq.reply(roomInfo(room))))
      .onGet(NS.discoItems, (iq) => iq.reply(x("query", { xmlns: NS.discoItems })))
      .on(NS.mucAdmin, inRoom(adminIq))
      .on(NS.mucOwner, inRoom(ownerIq))
      .on(NS.mam, inRoom(archiveIq))
      .on(NS.moderate, inRoom(moderateIq))
      .on(NS.ping, (iq) => iq.reply());
  }

  get domain(): string {
    return this.config.domain;
  }

  /**
   * Indexes what is stored of each persistent room (a room is read again and brought back when
   * first needed, by the node that runs it), and starts hibernating idle ones.
   */
  async start(): Promise<void> {
    const stored = await this.#storage.entries("", this.domain);
    for (const [room, state] of stored) this.#indexStored(room, state);
    this.caches?.register(`muc rooms ${this.domain}`, (room) => this.#reread(room));
    const idleMs = this.config.hibernate_after * 1000;
    if (idleMs > 0) {
      this.#sweeper = setInterval(() => this.#hibernate(idleMs), Math.min(idleMs / 2, 30_000));
    }
  }

  #loaded(room: string, state: RoomState): void {
    try {
      this.#add(new Room(this, new Jid(room, this.domain), state));
    } catch (e) {
      log.error("room {room} could not be loaded: {error}", { room, error: String(e) });
    }
  }

  #indexStored(room: string, state: RoomState | null): void {
    if (state === null) return void this.#stored.delete(room);
    try {
      this.#stored.set(room, storedFacts(state));
    } catch (e) {
      log.error("room {room} could not be read: {error}", { room, error: String(e) });
    }
  }

  /**
   * Another node saved or deleted a room (`room`), or invalidations may have been missed (none):
   * read it, or all of them, again. Behind this node's own writes of the room.
   */
  #reread(room?: string): void {
    if (room !== undefined) {
      this.serial.call(this.#key(room), () => this.#storage.get("", this.domain, room)).then(
        (state) => this.#indexStored(room, state),
        (e) => logFailure(`reading room ${room}@${this.domain}`, e),
      );
      return;
    }
    if (this.#reindexing) return void (this.#reindexing.again = true);
    const run = this.#reindexing = { again: false };
    this.#storage.entries("", this.domain).then((all) => {
      this.#stored.clear();
      for (const [room, state] of all) this.#indexStored(room, state);
    }, (e) => logFailure(`reading the rooms of ${this.domain}`, e)).finally(() => {
      this.#reindexing = undefined;
      if (run.again) this.#reread();
    });
  }

  #add(room: Room): void {
    this.rooms.set(room.name, room);
    this.#live.set(room.name, liveFacts(room));
    this.distribution.added(this, room);
  }

  /** Persistent rooms nobody has been in for `idleMs` leave memory; storage keeps them. */
  #hibernate(idleMs: number): void {
    const now = Date.now();
    for (const room of [...this.rooms.values()]) {
      if (room.occupantCount > 0 || !this.#stored.has(room.name)) continue;
      if (now - room.lastActive < idleMs) continue;
      this.unload(room);
    }
  }

  /** Drops a room from memory, telling nobody and leaving storage alone (hibernation, a merge). */
  unload(room: Room): void {
    if (this.rooms.get(room.name) !== room) return;
    this.rooms.delete(room.name);
    this.#live.delete(room.name);
    this.distribution.removed(this, room);
  }

  /** Brings a room back from a snapshot taken on another node (a takeover), occupants included. */
  restore(name: string, snap: RoomSnapshot): Room {
    const room = new Room(this, new Jid(name, this.domain), snap);
    room.restore(snap);
    if (snap.config.persistent && !snap.locked) this.#stored.set(name, storedFacts(snap));
    this.#add(room);
    return room;
  }

  /** Tells every occupant the service is going away (status 332). */
  stop(): void {
    clearInterval(this.#sweeper);
    for (const room of this.rooms.values()) room.shutdown();
  }

  receive(stanza: Element, from: Jid, to: Jid): void {
    if (to.isDomain) this.#dispatch(stanza, from, to);
    else this.distribution.route(this, stanza, from, to);
  }

  fanout(stanza: Element, from: Jid, occupants: Iterable<Occupant>): void {
    this.distribution.fanout(this, stanza, from, occupants);
  }

  occupantId(room: string, bare: string): string {
    return occupantId(this.#secret, room, bare);
  }

  /** Handles a stanza here, reading its room from storage first if it may be there. */
  handle(stanza: Element, from: Jid, to: Jid): void {
    const name = to.local;
    if (!to.isDomain && !this.rooms.has(name)) {
      const queued = this.#loading.get(name);
      if (queued) return void queued.push([stanza, from, to]);
      if (this.#stored.has(name)) return this.#load(name, [stanza, from, to]);
    }
    this.#dispatch(stanza, from, to);
  }

  /** Reads one room from storage (behind its pending writes), then handles what waited for it. */
  #load(name: string, first: [Element, Jid, Jid]): void {
    const queued = [first];
    this.#loading.set(name, queued);
    this.serial.call(this.#key(name), () => this.#storage.get("", this.domain, name)).then(
      (state) => {
        this.#loading.delete(name);
        if (state === null) this.#stored.delete(name);
        if (state !== null && !this.rooms.has(name)) this.#loaded(name, state);
        for (const [stanza, from, to] of queued) this.#dispatch(stanza, from, to);
      },
      (e) => {
        this.#loading.delete(name);
        logFailure(`reading room ${name}@${this.domain}`, e);
        const [condition, opts] = failureError(e);
        for (const [stanza] of queued) this.router.bounce(stanza, condition, opts);
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
      if (this.#ownedCount(from.bare) >= max && !this.config.admins.includes(from.bare)) {
        return mucBounce(this.router, stanza, "not-allowed", {
          text: `you own ${max} rooms, the most allowed: destroy one first`,
        });
      }
      room = new Room(this, to.toBare());
      // A room that ended unseen (its node died, a restart) may have left an archive behind.
      this.#forgetArchive(room.jid);
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

  /**
   * Every public room: running here, running on another node (as last announced), or stored and
   * running nowhere.
   */
  #publicRooms(): ListedRoom[] {
    // The first word on a room is the freshest: its own, then its node's, then storage's.
    const seen = new Map<string, ListedRoom | null>();
    const see = (jid: string, f: Pick<RoomFacts, "name" | "public" | "locked">) => {
      if (seen.has(jid)) return;
      const name = f.name || jid.slice(0, jid.lastIndexOf("@"));
      seen.set(jid, f.public && !f.locked ? { jid, name } : null);
    };
    for (const room of this.rooms.values()) see(room.jid.bare, liveFacts(room));
    for (const r of this.distribution.elsewhere(this)) see(r.jid, r);
    for (const [room, f] of this.#stored.rooms) see(`${room}@${this.domain}`, f);
    return [...seen.values()].filter((r) => r !== null);
  }

  /** The rooms `bare` owns: running here, elsewhere, or stored. */
  #ownedCount(bare: string): number {
    const owned = new Set([...this.#live.owned(bare), ...this.#stored.owned(bare)]);
    for (const room of this.distribution.ownedElsewhere(this, bare)) owned.add(room);
    return owned.size;
  }

  persist(room: Room): void {
    const name = room.name;
    this.#live.set(name, liveFacts(room));
    if (room.config.persistent && !room.locked) {
      const state = room.state();
      // Other nodes re-read the room only when what they index of it changed.
      const changed = this.#stored.set(name, storedFacts(state));
      // Written later, behind the room's earlier writes: as it is now.
      const copy = structuredClone(state);
      this.#write(name, () => this.#storage.set("", this.domain, name, copy), changed);
    } else this.#forget(name);
  }

  removed(room: Room): void {
    if (this.rooms.get(room.name) !== room) return;
    this.unload(room);
    this.#forget(room.name);
    // Its archive goes with it (as an account's with the account): a room created later at its
    // address starts with none.
    this.#forgetArchive(room.jid);
  }

  /**
   * Removes what a room at this address archived, after the writes under way (whatever its
   * configuration said lately: a room made temporary, or restarted, archived before).
   */
  #forgetArchive(room: Jid): void {
    const archive = this.archive;
    if (!archive) return;
    archive.writer.stored().then(() => archive.forget(room)).catch((e) =>
      logFailure(`removing the archive of ${room.bare}`, e)
    );
  }

  ownersChanged(room: Room): void {
    if (this.rooms.get(room.name) === room) this.#live.set(room.name, liveFacts(room));
  }

  /** Deletes a room's stored state, if it has any. */
  #forget(name: string): void {
    if (this.#stored.delete(name)) {
      this.#write(name, () => this.#storage.set("", this.domain, name, null), true);
    }
  }

  /**
   * Storage writes of one room run in order; once one is done, `tell` has the other nodes of a
   * cluster read the room again (not awaited: nothing here depends on when they have).
   */
  #write(room: string, task: () => Promise<unknown>, tell: boolean): void {
    this.serial.run(this.#key(room), async () => {
      await task();
      if (tell) void this.caches?.invalidate(`muc rooms ${this.domain}`, room);
    });
  }

  #key(room: string): string {
    return `muc:${room}@${this.domain}`;
  }
}

function liveFacts(room: Room): RoomFacts {
  const { name, public: listed } = room.config;
  return { name, public: listed, locked: room.locked, owners: room.owners() };
}

/** A room's disco#info (XEP-0045 §6.4): identity, features from its configuration, roominfo. */
function roomInfo(room: Room): Element {
  const c = room.config;
  const q = discoInfoPayload(
    [{ category: "conference", type: "text", name: c.name || room.name }],
    [NS.discoInfo, ...roomFeatures(c, room.archiving)],
  );
  q.append(dataForm("result", NS.mucRoomInfo, [
    { var: "muc#roominfo_description", values: [c.description] },
    { var: "muc#roominfo_occupants", values: [String(room.occupantCount)] },
    { var: "muc#roominfo_subject", values: [room.subject.text] },
    { var: "muc#roomconfig_roomname", values: [c.name] },
  ]));
  return q;
}
