// External component pools across the cluster. Each node owns the records of the instances
// connected to it and sends them to every peer (all of them when a link comes up, then each join
// and leave), so every node holds the same live set per domain and the rendezvous `pick` sends a
// user's traffic to the same instance whichever node the user is on. When an instance leaves, its
// node says so at once; when a node dies, every peer drops its instances: either way only the
// keys that instance won move.
//
// A stanza for an instance on another node travels as one frame naming the instance. The node
// holding it writes it to the instance as the text it came as (only an answer to an instance's iq
// is parsed, to restore its id), or, when the instance left before the frame arrived, parses and
// reroutes it over its own view (which already lacks the instance: frames on a link keep their
// order), at most MAX_HOPS times. Forwarded frames are kept until the peer acknowledges them; if
// the link dies first they are REROUTED to the instances left (the dead node's are gone by then),
// never dropped: a stanza the dead node had already written to its instance may then reach the
// component twice.
// Replies from components go through the router like any stanza, to users on any node.
import type { Element } from "../xml/element.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import type { ComponentInstance, ComponentPool, PoolDistribution } from "../component/pool.ts";
import type { ClusterNode, PeerObserver } from "./node.ts";
import { Acks } from "./acks.ts";
import { Asks } from "./asks.ts";
import { FrameError } from "./codec.ts";
import { PeerOwned } from "./peer_owned.ts";
import {
  FORWARD,
  FORWARDED,
  type InstanceRecord,
  INSTANCES,
  JOINED,
  LEFT,
  STATS,
  STATS_OF,
} from "./component_wire.ts";
import type { FrameType } from "./frame_type.ts";
import { logger } from "../log/logger.ts";
import { LimitedLog } from "../log/limited.ts";

const log = logger("cluster");
const limited = new LimitedLog(log);

/** Reroutes of one stanza, beyond which it bounces (views of the live set differ briefly). */
const MAX_HOPS = 3;
/** How long `parley components` waits for other nodes' counters. */
const STATS_WAIT_MS = 1000;

/** A FORWARD frame's parts: hops, domain, instance id, XML. */
type Frame = [hops: number, domain: string, id: string, xml: string];

/** An instance connected to another node: delivering to it is a frame to that node. */
class RemoteInstance implements ComponentInstance {
  readonly stats = { received: 0, sent: 0 };

  constructor(
    readonly instanceId: string,
    readonly node: string,
    readonly remote: string,
    readonly connectedAt: number,
    readonly links: ComponentLinks,
  ) {}

  deliver(stanza: Element, _from: Jid, to: Jid, hops: number): boolean {
    return this.links.forward(this, stanza, to, hops);
  }
}

/**
 * Per peer: forwarded stanzas counted both ways, and the frames not yet acknowledged (only text:
 * parsed again in the rare case of a link dying, as sessions' are).
 */
class PeerForwards extends Acks {
  /** The stanza of a frame, with its addresses and pool; a FrameError when it has none. */
  read([, domain, , xml]: Frame, pools: Map<string, ComponentPool>) {
    const stanza = this.decoder.stanza(xml);
    const from = parseJid(stanza.attrs.from ?? "");
    const to = parseJid(stanza.attrs.to ?? "");
    const pool = pools.get(domain);
    if (from && to && pool) return { stanza, from, to, pool };
    throw new FrameError("a component stanza without addresses, or for no pool here");
  }
}

/** Component pools' distribution over a cluster. */
export class ComponentLinks implements PeerObserver, PoolDistribution {
  /** The pools of this node, by domain. */
  readonly pools = new Map<string, ComponentPool>();
  #peers = new Map<string, PeerForwards>();
  /** Other nodes' instances ("domain id"), counted per node. */
  #held: PeerOwned<null>;
  /** Requests for other nodes' instance counters (`parley components`). */
  #stats = new Asks<true>();
  #refreshing: Promise<void> | undefined;

  constructor(readonly node: ClusterNode) {
    this.#held = new PeerOwned(
      node.maxRecordsPerPeer,
      "component instances (max_records_per_peer)",
    );
  }

  /** A node with no pool takes no part in their frames. */
  serve(pool: ComponentPool): void {
    if (this.pools.size === 0) this.#join();
    this.pools.set(pool.domain, pool);
  }

  #join(): void {
    this.#registerFrames();
    this.node.follow(this);
    // `parley cluster status`: how many component instances each member holds.
    this.node.addStatus((member) => {
      let instances = 0;
      for (const pool of this.pools.values()) {
        for (const i of pool.instances.values()) if (i.node === member) instances++;
      }
      return { components: instances };
    });
  }

  // --- PoolDistribution: this node's instances, told to every peer.

  joined(pool: ComponentPool, instance: ComponentInstance): void {
    this.#broadcast(JOINED, JSON.stringify(record(pool, instance)));
  }

  left(pool: ComponentPool, instance: ComponentInstance): void {
    this.#broadcast(LEFT, JSON.stringify({ domain: pool.domain, id: instance.instanceId }));
  }

  refresh(): Promise<void> {
    return this.#refreshing ??= this.#askStats().finally(() => this.#refreshing = undefined);
  }

  /** Sends a stanza to an instance on another node; false when there is no link to it. */
  forward(target: RemoteInstance, stanza: Element, to: Jid, hops: number): boolean {
    const peer = this.#peers.get(target.node);
    const frame = `${hops}\n${to.domain}\n${target.instanceId}\n${stanza}`;
    if (!peer || !this.node.send(target.node, FORWARD, frame)) return false;
    peer.sent(frame);
    return true;
  }

  // --- Peers.

  up(peer: string): void {
    this.#peers.set(peer, new PeerForwards());
    const records: InstanceRecord[] = [];
    for (const pool of this.pools.values()) {
      for (const i of pool.instances.values()) {
        if (i.node === this.node.name) records.push(record(pool, i));
      }
    }
    this.node.send(peer, INSTANCES, JSON.stringify(records));
  }

  woke(): void {
    for (const forwards of this.#peers.values()) forwards.assumeAcked();
  }

  down(peer: string): void {
    const forwards = this.#peers.get(peer);
    this.#peers.delete(peer);
    this.#dropInstancesOf(peer);
    this.#stats.gone(peer);
    if (!forwards) return;
    // What the peer may not have handed over goes to the instances left (its own are gone).
    const pending = forwards.unacked();
    if (pending.length) {
      log.info("rerouting {n} stanzas for component instances on {peer}", {
        n: pending.length,
        peer,
      });
    }
    for (const frame of pending) {
      const f = FORWARD.codec.decode(frame);
      const p = forwards.read(f, this.pools);
      p.pool.route(p.stanza, p.from, p.to, f[0]);
    }
  }

  #registerFrames(): void {
    const forwards = (peer: string) => this.#peers.get(peer)!;
    this.node.on(INSTANCES, (peer, records) => {
      // All the peer holds: what we had of it is stale (a healed partition, a restart).
      this.#dropInstancesOf(peer);
      for (const r of records) this.#place(peer, r);
    });
    this.node.on(JOINED, (peer, r) => this.#place(peer, r));
    this.node.on(LEFT, (peer, { domain, id }) => {
      const pool = this.pools.get(domain);
      const instance = pool?.instances.get(id);
      if (instance && instance.node === peer) {
        pool!.remove(instance);
        this.#held.delete(`${domain} ${id}`);
      }
    });
    this.node.on(FORWARD, (peer, f) => this.#handOver(peer, forwards(peer), f));
    this.node.on(FORWARDED, (peer, n) => forwards(peer).acked(n));
    this.node.on(STATS, (peer, n) => {
      const stats: Record<string, [number, number]> = {};
      for (const pool of this.pools.values()) {
        for (const i of pool.instances.values()) {
          if (i.node === this.node.name) stats[i.instanceId] = [i.stats.received, i.stats.sent];
        }
      }
      this.node.send(peer, STATS_OF, JSON.stringify({ n, stats }));
    });
    this.node.on(STATS_OF, (peer, { n, stats }) => {
      for (const pool of this.pools.values()) {
        for (const i of pool.instances.values()) {
          const s = Object.hasOwn(stats, i.instanceId) ? stats[i.instanceId] : undefined;
          if (i instanceof RemoteInstance && i.node === peer && s) {
            [i.stats.received, i.stats.sent] = s;
          }
        }
      }
      this.#stats.answered(peer, n, true);
    });
  }

  // --- Internals.

  #place(peer: string, r: InstanceRecord): void {
    const pool = this.pools.get(r.domain);
    if (!pool) {
      return limited.warn(
        peer,
        "{peer} has an instance of {domain}, which is not configured here",
        {
          peer,
          domain: r.domain,
        },
      );
    }
    // An instance id is `node/connection`: a peer names only its own instances.
    if (!r.id.startsWith(peer + "/")) throw new FrameError(`instance ${r.id} is not ${peer}'s`);
    this.#held.set(`${r.domain} ${r.id}`, peer, null);
    pool.add(new RemoteInstance(r.id, peer, r.remote, r.since, this));
  }

  #dropInstancesOf(peer: string): void {
    this.#held.drop(peer);
    for (const pool of this.pools.values()) {
      for (const i of [...pool.instances.values()]) if (i.node === peer) pool.remove(i);
    }
  }

  /** A FORWARD frame: to the named local instance, or rerouted if it has just left. */
  #handOver(peer: string, forwards: PeerForwards, f: Frame): void {
    forwards.received((n) => this.node.send(peer, FORWARDED, String(n)));
    const [hops, domain, id, xml] = f;
    const instance = this.pools.get(domain)?.instances.get(id);
    const reroute = () => {
      const p = forwards.read(f, this.pools);
      if (hops < MAX_HOPS) return p.pool.route(p.stanza, p.from, p.to, hops + 1);
      p.pool.router.bounce(p.stanza, "service-unavailable", {
        text: `no ${p.pool.domain} instance could take it`,
      });
    };
    if (instance?.node !== this.node.name) return reroute();
    if (!isAnswer(xml)) {
      // Rerouted later, outside this frame's handling: a stanza that does not parse is logged.
      const later = () => {
        try {
          reroute();
        } catch (e) {
          limited.warn(peer, "dropped a component stanza from {peer}: {reason}", {
            peer,
            reason: String(e),
          });
        }
      };
      if (instance.deliverText?.(xml, later)) return;
    } else {
      const p = forwards.read(f, this.pools);
      if (instance.deliver(p.stanza, p.from, p.to, hops)) return;
    }
    reroute();
  }

  async #askStats(): Promise<void> {
    await this.#stats.ask(
      this.#peers.keys(),
      (peer, n) => this.node.send(peer, STATS, String(n)),
      STATS_WAIT_MS,
    );
  }

  #broadcast(type: FrameType<unknown>, payload: string): void {
    for (const peer of this.#peers.keys()) this.node.send(peer, type, payload);
  }
}

/** Whether a stanza's text may be an iq result or error (of which a component's answer is one). */
function isAnswer(xml: string): boolean {
  return xml.startsWith("<iq") && (xml.includes('type="result"') || xml.includes('type="error"'));
}

function record(pool: ComponentPool, i: ComponentInstance): InstanceRecord {
  return { domain: pool.domain, id: i.instanceId, since: i.connectedAt, remote: i.remote };
}
