// Rooms outlive their node. A room's node sends its state to the next node in rendezvous order
// (M_REPLICA, at most every REPLICATE_MS; M_HISTORY when only history changed). When the room's
// node dies, that node brings the room back with its occupants (a takeover); those whose sessions
// died too leave with 333. After a takeover, occupants whose sessions exist nowhere leave too.
//
// Two copies of one room meet when one node learns of the other's claim: the copy on the
// rendezvous winner of the two nodes stays, the other is sent to it (M_MERGE) and dropped; the
// winner absorbs it (muc_merge.ts).
//
// A node waking from a stall finds its peers silent, declares them dead, and they it: the replicas
// of its rooms take them over, and those peers are alive. So its rooms forget the sessions of the
// peers it loses right then, telling nobody (the copies run by the others speak for them), and it
// takes their rooms over only if they are not back within `dead_after`; the merge when the links
// return brings its own occupants back into those copies.
//
// A peer is believed only about what it owns: a replica only from the node that claimed the room,
// a merge only into a room this node runs or should run now, and no room state beyond this node's
// MUC limits (muc_limits.ts). Stanzas in a peer's snapshot are read with that peer's decoder.
import type { Element } from "../xml/element.ts";
import type { Jid } from "../jid/jid.ts";
import type { MucService } from "../muc/service.ts";
import type { Room } from "../muc/room.ts";
import type { ClusterNode } from "./node.ts";
import type { StanzaDecoder } from "./wire.ts";
import { PeerOwned } from "./peer_owned.ts";
import { roomKey, type RoomPlacement } from "./muc_placement.ts";
import type { RoomForwarding } from "./muc_forwarding.ts";
import { checkHistory, checkSnapshot, withinLimits } from "./muc_limits.ts";
import { absorb, FULL } from "./muc_merge.ts";
import {
  historyToWire,
  M_HISTORY,
  M_MERGE,
  M_REPLICA,
  M_UNREPLICATE,
  type RoomData,
  type RoomRef,
  snapshotFromWire,
  snapshotToWire,
  type WireSnapshot,
} from "./muc_wire.ts";
import { logger } from "../log/logger.ts";
import { LimitedLog } from "../log/limited.ts";

const log = logger("cluster");
/** What peers' frames cause to be logged, at a bounded rate per peer. */
const limited = new LimitedLog(log);

/** Longest a room's change waits before its replica hears of it (what a takeover may miss). */
const REPLICATE_MS = 100;

export class RoomReplication {
  /** Replicas held here of other nodes' rooms: room JID → the node and the room's state. */
  #replicas: PeerOwned<WireSnapshot>;
  /** The node holding the replica of each room run here. */
  #replicaAt = new Map<string, string>();
  /** Rooms run here whose replica is behind: true when more than history changed. */
  #dirty = new Map<Room, boolean>();
  #flush: ReturnType<typeof setTimeout> | undefined;
  /** Rooms brought back here after their node died (or merged in with no copy here). */
  takeovers = 0;
  /** M_REPLICA and M_HISTORY frames sent (each brings a replica up to date). */
  replicated = 0;

  constructor(
    readonly node: ClusterNode,
    readonly mucs: Map<string, MucService>,
    readonly placement: RoomPlacement,
    readonly forwarding: RoomForwarding,
  ) {
    this.#replicas = new PeerOwned(node.maxRecordsPerPeer, "room replicas");
    this.#registerFrames();
  }

  /** Replicas of other nodes' rooms held here now. */
  get replicas(): number {
    return this.#replicas.size;
  }

  // --- Rooms run here.

  added(room: Room): void {
    this.#replicas.delete(room.jid.bare);
    this.mark(room, true);
  }

  removed(muc: MucService, room: Room): void {
    const k = room.jid.bare;
    this.#dirty.delete(room);
    const at = this.#replicaAt.get(k);
    this.#replicaAt.delete(k);
    const ref: RoomRef = { domain: muc.domain, room: room.name };
    if (at) this.node.send(at, M_UNREPLICATE, JSON.stringify(ref));
  }

  /** A stanza reached a room here: its replica is now behind (by history alone, for messages). */
  touched(muc: MucService, to: Jid, stanza: Element): void {
    const room = muc.rooms.get(to.local);
    if (!room) return;
    const full = !(stanza.name === "message" && to.isBare && stanza.attrs.type === "groupchat");
    this.mark(room, full);
  }

  /** Every room run here: its replica may belong elsewhere now (a peer came). */
  markAll(): void {
    for (const muc of this.mucs.values()) {
      for (const room of muc.rooms.values()) this.mark(room, false);
    }
  }

  mark(room: Room, full: boolean): void {
    if (!this.placement.shared) return; // nobody to replicate to
    this.#dirty.set(room, full || (this.#dirty.get(room) ?? false));
    this.#flush ??= setTimeout(() => this.#replicate(), REPLICATE_MS);
  }

  #replicate(): void {
    this.#flush = undefined;
    const dirty = this.#dirty;
    this.#dirty = new Map();
    for (const [room, changed] of dirty) {
      const muc = this.mucs.get(room.jid.domain);
      if (!muc || muc.rooms.get(room.name) !== room) continue;
      const k = room.jid.bare;
      const target = this.placement.replicaTarget(muc, room.name);
      const before = this.#replicaAt.get(k);
      const ref: RoomRef = { domain: muc.domain, room: room.name };
      if (before && before !== target) this.node.send(before, M_UNREPLICATE, JSON.stringify(ref));
      if (!target) {
        this.#replicaAt.delete(k);
        continue;
      }
      this.#replicaAt.set(k, target);
      // Within the limits the peer checks (admins may join a full room: not in the replica).
      const [snap] = withinLimits(muc, room.snapshot());
      this.replicated++;
      if (changed || before !== target) {
        const data: RoomData = { ...ref, snapshot: snapshotToWire(snap) };
        this.node.send(target, M_REPLICA, JSON.stringify(data));
      } else {
        this.node.send(target, M_HISTORY, JSON.stringify({ ...ref, history: historyToWire(snap) }));
      }
    }
  }

  // --- A peer gone.

  /**
   * `peer` is gone (its sessions already out of the directory): occupants of the rooms here that
   * were its users leave (`woke`: silently), and its rooms whose replica is here come back here,
   * at once or (`woke`) only if it is not back within `dead_after`. `decoder` reads the replicas'
   * stanzas, as the peer's would have been read.
   */
  down(peer: string, woke: boolean, decoder: StanzaDecoder, deadAfterMs: number): void {
    for (const muc of this.mucs.values()) {
      for (const room of [...muc.rooms.values()]) {
        // The replica hears of it, or a later takeover would show them leaving a second time.
        if (this.#dropGone(room, woke)) this.mark(room, true);
      }
    }
    const orphans = this.#replicas.drop(peer);
    const takeOver = () => {
      for (const [k, snapshot] of orphans) {
        const at = k.lastIndexOf("@");
        const muc = this.mucs.get(k.slice(at + 1));
        if (muc) this.#takeOver(muc, k.slice(0, at), snapshot, decoder);
      }
    };
    // Just woken: the peer is likely alive, and back within moments; if not, it did die.
    if (!woke) takeOver();
    else if (orphans.length > 0) {
      setTimeout(() => [...this.node.peers()].includes(peer) || takeOver(), deadAfterMs);
    }
  }

  /** Rooms whose replica was on `peer` get a new one. */
  replaceReplicas(peer: string): void {
    for (const muc of this.mucs.values()) {
      for (const room of muc.rooms.values()) {
        if (this.#replicaAt.get(room.jid.bare) === peer) this.mark(room, true);
      }
    }
  }

  /** A dead node's room comes back here, or on the node that runs it now. */
  #takeOver(muc: MucService, name: string, snapshot: WireSnapshot, decoder: StanzaDecoder): void {
    const owner = this.placement.ownerOf(muc, name);
    if (owner !== undefined && owner !== this.node.name) {
      const data: RoomData = { domain: muc.domain, room: name, snapshot };
      if (this.node.send(owner, M_MERGE, JSON.stringify(data))) return;
    }
    const room = muc.restore(name, snapshotFromWire(snapshot, (xml) => decoder.decode(xml)));
    this.placement.sendClaims(); // before the room speaks: the other nodes take its word from here on
    this.takeovers++;
    log.info("took over room {room}", { room: room.jid.bare });
    this.#dropGone(room);
  }

  /**
   * Occupant sessions of local accounts that no longer exist anywhere leave with 333, or
   * `silently` (this copy of the room is stale).
   */
  #dropGone(room: Room, silently = false): boolean {
    const { sessions } = this.node.ctx;
    let dropped = false;
    for (const occ of [...room.occupants()]) {
      for (const s of [...occ.sessions.values()]) {
        if (!this.node.hosts.has(s.jid.domain) || sessions.get(s.jid)) continue;
        if (silently) room.forget(s.jid);
        else room.sessionGone(s.jid);
        dropped = true;
      }
    }
    return dropped;
  }

  // --- Merges.

  /** `peer`'s copy of a room run here too stays: this one goes to it and is dropped here. */
  mergeInto(peer: string, muc: MucService, mine: Room): void {
    // Within the limits the peer checks; occupants left out (admins who joined a full room) are
    // told they left, as the peer would tell them.
    const [snap, cut] = withinLimits(muc, mine.snapshot());
    for (const o of cut) mine.refuseFromCopy(o, FULL);
    const data: RoomData = { domain: muc.domain, room: mine.name, snapshot: snapshotToWire(snap) };
    this.node.send(peer, M_MERGE, JSON.stringify(data));
    log.info("room {room} also ran on {peer}: merged into it", { room: mine.jid.bare, peer });
    muc.unload(mine);
  }

  /**
   * Another node's copy of a room, believed only for a room this node runs or should run now (a
   * peer's word does not bring a room here that belongs elsewhere; nodes briefly disagreeing on
   * that is no fault of the peer's: ignored).
   */
  #merge(peer: string, { domain, room, snapshot }: RoomData): void {
    const muc = this.mucs.get(domain);
    if (!muc) return;
    checkSnapshot(muc, snapshot);
    if (this.placement.ownerOf(muc, room) !== this.node.name) {
      return limited.info(peer, "ignored {peer}'s copy of room {room}: not run here", {
        peer,
        room: roomKey(domain, room),
      });
    }
    const snap = snapshotFromWire(snapshot, (xml) => this.forwarding.decoder(peer).decode(xml));
    const mine = muc.rooms.get(room);
    if (mine) {
      // Claimed again, before the room speaks: the other nodes take its word from here on, and
      // send it the departures the absorbed copy had missed.
      this.placement.announceClaim(muc, mine);
      absorb(mine, snap);
      this.forwarding.sendDepartures(muc, room);
      this.mark(mine, true);
    } else {
      const restored = muc.restore(room, snap);
      this.placement.sendClaims();
      this.takeovers++;
      this.#dropGone(restored);
    }
  }

  #registerFrames(): void {
    const node = this.node;
    // A replica is believed only from the node that runs the room (its claim came first).
    node.on(M_REPLICA, (peer, { domain, room, snapshot }) => {
      const muc = this.mucs.get(domain);
      if (!muc) return;
      checkSnapshot(muc, snapshot);
      const k = roomKey(domain, room);
      if (this.placement.claimant(k) !== peer) return; // a stale copy's, or not the peer's room
      this.#replicas.set(k, peer, snapshot);
    });
    node.on(M_HISTORY, (peer, { domain, room, history }) => {
      const muc = this.mucs.get(domain);
      if (!muc) return;
      checkHistory(muc, history);
      const replica = this.#replicas.get(roomKey(domain, room));
      if (replica?.node === peer) replica.value.history = history;
    });
    node.on(M_UNREPLICATE, (peer, { domain, room }) => {
      const k = roomKey(domain, room);
      if (this.#replicas.get(k)?.node === peer) this.#replicas.delete(k);
    });
    node.on(M_MERGE, (peer, data) => this.#merge(peer, data));
  }
}
