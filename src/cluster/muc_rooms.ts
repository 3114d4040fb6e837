// Chat rooms spread over the cluster. Each room runs on one node; every other node forwards the
// room's stanzas there (M_STANZA), and the room's node sends each message to another node once
// (M_FANOUT), for that node to hand to its own occupants.
//
// A forwarded stanza is kept (its frame's text, in an Acks per peer) until the room's node
// acknowledges it: by M_STANZA_ACK (all that came within 10 ms, at once), or by the count in the
// M_FANOUT frames it sends back, so a node that got a room's copy of a message never sends that
// message again (one frame says both). When that node is declared dead, what it did not
// acknowledge is routed again, in order, after the takeover: to the node running the room now.
//
// Placement: a running room stays where it runs (every node learns of it: M_CLAIM, M_RELEASE, and
// all of them in M_HELLO on link up); a room not running anywhere goes to the winner of rendezvous
// hashing of its JID over the live nodes that host rooms (`host_rooms`), so a node joining moves
// no running room, and users creating one room at once from several nodes all reach one node.
//
// Two copies of one room (made on both sides of a partition, or by nodes that briefly disagreed
// on who is alive) meet when one learns of the other's claim: the copy on the rendezvous winner
// of the two nodes stays, the other is sent to it (M_MERGE) and dropped (Room.absorb merges).
//
// Failover: a room's node sends its state to the next node in rendezvous order (M_REPLICA, at most
// every REPLICATE_MS; M_HISTORY when only history changed). When the room's node dies, that node
// brings the room back with its occupants; those whose sessions died too leave with 333.
//
// Departures are never lost to a change of hands: each node keeps the departures (unavailable
// presence) its users sent to a room for a while, and sends them again to the room's node each
// time a node claims the room (a takeover, the winner of a merge, a frozen node coming back with
// its stale copy). A room ignores a departure of someone not in it, and a user entering again
// through this node cancels the kept one. After a takeover, occupants whose sessions exist
// nowhere leave too.
//
// A node waking from a stall (frozen, swapped out: its own timers late by half `dead_after`)
// finds its peers silent, declares them dead, and they it (a link going down goes down at both
// ends): the replicas of its rooms take them over, and those peers are alive. So its rooms
// forget the sessions of the peers it loses right then, telling nobody (the copies run by the
// others speak for them), and it takes their rooms over only if they are not back within
// `dead_after`; the merge when the links return brings its own occupants back into those copies.
// What it had forwarded before the stall reached peers that stayed up and was handled there; their
// acknowledgements, which came meanwhile, are dropped with the links (link.ts): it counts as
// acknowledged, and only what it forwarded after waking is sent again.
//
// A peer is believed only about what it owns: a merge only into a room this node runs or should
// run now, a room's message only from a room of a MUC domain served here and only to sessions of
// this cluster's domains, and no room state beyond this node's MUC limits (occupants, history,
// owners): a merge never makes a room outgrow its maxUsers. Stanzas a peer sent are read with
// that peer's decoder; this node's own kept frames with a parser of their own.
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { parseStanza } from "../xml/parse_string.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import { readdressed } from "../im/delivery.ts";
import type { MucService } from "../muc/service.ts";
import type { Occupant } from "../muc/occupant.ts";
import type { OccupantData, Room, RoomSnapshot } from "../muc/room.ts";
import type { RoomStatus } from "../admin/socket.ts";
import { pick } from "../component/balance.ts";
import { localRoomStatus, statusOfRoom } from "../muc/room_status.ts";
import { RoomIndex } from "../muc/room_index.ts";
import type { ClusterNode, PeerObserver } from "./node.ts";
import { StanzaDecoder } from "./wire.ts";
import { FrameError } from "./codec.ts";
import { PeerOwned } from "./peer_owned.ts";
import type { FrameType } from "./frame_type.ts";
import { Acks } from "./acks.ts";
import {
  type AnnouncedRoom,
  type Claim,
  type FanoutHeader,
  type Hello,
  historyToWire,
  jids,
  M_CLAIM,
  M_FANOUT,
  M_HELLO,
  M_HISTORY,
  M_MERGE,
  M_RELEASE,
  M_REPLICA,
  M_ROOMS,
  M_STANZA,
  M_STANZA_ACK,
  M_UNREPLICATE,
  type RoomData,
  type RoomRef,
  snapshotFromWire,
  snapshotToWire,
  type StanzaHeader,
  type WireSnapshot,
  withHeader,
} from "./muc_wire.ts";
import { logger } from "../log/logger.ts";
import { LimitedLog } from "../log/limited.ts";
import { parseDuration } from "./config.ts";

const log = logger("cluster");
/** What peers' frames cause to be logged, at a bounded rate per peer. */
const limited = new LimitedLog(log);

/** Longest a room's change waits before its replica hears of it (what a takeover may miss). */
const REPLICATE_MS = 100;
/** How often each node tells the others what rooms it runs (for `parley rooms`). */
const ROOMS_MS = 1000;
/** A stanza forwarded this many times is handled where it is (nodes disagreeing briefly). */
const MAX_HOPS = 2;
/**
 * How long a departure is kept, in `dead_after`s: long enough for a node that missed it to be
 * declared dead, its room taken over, and the node to come back and merge its copy.
 */
const DEPARTURE_KEPT = 10;

/** An occupant's departure from a room, as it passed through this node. */
interface Departure {
  stanza: Element;
  from: Jid;
  to: Jid;
  at: number;
}

/** Frames and deliveries of room traffic on this node, for `parley cluster status`. */
export interface MucCounters {
  /** M_FANOUT frames sent: one per message and other node with occupants. */
  fanoutFramesSent: number;
  fanoutFramesReceived: number;
  /** Stanzas handed to local sessions out of received M_FANOUT frames. */
  fanoutDelivered: number;
  /** Stanzas forwarded to the node running their room. */
  forwarded: number;
  /** Forwarded stanzas routed again because their node was declared dead before acknowledging. */
  resent: number;
  /** Rooms brought back here after their node died. */
  takeovers: number;
  /** M_REPLICA and M_HISTORY frames sent (each brings a replica up to date). */
  replicated: number;
  /** Replicas of other nodes' rooms held here now. */
  replicas: number;
}

const key = (domain: string, room: string) => `${room}@${domain}`;

/** MUC's cluster side (src/cluster/extensions.ts). */
export function startMucRooms(node: ClusterNode, mucs: Map<string, MucService>): void {
  if (mucs.size > 0) new MucRooms(node, mucs);
}

export class MucRooms implements PeerObserver {
  /** MUC domains each linked peer runs rooms for. */
  #hosting = new Map<string, Set<string>>();
  /** Rooms other nodes run: room JID → node. */
  #owners: PeerOwned<null>;
  /** Replicas held here of other nodes' rooms: room JID → the node and the room's state. */
  #replicas: PeerOwned<WireSnapshot>;
  /** The node holding the replica of each room run here. */
  #replicaAt = new Map<string, string>();
  /** Rooms run here whose replica is behind: true when more than history changed. */
  #dirty = new Map<Room, boolean>();
  #flush: ReturnType<typeof setTimeout> | undefined;
  /** Per linked peer: the M_STANZA frames it has not acknowledged, and its stanzas' decoder. */
  #links = new Map<string, Acks>();
  /** What each peer runs, by MUC domain: its last M_ROOMS, with M_CLAIM and M_RELEASE since. */
  #peerRooms = new Map<string, Map<string, RoomIndex<AnnouncedRoom>>>();
  /** Rooms added here since the last M_CLAIM went out. */
  #claims = new Set<Room>();
  #roomsSaid = "";
  /** Departures from rooms sent by users of this node lately: room JID → full JID → departure. */
  #departures = new Map<string, Map<string, Departure>>();
  readonly #deadAfterMs: number;
  /** When this node last saw its own timer fire, and when it last woke from a stall. */
  #tick = Date.now();
  #stalledAt = 0;
  readonly counters: MucCounters = {
    fanoutFramesSent: 0,
    fanoutFramesReceived: 0,
    fanoutDelivered: 0,
    forwarded: 0,
    resent: 0,
    takeovers: 0,
    replicated: 0,
    replicas: 0,
  };

  constructor(readonly node: ClusterNode, readonly mucs: Map<string, MucService>) {
    this.#owners = new PeerOwned(node.maxRecordsPerPeer, "rooms (max_records_per_peer)");
    this.#replicas = new PeerOwned(node.maxRecordsPerPeer, "room replicas");
    for (const muc of mucs.values()) {
      muc.intercept = (stanza, from, to) => this.#intercept(muc, stanza, from, to);
      muc.fanout = (stanza, from, occupants) => this.#fanout(stanza, from, occupants);
      muc.observer = {
        added: (room) => this.#added(room),
        removed: (room) => this.#removed(muc, room),
      };
      muc.placement = {
        node: node.name,
        nodeOf: (room) => this.#ownerOf(muc, room) ?? null,
        elsewhere: () =>
          this.#peerIndexes(muc.domain).flatMap((i) =>
            [...i.rooms.values()].map(({ owners: _, ...status }) => status)
          ),
        ownedElsewhere: (bare) => this.#peerIndexes(muc.domain).flatMap((i) => [...i.owned(bare)]),
      };
    }
    this.#deadAfterMs = parseDuration(node.ctx.config.cluster!.dead_after)!;
    Deno.unrefTimer(setInterval(() => this.#stalled(), this.#deadAfterMs / 4));
    this.#registerFrames();
    node.follow(this);
    node.addStatus((member) => this.#memberStatus(member));
    Deno.unrefTimer(setInterval(() => {
      this.#sayRooms(false);
      this.#forgetDepartures();
    }, ROOMS_MS));
  }

  // --- Placement.

  /** The nodes that may run rooms of `muc` now: this one (unless it opted out) and linked peers. */
  #candidates(muc: MucService): string[] {
    const out = muc.config.host_rooms ? [this.node.name] : [];
    for (const [peer, domains] of this.#hosting) if (domains.has(muc.domain)) out.push(peer);
    return out;
  }

  /** The node running a room, or the one that would run it now. */
  #ownerOf(muc: MucService, room: string): string | undefined {
    if (muc.rooms.has(room)) return this.node.name;
    return this.#owners.nodeOf(key(muc.domain, room)) ??
      pick(this.#candidates(muc), key(muc.domain, room));
  }

  /** The next node in rendezvous order after this one: where a room's replica goes. */
  #replicaTarget(muc: MucService, room: string): string | undefined {
    const others = this.#candidates(muc).filter((n) => n !== this.node.name);
    return pick(others, key(muc.domain, room));
  }

  #intercept(muc: MucService, stanza: Element, from: Jid, to: Jid): boolean {
    if (to.isDomain) return false;
    if (stanza.name === "presence") this.#noteDeparture(stanza, from, to);
    this.#route(muc, stanza, from, to, 0);
    return true;
  }

  // --- Departures, sent again whenever a room changes hands.

  #noteDeparture(stanza: Element, from: Jid, to: Jid): void {
    const type = stanza.attrs.type;
    if (type !== undefined && type !== "unavailable") return;
    const k = to.bare;
    let room = this.#departures.get(k);
    if (type === undefined) { // in the room (again): nothing of it to send again
      if (room?.delete(from.full) && room.size === 0) this.#departures.delete(k);
      return;
    }
    if (!room) this.#departures.set(k, room = new Map());
    room.set(from.full, { stanza, from, to, at: Date.now() });
  }

  /** A node (maybe this one) claimed a room: the departures kept for it go to it again. */
  #sendDepartures(muc: MucService, room: string): void {
    const kept = this.#departures.get(key(muc.domain, room));
    for (const d of kept?.values() ?? []) this.#route(muc, d.stanza, d.from, d.to, 0);
  }

  #forgetDepartures(): void {
    const before = Date.now() - DEPARTURE_KEPT * this.#deadAfterMs;
    for (const [k, room] of this.#departures) {
      for (const [full, d] of room) if (d.at < before) room.delete(full);
      if (room.size === 0) this.#departures.delete(k);
    }
  }

  /** Handles a room's stanza here or forwards it to the node running the room. */
  #route(muc: MucService, stanza: Element, from: Jid, to: Jid, hops: number, via?: string): void {
    const owner = this.#ownerOf(muc, to.local);
    if (owner === undefined) {
      return muc.router.bounce(stanza, "service-unavailable", { text: "no node runs rooms now" });
    }
    if (owner === this.node.name || owner === via || hops >= MAX_HOPS) {
      muc.handle(stanza, from, to);
      return this.#touched(muc, to, stanza);
    }
    // Just woken from a stall: what went out before it is acknowledged (see #stalled) first.
    if (Date.now() - this.#tick > this.#deadAfterMs * 0.75) this.#stalled();
    const payload = withHeader([from.full, to.full, hops] satisfies StanzaHeader, stanza);
    const link = this.#links.get(owner);
    if (!link || !this.node.send(owner, M_STANZA, payload)) {
      return muc.router.bounce(stanza, "service-unavailable", { text: "the room's node is away" });
    }
    link.sent(payload);
    this.counters.forwarded++;
  }

  /**
   * The stanzas `link`'s peer, declared dead, did not acknowledge: routed again, in the order they
   * were sent, to the node running their room now (this one after a takeover).
   */
  #resend(peer: string, link: Acks): void {
    const kept = link.unacked();
    if (kept.length === 0) return;
    log.info("routing {n} room stanzas sent to {peer} again", { n: kept.length, peer });
    for (const payload of kept) {
      const { header: [from, to, hops], xml } = M_STANZA.codec.decode(payload);
      const addr = jids(from, to);
      const stanza = parseStanza(xml); // this node's own frame: no peer's parser state
      const muc = addr && this.mucs.get(addr[1].domain);
      if (!addr || !stanza || !muc) continue;
      this.counters.resent++;
      this.#route(muc, stanza, addr[0], addr[1], hops);
    }
  }

  // --- Fan-out: one frame per node for its local occupants.

  #fanout(stanza: Element, from: Jid, occupants: Iterable<Occupant>): void {
    const router = this.node.ctx.router;
    const sessions = this.node.ctx.sessions;
    let remote: Map<string, string[]> | undefined;
    for (const occ of occupants) {
      for (const s of occ.sessions.values()) {
        const at = sessions.get(s.jid)?.node;
        if (!at) {
          router.route(readdressed(stanza, s.jid.full), from, s.jid);
          continue;
        }
        remote ??= new Map();
        const list = remote.get(at);
        if (list) list.push(s.jid.full);
        else remote.set(at, [s.jid.full]);
      }
    }
    if (!remote) return;
    const xml = stanza.toString();
    // A peer takes at most max_occupants targets a frame (occupants with several sessions there
    // may need more: then several frames).
    const most = this.mucs.get(from.domain)?.config.max_occupants ?? Infinity;
    for (const [peer, all] of remote) {
      for (let at = 0; at < all.length; at += most) {
        const to = all.length > most ? all.slice(at, at + most) : all;
        // Acknowledges the peer's M_STANZA frames handled so far (this message's among them).
        const header: FanoutHeader = [from.full, to, this.#links.get(peer)?.receivedCount ?? 0];
        // Not sent: the peer is gone, its sessions leave the room once it is declared dead.
        if (!this.node.send(peer, M_FANOUT, withHeader(header, xml))) break;
        this.counters.fanoutFramesSent++;
      }
    }
  }

  #fanoutHere(
    peer: string,
    { header: [from, to, acked], xml }: { header: FanoutHeader; xml: string },
  ): void {
    const sender = parseJid(from)!;
    const muc = this.mucs.get(sender.domain);
    // Only a room speaks here: a room of a MUC domain served here, or one of its occupants.
    if (!muc || sender.isDomain) throw new FrameError(`${from} is not a room of this cluster`);
    const most = muc.config.max_occupants;
    if (to.length > most) throw new FrameError(`more than ${most} targets (max_occupants)`);
    if (acked) this.#links.get(peer)?.acked(acked);
    const stanza = this.#decoder(peer).stanza(xml);
    if (!this.#runsAt(peer, muc, sender.local)) return; // a stale copy (a node frozen, back)
    this.counters.fanoutFramesReceived++;
    for (const c of stanza.children) if (typeof c !== "string") c.toString();
    for (const full of to) {
      const target = parseJid(full);
      // Only this cluster's sessions: a peer does not make this node send elsewhere.
      if (!target || !this.node.hosts.has(target.domain)) continue;
      this.node.ctx.router.route(readdressed(stanza, full), sender, target);
      this.counters.fanoutDelivered++;
    }
  }

  /**
   * Whether `peer` may speak for `room`: not when it runs here, nor when this node knows it runs
   * elsewhere. A new room's first stanzas come before its claim, and a room taken over or merged
   * is claimed before it speaks.
   */
  #runsAt(peer: string, muc: MucService, room: string): boolean {
    if (muc.rooms.has(room)) return false;
    const owner = this.#owners.nodeOf(key(muc.domain, room));
    return owner === undefined || owner === peer;
  }

  // --- Rooms coming and going here.

  #added(room: Room): void {
    const k = room.jid.bare;
    this.#owners.delete(k);
    this.#replicas.delete(k);
    // Claimed once the stanza that brought the room is handled: a new room then has its owner,
    // which the other nodes count for `max_rooms_per_user`.
    if (this.#claims.size === 0) queueMicrotask(() => this.#sendClaims());
    this.#claims.add(room);
    this.#mark(room, true);
  }

  #sendClaims(): void {
    const rooms = this.#claims;
    this.#claims = new Set();
    for (const room of rooms) {
      const muc = this.mucs.get(room.jid.domain)!;
      if (muc.rooms.get(room.name) !== room) continue; // gone already; its M_RELEASE went out
      this.#announceClaim(muc, room);
      this.#sendDepartures(muc, room.name);
    }
  }

  #announceClaim(muc: MucService, room: Room): void {
    const claim: Claim = { domain: muc.domain, room: room.name, status: announced(muc, room) };
    const payload = JSON.stringify(claim);
    for (const peer of this.node.peers()) this.node.send(peer, M_CLAIM, payload);
  }

  #removed(muc: MucService, room: Room): void {
    const k = room.jid.bare;
    this.#dirty.delete(room);
    const at = this.#replicaAt.get(k);
    this.#replicaAt.delete(k);
    const ref: RoomRef = { domain: muc.domain, room: room.name };
    if (at) this.node.send(at, M_UNREPLICATE, JSON.stringify(ref));
    this.#broadcast(M_RELEASE, ref);
  }

  /** A stanza reached a room here: its replica is now behind (by history alone, for messages). */
  #touched(muc: MucService, to: Jid, stanza: Element): void {
    const room = muc.rooms.get(to.local);
    if (!room) return;
    const full = !(stanza.name === "message" && to.isBare && stanza.attrs.type === "groupchat");
    this.#mark(room, full);
  }

  #mark(room: Room, full: boolean): void {
    if (this.#hosting.size === 0) return; // nobody to replicate to
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
      const target = this.#replicaTarget(muc, room.name);
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
      this.counters.replicated++;
      if (changed || before !== target) {
        const data: RoomData = { ...ref, snapshot: snapshotToWire(snap) };
        this.node.send(target, M_REPLICA, JSON.stringify(data));
      } else {
        this.node.send(target, M_HISTORY, JSON.stringify({ ...ref, history: historyToWire(snap) }));
      }
    }
  }

  // --- Peers.

  up(peer: string): void {
    this.#links.set(peer, new Acks());
    const hello: Hello = { hosting: [], rooms: [] };
    for (const muc of this.mucs.values()) {
      if (muc.config.host_rooms) hello.hosting.push(muc.domain);
      for (const name of muc.rooms.keys()) hello.rooms.push({ domain: muc.domain, room: name });
    }
    this.node.send(peer, M_HELLO, JSON.stringify(hello));
    this.#sayRooms(true);
  }

  /** The mesh found this node woke from a stall: what went out before it counts as handled. */
  woke(): void {
    this.#stalled();
  }

  down(peer: string): void {
    // First: a stall found now counts the frames sent before it as acknowledged, this link's too.
    const woke = this.#stalled();
    const link = this.#links.get(peer);
    this.#links.delete(peer);
    this.#hosting.delete(peer);
    this.#peerRooms.delete(peer);
    this.#owners.drop(peer);
    // The peer's sessions are gone from the directory: their occupants leave, once, with 333.
    for (const muc of this.mucs.values()) {
      for (const room of [...muc.rooms.values()]) {
        // The replica hears of it, or a later takeover would show them leaving a second time.
        if (this.#dropGone(room, woke)) this.#mark(room, true);
      }
    }
    const orphans = this.#replicas.drop(peer);
    // The replicas' stanzas are the peer's: read with its parser, as they would have been.
    const decoder = link?.decoder ?? new StanzaDecoder();
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
      setTimeout(() => [...this.node.peers()].includes(peer) || takeOver(), this.#deadAfterMs);
    }
    // After the takeover: a room taken over here handles its stanzas here.
    if (link) this.#resend(peer, link);
    // Rooms whose replica was there get a new one.
    for (const muc of this.mucs.values()) {
      for (const room of muc.rooms.values()) {
        if (this.#replicaAt.get(room.jid.bare) === peer) this.#mark(room, true);
      }
    }
  }

  /**
   * Whether this node woke from a stall less than `dead_after` ago: its timer, due every quarter
   * of it, fired half of it late.
   */
  #stalled(): boolean {
    const now = Date.now();
    if (now - this.#tick > this.#deadAfterMs * 0.75) {
      this.#stalledAt = now;
      // Forwarded before the stall: the peers, up all along, handled it. Their acknowledgements
      // came meanwhile and are dropped with the links that close now (link.ts): not sent again.
      for (const link of this.#links.values()) link.assumeAcked();
    }
    this.#tick = now;
    return now - this.#stalledAt < this.#deadAfterMs;
  }

  /** A dead node's room comes back here, or on the node that runs it now. */
  #takeOver(
    muc: MucService,
    name: string,
    snapshot: WireSnapshot,
    decoder: StanzaDecoder,
  ): void {
    const owner = this.#ownerOf(muc, name);
    if (owner !== undefined && owner !== this.node.name) {
      const data: RoomData = { domain: muc.domain, room: name, snapshot };
      if (this.node.send(owner, M_MERGE, JSON.stringify(data))) return;
    }
    const room = muc.restore(name, snapshotFromWire(snapshot, (xml) => decoder.decode(xml)));
    this.#sendClaims(); // before the room speaks: the other nodes take its word from here on
    this.counters.takeovers++;
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

  #registerFrames(): void {
    const node = this.node;
    node.on(M_STANZA, (peer, { header: [from, to, hops], xml }) => {
      // Counted even if dropped: the count acknowledges frames, not stanzas.
      this.#links.get(peer)?.received((n) => node.send(peer, M_STANZA_ACK, String(n)));
      const addr = jids(from, to);
      const muc = addr && this.mucs.get(addr[1].domain);
      if (!addr || !muc) return;
      const stanza = this.#decoder(peer).stanza(xml);
      this.#route(muc, stanza, addr[0], addr[1], hops + 1, peer);
    });
    node.on(M_STANZA_ACK, (peer, n) => this.#links.get(peer)?.acked(n));
    node.on(M_FANOUT, (peer, frame) => this.#fanoutHere(peer, frame));
    node.on(M_HELLO, (peer, hello) => {
      this.#hosting.set(peer, new Set(hello.hosting));
      for (const ref of hello.rooms) this.#claimed(peer, ref);
      // The rendezvous order changed: replicas may belong elsewhere now.
      for (const muc of this.mucs.values()) {
        for (const room of muc.rooms.values()) this.#mark(room, false);
      }
    });
    node.on(M_CLAIM, (peer, claim) => {
      const muc = this.mucs.get(claim.domain);
      if (muc) checkOwners(muc, claim.status);
      this.#claimed(peer, claim);
    });
    node.on(M_RELEASE, (peer, { domain, room }) => {
      const k = key(domain, room);
      if (this.#owners.nodeOf(k) === peer) this.#owners.delete(k);
      this.#peerRooms.get(peer)?.get(domain)?.delete(room);
    });
    // A replica is believed only from the node that runs the room (its claim came first).
    node.on(M_REPLICA, (peer, { domain, room, snapshot }) => {
      const muc = this.mucs.get(domain);
      if (!muc) return;
      checkSnapshot(muc, snapshot);
      const k = key(domain, room);
      if (this.#owners.nodeOf(k) !== peer) return; // a stale copy's, or not the peer's room
      this.#replicas.set(k, peer, snapshot);
    });
    node.on(M_HISTORY, (peer, { domain, room, history }) => {
      const muc = this.mucs.get(domain);
      if (!muc) return;
      checkHistory(muc, history);
      const replica = this.#replicas.get(key(domain, room));
      if (replica?.node === peer) replica.value.history = history;
    });
    node.on(M_UNREPLICATE, (peer, { domain, room }) => {
      const k = key(domain, room);
      if (this.#replicas.get(k)?.node === peer) this.#replicas.delete(k);
    });
    node.on(M_MERGE, (peer, data) => this.#merge(peer, data));
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
    const k = key(domain, room);
    const mine = muc.rooms.get(room);
    if (!mine) {
      this.#owners.set(k, peer, null);
      return this.#sendDepartures(muc, room);
    }
    if (pick([this.node.name, peer], k) === this.node.name) return; // the peer merges into ours
    this.#owners.set(k, peer, null);
    // Within the limits the peer checks; occupants left out (admins who joined a full room) are
    // told they left, as the peer would tell them.
    const [snap, cut] = withinLimits(muc, mine.snapshot());
    for (const o of cut) this.#toldGone(muc, mine.jid, o, FULL);
    const data: RoomData = { domain, room, snapshot: snapshotToWire(snap) };
    this.node.send(peer, M_MERGE, JSON.stringify(data));
    log.info("room {room} also ran on {peer}: merged into it", { room: k, peer });
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
    if (this.#ownerOf(muc, room) !== this.node.name) {
      return limited.info(peer, "ignored {peer}'s copy of room {room}: not run here", {
        peer,
        room: key(domain, room),
      });
    }
    const snap = snapshotFromWire(snapshot, (xml) => this.#decoder(peer).decode(xml));
    const mine = muc.rooms.get(room);
    if (mine) {
      // Claimed again, before the room speaks: the other nodes take its word from here on, and
      // send it the departures the absorbed copy had missed.
      this.#announceClaim(muc, mine);
      mine.absorb(this.#fit(muc, mine, snap));
      this.#sendDepartures(muc, room);
      this.#mark(mine, true);
    } else {
      const restored = muc.restore(room, snap);
      this.#sendClaims();
      this.counters.takeovers++;
      this.#dropGone(restored);
    }
  }

  /**
   * What of `snap` fits into `room`: occupants new to it only while it has room (its maxUsers:
   * merges do not make it grow past that); those left out are told they left.
   */
  #fit(muc: MucService, room: Room, snap: RoomSnapshot): RoomSnapshot {
    let free = room.config.maxUsers - room.occupantCount;
    const occupants = snap.occupants.filter((o) => {
      // Its nick is held here, or its sessions are in already: absorb decides.
      if (room.occupantByNick(o.nick) || o.sessions.every((s) => room.occupantOf(s.jid))) {
        return true;
      }
      if (free-- > 0) return true;
      this.#toldGone(muc, room.jid, o, FULL);
      return false;
    });
    return { ...snap, occupants };
  }

  /** Tells an occupant of a copy of a room that did not make it into the other that it left. */
  #toldGone(muc: MucService, room: Jid, o: OccupantData, reason: string): void {
    const from = room.withResource(o.nick);
    const p = x(
      "presence",
      { from: from.full, type: "unavailable" },
      x(
        "x",
        { xmlns: NS.mucUser },
        x("item", { affiliation: "none", role: "none" }, x("reason", {}, reason)),
        x("status", { code: "110" }),
      ),
    );
    for (const s of o.sessions) muc.router.route(readdressed(p, s.jid.full), from, s.jid);
  }

  // --- Status.

  #memberStatus(member: string): Record<string, unknown> {
    const rooms: RoomStatus[] = member === this.node.name
      ? [...this.mucs.values()].flatMap(localRoomStatus)
      : [...this.#peerRooms.get(member)?.values() ?? []].flatMap((i) => [...i.rooms.values()]);
    const occupants = rooms.reduce((n, r) => n + r.occupants, 0);
    this.counters.replicas = this.#replicas.size;
    const counters = member === this.node.name ? { muc: this.counters } : {};
    return { rooms: rooms.length, occupants, ...counters };
  }

  /** Tells every peer the rooms run here, when that changed (or `always`, a peer came up). */
  #sayRooms(always: boolean): void {
    const said = JSON.stringify(
      [...this.mucs.values()].flatMap((muc) =>
        [...muc.rooms.values()].map((r) => announced(muc, r))
      ),
    );
    if (said === this.#roomsSaid && !always) return;
    this.#roomsSaid = said;
    for (const peer of this.node.peers()) this.node.send(peer, M_ROOMS, said);
  }

  // --- Helpers.

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

  #broadcast(type: FrameType<unknown>, ref: RoomRef): void {
    const payload = JSON.stringify(ref);
    for (const peer of this.node.peers()) this.node.send(peer, type, payload);
  }

  /** The parser of `peer`'s stanzas (a handler runs only while its link is up). */
  #decoder(peer: string): StanzaDecoder {
    return this.#links.get(peer)?.decoder ?? new StanzaDecoder();
  }
}

/** Why an occupant of a merged copy of a room is not in the room that stays. */
const FULL = "the room was full when its two copies merged";

/** A room's state as this node sends it: within the limits its peers check. */
function withinLimits(muc: MucService, snap: RoomSnapshot): [RoomSnapshot, OccupantData[]] {
  const { max_occupants, max_history } = muc.config;
  if (snap.occupants.length <= max_occupants && snap.history.length <= max_history) {
    return [snap, []];
  }
  const occupants = snap.occupants.slice(0, max_occupants);
  const history = max_history === 0 ? [] : snap.history.slice(-max_history);
  return [{ ...snap, occupants, history }, snap.occupants.slice(max_occupants)];
}

/** A room's state from a peer: within this node's limits of its MUC service, or a FrameError. */
function checkSnapshot(muc: MucService, snapshot: WireSnapshot): void {
  const most = muc.config.max_occupants;
  if (snapshot.occupants.length > most) {
    throw new FrameError(`a room of more than ${most} occupants (max_occupants)`);
  }
  checkHistory(muc, snapshot.history);
}

function checkHistory(muc: MucService, history: WireSnapshot["history"]): void {
  const most = muc.config.max_history;
  if (history.length > most) throw new FrameError(`more than ${most} messages of history`);
}

/** A room's owners as a peer announces them: at most max_affiliations, or a FrameError. */
function checkOwners(muc: MucService, room: AnnouncedRoom): void {
  const most = muc.config.max_affiliations;
  if (room.owners.length > most) throw new FrameError(`more than ${most} owners of a room`);
}

/** A room run here as announced to the other nodes. */
function announced(muc: MucService, room: Room): AnnouncedRoom {
  return { ...statusOfRoom(muc, room), owners: room.owners() };
}
