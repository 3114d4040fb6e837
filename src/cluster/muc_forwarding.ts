// A room's stanzas reach the node running the room. Every other node forwards them there
// (M_STANZA) and keeps each frame's text, in an Acks per peer, until the room's node acknowledges
// it: by M_STANZA_ACK (all that came within 10 ms, at once), or by the count in the M_FANOUT
// frames it sends back (muc_fanout.ts). When that node is declared dead, what it did not
// acknowledge is routed again, in order, after the takeover: to the node running the room now.
//
// Departures are never lost to a change of hands: each node keeps the departures (unavailable
// presence) its users sent to a room for a while, and sends them again to the room's node each
// time a node claims the room (a takeover, the winner of a merge, a frozen node coming back with
// its stale copy). A room ignores a departure of someone not in it, and a user entering again
// through this node cancels the kept one.
//
// A node waking from a stall (frozen, swapped out: its own timers late by half `dead_after`)
// finds its peers silent and declares them dead. What it had forwarded before the stall reached
// peers that stayed up and was handled there; their acknowledgements, which came meanwhile, are
// dropped with the links (link.ts): it counts as acknowledged, and only what it forwarded after
// waking is sent again.
import type { Element } from "../xml/element.ts";
import { parseStanza } from "../xml/parse_string.ts";
import type { Jid } from "../jid/jid.ts";
import type { MucService } from "../muc/service.ts";
import type { ClusterNode } from "./node.ts";
import { StanzaDecoder } from "./wire.ts";
import { Acks } from "./acks.ts";
import { roomKey, type RoomPlacement } from "./muc_placement.ts";
import { jids, M_STANZA, M_STANZA_ACK, type StanzaHeader, withHeader } from "./muc_wire.ts";
import { logger } from "../log/logger.ts";

const log = logger("cluster");

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

export class RoomForwarding {
  /** Per linked peer: the M_STANZA frames it has not acknowledged, and its stanzas' decoder. */
  #links = new Map<string, Acks>();
  /** Departures from rooms sent by users of this node lately: room JID → full JID → departure. */
  #departures = new Map<string, Map<string, Departure>>();
  /** When this node last saw its own timer fire, and when it last woke from a stall. */
  #tick = Date.now();
  #stalledAt = 0;
  /** Stanzas forwarded to the node running their room. */
  forwarded = 0;
  /** Forwarded stanzas routed again because their node was declared dead before acknowledging. */
  resent = 0;

  constructor(
    readonly node: ClusterNode,
    readonly mucs: Map<string, MucService>,
    readonly placement: RoomPlacement,
    readonly deadAfterMs: number,
    /** A stanza was handled by a room here. */
    readonly handled: (muc: MucService, to: Jid, stanza: Element) => void,
  ) {
    node.on(M_STANZA, (peer, { header: [from, to, hops], xml }) => {
      // Counted even if dropped: the count acknowledges frames, not stanzas.
      this.#links.get(peer)?.received((n) => node.send(peer, M_STANZA_ACK, String(n)));
      const addr = jids(from, to);
      const muc = addr && this.mucs.get(addr[1].domain);
      if (!addr || !muc) return;
      const stanza = this.decoder(peer).stanza(xml);
      this.route(muc, stanza, addr[0], addr[1], hops + 1, peer);
    });
    node.on(M_STANZA_ACK, (peer, n) => this.#links.get(peer)?.acked(n));
    Deno.unrefTimer(setInterval(() => this.stalled(), deadAfterMs / 4));
  }

  /** The link to `peer`: what it acknowledged and what this node received from it. */
  link(peer: string): Acks | undefined {
    return this.#links.get(peer);
  }

  /** The parser of `peer`'s stanzas (a handler runs only while its link is up). */
  decoder(peer: string): StanzaDecoder {
    return this.#links.get(peer)?.decoder ?? new StanzaDecoder();
  }

  /** A stanza for a room from this node's router: kept if a departure, and routed. */
  take(muc: MucService, stanza: Element, from: Jid, to: Jid): void {
    if (stanza.name === "presence") this.#noteDeparture(stanza, from, to);
    this.route(muc, stanza, from, to, 0);
  }

  /** Handles a room's stanza here or forwards it to the node running the room. */
  route(muc: MucService, stanza: Element, from: Jid, to: Jid, hops: number, via?: string): void {
    const owner = this.placement.ownerOf(muc, to.local);
    if (owner === undefined) {
      return muc.router.bounce(stanza, "service-unavailable", { text: "no node runs rooms now" });
    }
    if (owner === this.node.name || owner === via || hops >= MAX_HOPS) {
      muc.handle(stanza, from, to);
      return this.handled(muc, to, stanza);
    }
    // Just woken from a stall: what went out before it is acknowledged (see stalled) first.
    if (Date.now() - this.#tick > this.deadAfterMs * 0.75) this.stalled();
    const payload = withHeader([from.full, to.full, hops] satisfies StanzaHeader, stanza);
    const link = this.#links.get(owner);
    if (!link || !this.node.send(owner, M_STANZA, payload)) {
      return muc.router.bounce(stanza, "service-unavailable", { text: "the room's node is away" });
    }
    link.sent(payload);
    this.forwarded++;
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
  sendDepartures(muc: MucService, room: string): void {
    const kept = this.#departures.get(roomKey(muc.domain, room));
    for (const d of kept?.values() ?? []) this.route(muc, d.stanza, d.from, d.to, 0);
  }

  forgetDepartures(): void {
    const before = Date.now() - DEPARTURE_KEPT * this.deadAfterMs;
    for (const [k, room] of this.#departures) {
      for (const [full, d] of room) if (d.at < before) room.delete(full);
      if (room.size === 0) this.#departures.delete(k);
    }
  }

  // --- Peers.

  up(peer: string): void {
    this.#links.set(peer, new Acks());
  }

  /** The link to a peer gone: taken out, for `resend` once its rooms are back. */
  down(peer: string): Acks | undefined {
    const link = this.#links.get(peer);
    this.#links.delete(peer);
    return link;
  }

  /**
   * The stanzas `link`'s peer, declared dead, did not acknowledge: routed again, in the order they
   * were sent, to the node running their room now (this one after a takeover).
   */
  resend(peer: string, link: Acks): void {
    const kept = link.unacked();
    if (kept.length === 0) return;
    log.info("routing {n} room stanzas sent to {peer} again", { n: kept.length, peer });
    for (const payload of kept) {
      const { header: [from, to, hops], xml } = M_STANZA.codec.decode(payload);
      const addr = jids(from, to);
      const stanza = parseStanza(xml); // this node's own frame: no peer's parser state
      const muc = addr && this.mucs.get(addr[1].domain);
      if (!addr || !stanza || !muc) continue;
      this.resent++;
      this.route(muc, stanza, addr[0], addr[1], hops);
    }
  }

  /**
   * Whether this node woke from a stall less than `dead_after` ago: its timer, due every quarter
   * of it, fired half of it late.
   */
  stalled(): boolean {
    const now = Date.now();
    if (now - this.#tick > this.deadAfterMs * 0.75) {
      this.#stalledAt = now;
      // Forwarded before the stall: the peers, up all along, handled it. Their acknowledgements
      // came meanwhile and are dropped with the links that close now (link.ts): not sent again.
      for (const link of this.#links.values()) link.assumeAcked();
    }
    this.#tick = now;
    return now - this.#stalledAt < this.deadAfterMs;
  }
}
