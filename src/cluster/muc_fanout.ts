// A room's message reaches its occupants on other nodes as one frame per node (M_FANOUT): the
// stanza serialized once and the sessions there to hand it to; not acknowledged, so resumable
// sessions (XEP-0198), which outlive their node, get theirs one by one, as other stanzas. Each frame also carries how many of
// that node's M_STANZA frames this node has handled, so a node that got a room's copy of a message
// never sends that message again (one frame says both).
//
// A peer is believed only about what it owns: a room's message only from a room of a MUC domain
// served here, which this node neither runs nor knows to run elsewhere, and only to sessions of
// this cluster's domains.
import type { Element } from "../xml/element.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import { readdressed } from "../im/delivery.ts";
import type { MucService } from "../muc/service.ts";
import type { Occupant } from "../muc/occupant.ts";
import type { ClusterNode } from "./node.ts";
import type { RemoteSession } from "./directory.ts";
import { FrameError } from "./codec.ts";
import type { RoomPlacement } from "./muc_placement.ts";
import type { RoomForwarding } from "./muc_forwarding.ts";
import { type FanoutHeader, M_FANOUT, withHeader } from "./muc_wire.ts";

export class RoomFanout {
  /** M_FANOUT frames sent: one per message and other node with occupants. */
  framesSent = 0;
  framesReceived = 0;
  /** Stanzas handed to local sessions out of received M_FANOUT frames. */
  delivered = 0;

  constructor(
    readonly node: ClusterNode,
    readonly mucs: Map<string, MucService>,
    readonly placement: RoomPlacement,
    readonly forwarding: RoomForwarding,
  ) {
    node.on(M_FANOUT, (peer, frame) => this.#fanoutHere(peer, frame));
  }

  /** Sends a room's stanza to its occupants: here through the router, elsewhere a frame a node. */
  fanout(muc: MucService, stanza: Element, from: Jid, occupants: Iterable<Occupant>): void {
    const router = this.node.ctx.router;
    const sessions = this.node.ctx.sessions;
    let remote: Map<string, string[]> | undefined;
    for (const occ of occupants) {
      for (const s of occ.sessions.values()) {
        const record = sessions.get(s.jid);
        const at = record?.node;
        // A resumable session elsewhere gets it as any stanza for a session there: kept until
        // acknowledged, and resent to wherever it lives on should that node die meanwhile.
        if (!at || (record as RemoteSession).replica !== undefined) {
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
    const most = muc.config.max_occupants;
    for (const [peer, all] of remote) {
      for (let at = 0; at < all.length; at += most) {
        const to = all.length > most ? all.slice(at, at + most) : all;
        // Acknowledges the peer's M_STANZA frames handled so far (this message's among them).
        const acked = this.forwarding.link(peer)?.receivedCount ?? 0;
        const header: FanoutHeader = [from.full, to, acked];
        // Not sent: the peer is gone, its sessions leave the room once it is declared dead.
        if (!this.node.send(peer, M_FANOUT, withHeader(header, xml))) break;
        this.framesSent++;
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
    if (acked) this.forwarding.link(peer)?.acked(acked);
    const stanza = this.forwarding.decoder(peer).stanza(xml);
    if (!this.placement.runsAt(peer, muc, sender.local)) return; // a stale copy (a node frozen, back)
    this.framesReceived++;
    for (const c of stanza.children) if (typeof c !== "string") c.toString();
    for (const full of to) {
      const target = parseJid(full);
      // Only this cluster's sessions: a peer does not make this node send elsewhere.
      if (!target || !this.node.hosts.has(target.domain)) continue;
      this.node.ctx.router.route(readdressed(stanza, full), sender, target);
      this.delivered++;
    }
  }
}
