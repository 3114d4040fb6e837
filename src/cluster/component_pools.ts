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
import type { ComponentInstance, ComponentPool, PoolObserver } from "../component/pool.ts";
import type { Services } from "../server/service.ts";
import { componentPlugin } from "../server/services.ts";
import type { ClusterChannel, ClusterNode } from "./node.ts";
import type { ClusterExtension } from "./extensions.ts";
import { COMPONENT_TYPES, text } from "./wire.ts";
import { Acks } from "./acks.ts";
import { logger } from "../log/logger.ts";

const log = logger("cluster");

/** Every instance the sender holds (on link up): JSON InstanceRecord[]. */
const INSTANCES = COMPONENT_TYPES;
/** One instance connected to the sender: JSON InstanceRecord. */
const JOINED = COMPONENT_TYPES + 1;
/** One instance of the sender gone: JSON { domain, id }. */
const LEFT = COMPONENT_TYPES + 2;
/** A stanza for an instance of the receiver: hops, domain, instance id, XML (one a line). */
const FORWARD = COMPONENT_TYPES + 3;
/** How many FORWARD frames of this link the receiver has handled (decimal). */
const FORWARDED = COMPONENT_TYPES + 4;
/** Asks for the traffic counters of the receiver's instances: the request number. */
const STATS = COMPONENT_TYPES + 5;
/** The answer: JSON { n, stats: { [instance id]: [received, sent] } }. */
const STATS_OF = COMPONENT_TYPES + 6;

/** Reroutes of one stanza, beyond which it bounces (views of the live set differ briefly). */
const MAX_HOPS = 3;
/** How long `parley components` waits for other nodes' counters. */
const STATS_WAIT_MS = 1000;

interface InstanceRecord {
  domain: string;
  id: string;
  since: number;
  remote: string;
}

/** A FORWARD frame's parts. */
interface Frame {
  hops: number;
  domain: string;
  id: string;
  xml: string;
}

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
  /** The stanza of a frame, with its addresses and pool; undefined (logged) if unreadable. */
  read(frame: Frame, pools: Map<string, ComponentPool>, peer: string) {
    const stanza = this.decoder.decode(frame.xml);
    const from = stanza && parseJid(stanza.attrs.from ?? "");
    const to = stanza && parseJid(stanza.attrs.to ?? "");
    const pool = pools.get(frame.domain);
    if (stanza && from && to && pool) return { stanza, from, to, pool };
    log.warn("dropped an unreadable component stanza from {peer}", { peer });
  }
}

export class ComponentLinks implements ClusterChannel, PoolObserver {
  #peers = new Map<string, PeerForwards>();
  #statsWaits = new Map<number, { waiting: Set<string>; done: () => void }>();
  #statsNext = 0;
  #refreshing: Promise<void> | undefined;

  constructor(readonly node: ClusterNode, readonly pools: Map<string, ComponentPool>) {
    node.register([INSTANCES, JOINED, LEFT, FORWARD, FORWARDED, STATS, STATS_OF], this);
    for (const pool of pools.values()) pool.observer = this;
    // `parley cluster status`: how many component instances each member holds.
    node.addStatus((member) => {
      let instances = 0;
      for (const pool of pools.values()) {
        for (const i of pool.instances.values()) if (i.node === member) instances++;
      }
      return { components: instances };
    });
  }

  // --- PoolObserver: this node's instances, told to every peer.

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

  // --- ClusterChannel.

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

  down(peer: string): void {
    const forwards = this.#peers.get(peer);
    this.#peers.delete(peer);
    this.#dropInstancesOf(peer);
    for (const wait of this.#statsWaits.values()) wait.waiting.delete(peer);
    this.#statsSettled();
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
      const f = parseFrame(frame);
      const p = forwards.read(f, this.pools, peer);
      p?.pool.route(p.stanza, p.from, p.to, f.hops);
    }
  }

  message(peer: string, type: number, payload: Uint8Array): void {
    const forwards = this.#peers.get(peer);
    if (!forwards) return;
    switch (type) {
      case INSTANCES: {
        // All the peer holds: what we had of it is stale (a healed partition, a restart).
        this.#dropInstancesOf(peer);
        for (const r of JSON.parse(text(payload)) as InstanceRecord[]) this.#place(peer, r);
        return;
      }
      case JOINED:
        return this.#place(peer, JSON.parse(text(payload)));
      case LEFT: {
        const { domain, id } = JSON.parse(text(payload));
        const pool = this.pools.get(domain);
        const instance = pool?.instances.get(id);
        if (instance && instance.node === peer) pool!.remove(instance);
        return;
      }
      case FORWARD:
        return this.#handOver(peer, forwards, text(payload));
      case FORWARDED:
        return forwards.acked(Number(text(payload)));
      case STATS: {
        const stats: Record<string, [number, number]> = {};
        for (const pool of this.pools.values()) {
          for (const i of pool.instances.values()) {
            if (i.node === this.node.name) stats[i.instanceId] = [i.stats.received, i.stats.sent];
          }
        }
        this.node.send(peer, STATS_OF, JSON.stringify({ n: Number(text(payload)), stats }));
        return;
      }
      case STATS_OF: {
        const { n, stats } = JSON.parse(text(payload));
        for (const pool of this.pools.values()) {
          for (const i of pool.instances.values()) {
            const s = stats[i.instanceId];
            if (i instanceof RemoteInstance && i.node === peer && s) {
              [i.stats.received, i.stats.sent] = s;
            }
          }
        }
        this.#statsWaits.get(n)?.waiting.delete(peer);
        this.#statsSettled();
        return;
      }
    }
  }

  // --- Internals.

  #place(peer: string, r: InstanceRecord): void {
    const pool = this.pools.get(r.domain);
    if (!pool) {
      return log.warn("{peer} has an instance of {domain}, which is not configured here", {
        peer,
        domain: r.domain,
      });
    }
    pool.add(new RemoteInstance(r.id, peer, r.remote, r.since, this));
  }

  #dropInstancesOf(peer: string): void {
    for (const pool of this.pools.values()) {
      for (const i of [...pool.instances.values()]) if (i.node === peer) pool.remove(i);
    }
  }

  /** A FORWARD frame: to the named local instance, or rerouted if it has just left. */
  #handOver(peer: string, forwards: PeerForwards, payload: string): void {
    forwards.received((n) => this.node.send(peer, FORWARDED, String(n)));
    const f = parseFrame(payload);
    const instance = this.pools.get(f.domain)?.instances.get(f.id);
    const reroute = () => {
      const p = forwards.read(f, this.pools, peer);
      if (!p) return;
      if (f.hops < MAX_HOPS) return p.pool.route(p.stanza, p.from, p.to, f.hops + 1);
      p.pool.router.bounce(p.stanza, "service-unavailable", {
        text: `no ${p.pool.domain} instance could take it`,
      });
    };
    if (instance?.node !== this.node.name) return reroute();
    if (!isAnswer(f.xml)) {
      if (instance.deliverText?.(f.xml, reroute)) return;
    } else {
      const p = forwards.read(f, this.pools, peer);
      if (!p || instance.deliver(p.stanza, p.from, p.to, f.hops)) return;
    }
    reroute();
  }

  #askStats(): Promise<void> {
    const waiting = new Set(this.#peers.keys());
    if (waiting.size === 0) return Promise.resolve();
    const n = ++this.#statsNext;
    for (const peer of waiting) this.node.send(peer, STATS, String(n));
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#statsWaits.delete(n);
        resolve();
      }, STATS_WAIT_MS);
      this.#statsWaits.set(n, {
        waiting,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  #statsSettled(): void {
    for (const [n, wait] of this.#statsWaits) {
      if (wait.waiting.size > 0) continue;
      this.#statsWaits.delete(n);
      wait.done();
    }
  }

  #broadcast(type: number, payload: string): void {
    for (const peer of this.#peers.keys()) this.node.send(peer, type, payload);
  }
}

function parseFrame(payload: string): Frame {
  const nl1 = payload.indexOf("\n");
  const nl2 = payload.indexOf("\n", nl1 + 1);
  const nl3 = payload.indexOf("\n", nl2 + 1);
  return {
    hops: Number(payload.slice(0, nl1)),
    domain: payload.slice(nl1 + 1, nl2),
    id: payload.slice(nl2 + 1, nl3),
    xml: payload.slice(nl3 + 1),
  };
}

/** Whether a stanza's text may be an iq result or error (of which a component's answer is one). */
function isAnswer(xml: string): boolean {
  return xml.startsWith("<iq") && (xml.includes('type="result"') || xml.includes('type="error"'));
}

function record(pool: ComponentPool, i: ComponentInstance): InstanceRecord {
  return { domain: pool.domain, id: i.instanceId, since: i.connectedAt, remote: i.remote };
}

/** The entry in CLUSTER_EXTENSIONS. */
export const componentCluster: ClusterExtension = {
  name: "components",
  start(node: ClusterNode, services: Services): void {
    new ComponentLinks(node, services.of(componentPlugin));
  },
};
