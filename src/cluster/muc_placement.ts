// Where each room runs in a cluster. A running room stays where it runs: every node learns of it
// (M_CLAIM, M_RELEASE, and all of them in M_HELLO on link up), and of each room's listing facts
// (M_ROOMS, for `parley rooms`, disco#items and `max_rooms_per_user`). A room not running anywhere
// goes to the winner of rendezvous hashing of its JID over the live nodes that host rooms
// (`host_rooms`), so a node joining moves no running room, and users creating one room at once
// from several nodes all reach one node. Its replica goes to the next node in that order.
//
// When a peer claims a room this node runs too, the copy on the rendezvous winner of the two nodes
// stays; the loser hands its copy over (`conflict`, muc_replication.ts).
import type { MucService } from "../muc/service.ts";
import type { Room } from "../muc/room.ts";
import type { RoomStatus } from "../admin/socket.ts";
import { pick } from "../component/balance.ts";
import { statusOfRoom } from "../muc/room_status.ts";
import { RoomIndex } from "../muc/room_index.ts";
import type { ClusterNode } from "./node.ts";
import { FrameError } from "./codec.ts";
import { PeerOwned } from "./peer_owned.ts";
import { checkOwners } from "./muc_limits.ts";
import {
  type AnnouncedRoom,
  type Claim,
  type Hello,
  M_CLAIM,
  M_HELLO,
  M_RELEASE,
  M_ROOMS,
  type RoomRef,
} from "./muc_wire.ts";

/** A room's key between nodes: its bare JID. */
export const roomKey = (domain: string, room: string) => `${room}@${domain}`;

/** What placement tells the other parts of MUC's distribution. */
export interface PlacementEvents {
  /** A node (maybe this one) claimed a room: whatever was kept for it goes to it. */
  claimed(muc: MucService, room: string): void;
  /** `peer` claims `room`, which runs here too, and its copy stays: this one must go to it. */
  conflict(peer: string, muc: MucService, room: Room): void;
  /** A peer said hello: the rendezvous order changed. */
  hello(peer: string): void;
}

export class RoomPlacement {
  /** MUC domains each linked peer runs rooms for. */
  #hosting = new Map<string, Set<string>>();
  /** Rooms other nodes run: room JID → node. */
  #owners: PeerOwned<null>;
  /** What each peer runs, by MUC domain: its last M_ROOMS, with M_CLAIM and M_RELEASE since. */
  #peerRooms = new Map<string, Map<string, RoomIndex<AnnouncedRoom>>>();
  /** Rooms added here since the last M_CLAIM went out. */
  #claims = new Set<Room>();
  #roomsSaid = "";

  constructor(
    readonly node: ClusterNode,
    readonly mucs: Map<string, MucService>,
    readonly events: PlacementEvents,
  ) {
    this.#owners = new PeerOwned(node.maxRecordsPerPeer, "rooms (max_records_per_peer)");
    this.#registerFrames();
  }

  /** Whether any linked peer hosts rooms (a replica has somewhere to go). */
  get shared(): boolean {
    return this.#hosting.size > 0;
  }

  /** The nodes that may run rooms of `muc` now: this one (unless it opted out) and linked peers. */
  #candidates(muc: MucService): string[] {
    const out = muc.config.host_rooms ? [this.node.name] : [];
    for (const [peer, domains] of this.#hosting) if (domains.has(muc.domain)) out.push(peer);
    return out;
  }

  /** The node running a room, or the one that would run it now. */
  ownerOf(muc: MucService, room: string): string | undefined {
    if (muc.rooms.has(room)) return this.node.name;
    return this.#owners.nodeOf(roomKey(muc.domain, room)) ??
      pick(this.#candidates(muc), roomKey(muc.domain, room));
  }

  /** The peer that claimed a room, if one did. */
  claimant(key: string): string | undefined {
    return this.#owners.nodeOf(key);
  }

  /** The next node in rendezvous order after this one: where a room's replica goes. */
  replicaTarget(muc: MucService, room: string): string | undefined {
    const others = this.#candidates(muc).filter((n) => n !== this.node.name);
    return pick(others, roomKey(muc.domain, room));
  }

  /**
   * Whether `peer` may speak for `room`: not when it runs here, nor when this node knows it runs
   * elsewhere. A new room's first stanzas come before its claim, and a room taken over or merged
   * is claimed before it speaks.
   */
  runsAt(peer: string, muc: MucService, room: string): boolean {
    if (muc.rooms.has(room)) return false;
    const owner = this.#owners.nodeOf(roomKey(muc.domain, room));
    return owner === undefined || owner === peer;
  }

  /** The rooms of `muc` other nodes run, as they announced them. */
  elsewhere(muc: MucService): RoomStatus[] {
    return this.#peerIndexes(muc.domain).flatMap((i) =>
      [...i.rooms.values()].map(({ owners: _, ...status }) => status)
    );
  }

  ownedElsewhere(muc: MucService, bare: string): string[] {
    return this.#peerIndexes(muc.domain).flatMap((i) => [...i.owned(bare)]);
  }

  /** The rooms a member runs, as this node knows them. */
  roomsOf(member: string): RoomStatus[] {
    return [...this.#peerRooms.get(member)?.values() ?? []].flatMap((i) => [...i.rooms.values()]);
  }

  // --- Rooms coming and going here.

  added(room: Room): void {
    this.#owners.delete(room.jid.bare);
    // Claimed once the stanza that brought the room is handled: a new room then has its owner,
    // which the other nodes count for `max_rooms_per_user`.
    if (this.#claims.size === 0) queueMicrotask(() => this.sendClaims());
    this.#claims.add(room);
  }

  /** Claims the rooms added lately, before they speak: the other nodes take their word. */
  sendClaims(): void {
    const rooms = this.#claims;
    this.#claims = new Set();
    for (const room of rooms) {
      const muc = this.mucs.get(room.jid.domain)!;
      if (muc.rooms.get(room.name) !== room) continue; // gone already; its M_RELEASE went out
      this.announceClaim(muc, room);
      this.events.claimed(muc, room.name);
    }
  }

  announceClaim(muc: MucService, room: Room): void {
    const claim: Claim = { domain: muc.domain, room: room.name, status: announced(muc, room) };
    const payload = JSON.stringify(claim);
    for (const peer of this.node.peers()) this.node.send(peer, M_CLAIM, payload);
  }

  removed(muc: MucService, room: Room): void {
    const payload = JSON.stringify({ domain: muc.domain, room: room.name } satisfies RoomRef);
    for (const peer of this.node.peers()) this.node.send(peer, M_RELEASE, payload);
  }

  /** Tells every peer the rooms run here, when that changed (or `always`, a peer came up). */
  sayRooms(always: boolean): void {
    const said = JSON.stringify(
      [...this.mucs.values()].flatMap((muc) =>
        [...muc.rooms.values()].map((r) => announced(muc, r))
      ),
    );
    if (said === this.#roomsSaid && !always) return;
    this.#roomsSaid = said;
    for (const peer of this.node.peers()) this.node.send(peer, M_ROOMS, said);
  }

  // --- Peers.

  up(peer: string): void {
    const hello: Hello = { hosting: [], rooms: [] };
    for (const muc of this.mucs.values()) {
      if (muc.config.host_rooms) hello.hosting.push(muc.domain);
      for (const name of muc.rooms.keys()) hello.rooms.push({ domain: muc.domain, room: name });
    }
    this.node.send(peer, M_HELLO, JSON.stringify(hello));
    this.sayRooms(true);
  }

  down(peer: string): void {
    this.#hosting.delete(peer);
    this.#peerRooms.delete(peer);
    this.#owners.drop(peer);
  }

  #registerFrames(): void {
    const node = this.node;
    node.on(M_HELLO, (peer, hello) => {
      this.#hosting.set(peer, new Set(hello.hosting));
      for (const ref of hello.rooms) this.#claimed(peer, ref);
      this.events.hello(peer);
    });
    node.on(M_CLAIM, (peer, claim) => {
      const muc = this.mucs.get(claim.domain);
      if (muc) checkOwners(muc, claim.status);
      this.#claimed(peer, claim);
    });
    node.on(M_RELEASE, (peer, { domain, room }) => {
      const k = roomKey(domain, room);
      if (this.#owners.nodeOf(k) === peer) this.#owners.delete(k);
      this.#peerRooms.get(peer)?.get(domain)?.delete(room);
    });
    node.on(M_ROOMS, (peer, rooms) => {
      if (rooms.length > node.maxRecordsPerPeer) {
        throw new FrameError(`more than ${node.maxRecordsPerPeer} rooms (max_records_per_peer)`);
      }
      // Rooms of MUC domains served here (others mean nothing here), each checked first.
      const known: [MucService, string, AnnouncedRoom][] = [];
      for (const r of rooms) {
        const at = r.jid.lastIndexOf("@");
        const muc = this.mucs.get(r.jid.slice(at + 1));
        if (!muc) continue;
        checkOwners(muc, r);
        known.push([muc, r.jid.slice(0, at), r]);
      }
      this.#peerRooms.delete(peer);
      for (const [muc, room, r] of known) this.#peerIndex(peer, muc.domain).set(room, r);
    });
  }

  /**
   * A peer runs a room. If this node runs it too, the copy on the rendezvous winner of the two
   * nodes stays: the loser sends its copy there and drops it.
   */
  #claimed(peer: string, { domain, room, status }: RoomRef & Partial<Claim>): void {
    const muc = this.mucs.get(domain);
    if (!muc) return;
    if (status) this.#peerIndex(peer, domain).set(room, status);
    const k = roomKey(domain, room);
    const mine = muc.rooms.get(room);
    if (!mine) {
      this.#owners.set(k, peer, null);
      return this.events.claimed(muc, room);
    }
    if (pick([this.node.name, peer], k) === this.node.name) return; // the peer merges into ours
    this.#owners.set(k, peer, null);
    this.events.conflict(peer, muc, mine);
  }

  /** What the linked peers announced of the rooms of `domain`, one index per peer. */
  #peerIndexes(domain: string): RoomIndex<AnnouncedRoom>[] {
    return [...this.#peerRooms.values()].flatMap((d) => d.get(domain) ?? []);
  }

  #peerIndex(peer: string, domain: string): RoomIndex<AnnouncedRoom> {
    let byDomain = this.#peerRooms.get(peer);
    if (!byDomain) this.#peerRooms.set(peer, byDomain = new Map());
    let index = byDomain.get(domain);
    if (!index) byDomain.set(domain, index = new RoomIndex());
    return index;
  }
}

/** A room run here as announced to the other nodes. */
function announced(muc: MucService, room: Room): AnnouncedRoom {
  return { ...statusOfRoom(muc, room), owners: room.owners() };
}
