// Multi-User Chat's distribution over a cluster (the RoomDistribution of src/muc/service.ts): each
// room runs on one node, and the parts below make it so.
//
// - muc_placement.ts: where each room runs, what every node runs (claims, releases, listings).
// - muc_forwarding.ts: a room's stanzas forwarded to its node, kept until acknowledged, resent
//   after a takeover; departures sent again whenever a room changes hands; stalls.
// - muc_fanout.ts: a room's message to its occupants on other nodes, one frame per node.
// - muc_replication.ts: each room's replica on the next node, takeover when its node dies, and the
//   merge of two copies of a room (muc_merge.ts), within this node's limits (muc_limits.ts).
//
// This file wires them, implements the interface the service calls, and tells the parts of peers
// coming and going in the order each needs.
import type { Element } from "../xml/element.ts";
import type { Jid } from "../jid/jid.ts";
import type { MucService, RoomDistribution } from "../muc/service.ts";
import type { Occupant } from "../muc/occupant.ts";
import type { Room } from "../muc/room.ts";
import type { RoomStatus } from "../admin/socket.ts";
import { localRoomStatus } from "../muc/room_status.ts";
import type { ClusterNode, PeerObserver } from "./node.ts";
import { StanzaDecoder } from "./wire.ts";
import { parseDuration } from "../config/duration.ts";
import { RoomPlacement } from "./muc_placement.ts";
import { RoomForwarding } from "./muc_forwarding.ts";
import { RoomFanout } from "./muc_fanout.ts";
import { RoomReplication } from "./muc_replication.ts";

/** How often each node tells the others what rooms it runs (for `parley rooms`). */
const ROOMS_MS = 1000;

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

interface Parts {
  placement: RoomPlacement;
  forwarding: RoomForwarding;
  fanout: RoomFanout;
  replication: RoomReplication;
}

export class MucRooms implements RoomDistribution, PeerObserver {
  /** This node's MUC services, by domain. */
  readonly mucs = new Map<string, MucService>();
  readonly node: string;
  #parts: Parts | undefined;
  readonly #deadAfterMs: number;

  constructor(readonly cluster: ClusterNode) {
    this.node = cluster.name;
    this.#deadAfterMs = parseDuration(cluster.ctx.config.cluster!.dead_after)!;
  }

  /** A node with no MUC service takes no part in rooms' frames. */
  serve(muc: MucService): void {
    this.#parts ??= this.#join();
    this.mucs.set(muc.domain, muc);
  }

  #join(): Parts {
    const { cluster, mucs } = this;
    const events = {
      claimed: (muc: MucService, room: string) => forwarding.sendDepartures(muc, room),
      conflict: (peer: string, muc: MucService, room: Room) =>
        replication.mergeInto(peer, muc, room),
      hello: () => replication.markAll(),
    };
    const placement = new RoomPlacement(cluster, mucs, events);
    const forwarding = new RoomForwarding(
      cluster,
      mucs,
      placement,
      this.#deadAfterMs,
      (muc, to, stanza) => replication.touched(muc, to, stanza),
    );
    const fanout = new RoomFanout(cluster, mucs, placement, forwarding);
    const replication = new RoomReplication(cluster, mucs, placement, forwarding);
    cluster.follow(this);
    cluster.addStatus((member) => this.#memberStatus(member));
    Deno.unrefTimer(setInterval(() => {
      placement.sayRooms(false);
      forwarding.forgetDepartures();
    }, ROOMS_MS));
    return { placement, forwarding, fanout, replication };
  }

  get #p(): Parts {
    return this.#parts!;
  }

  // --- RoomDistribution.

  route(muc: MucService, stanza: Element, from: Jid, to: Jid): void {
    this.#p.forwarding.take(muc, stanza, from, to);
  }

  fanout(muc: MucService, stanza: Element, from: Jid, occupants: Iterable<Occupant>): void {
    this.#p.fanout.fanout(muc, stanza, from, occupants);
  }

  added(_muc: MucService, room: Room): void {
    this.#p.placement.added(room);
    this.#p.replication.added(room);
  }

  removed(muc: MucService, room: Room): void {
    this.#p.replication.removed(muc, room);
    this.#p.placement.removed(muc, room);
  }

  nodeOf(muc: MucService, room: string): string | null {
    return this.#p.placement.ownerOf(muc, room) ?? null;
  }

  elsewhere(muc: MucService): RoomStatus[] {
    return this.#p.placement.elsewhere(muc);
  }

  ownedElsewhere(muc: MucService, bare: string): Iterable<string> {
    return this.#p.placement.ownedElsewhere(muc, bare);
  }

  // --- Peers.

  up(peer: string): void {
    this.#p.forwarding.up(peer);
    this.#p.placement.up(peer);
  }

  /** The mesh found this node woke from a stall: what went out before it counts as handled. */
  woke(): void {
    this.#p.forwarding.stalled();
  }

  down(peer: string): void {
    const { placement, forwarding, replication } = this.#p;
    // First: a stall found now counts the frames sent before it as acknowledged, this link's too.
    const woke = forwarding.stalled();
    const link = forwarding.down(peer);
    placement.down(peer);
    // The replicas' stanzas are the peer's: read with its parser, as they would have been.
    const decoder = link?.decoder ?? new StanzaDecoder();
    replication.down(peer, woke, decoder, this.#deadAfterMs);
    // After the takeover: a room taken over here handles its stanzas here.
    if (link) forwarding.resend(peer, link);
    replication.replaceReplicas(peer);
  }

  // --- Status.

  #memberStatus(member: string): Record<string, unknown> {
    const { placement, forwarding, fanout, replication } = this.#p;
    const rooms: RoomStatus[] = member === this.node
      ? [...this.mucs.values()].flatMap(localRoomStatus)
      : placement.roomsOf(member);
    const occupants = rooms.reduce((n, r) => n + r.occupants, 0);
    if (member !== this.node) return { rooms: rooms.length, occupants };
    const muc: MucCounters = {
      fanoutFramesSent: fanout.framesSent,
      fanoutFramesReceived: fanout.framesReceived,
      fanoutDelivered: fanout.delivered,
      forwarded: forwarding.forwarded,
      resent: forwarding.resent,
      takeovers: replication.takeovers,
      replicated: replication.replicated,
      replicas: replication.replicas,
    };
    return { rooms: rooms.length, occupants, muc };
  }
}
