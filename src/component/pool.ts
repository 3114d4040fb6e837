// The instances connected for one component domain, and the router's handler for that domain:
// each stanza goes to the instance its balance key picks. A stanza for an instance that is gone
// before the stanza was written is rerouted to another; with none left the sender gets
// service-unavailable. Nothing is dropped silently.
//
// In a cluster the pool also holds the instances connected to other nodes (src/cluster/
// component_pools.ts keeps them in step), so every node picks from the same live set and a
// user's traffic reaches the same instance whichever node the user is on.
import type { Element } from "../xml/element.ts";
import type { Jid } from "../jid/jid.ts";
import type { DomainHandler, Router } from "../router/router.ts";
import type { ComponentConfig } from "../config/schema.ts";
import type { Distribution } from "../core/distribution.ts";
import { balanceKey, pick } from "./balance.ts";
import { HandshakeDelays } from "./handshake_delay.ts";
import { logger } from "../log/logger.ts";

const log = logger("component");
/** Keys the share of each instance is estimated over (`parley components`). */
const SHARE_SAMPLE = 4096;
/** Keys whose pick is remembered; beyond this many the memory starts over. */
const PICKS_KEPT = 65_536;

export interface ComponentInstance {
  /** Stable, cluster-wide unique id, `node/connection`: every node knows it by this name. */
  readonly instanceId: string;
  /** The node the instance is connected to. */
  readonly node: string;
  readonly remote: string;
  readonly connectedAt: number;
  /** Stanzas delivered to the instance and sent by it. */
  readonly stats: { received: number; sent: number };
  /**
   * Queues the stanza for the instance; false when it is already gone. `hops` counts the nodes
   * that rerouted it already (a bound on reroutes while views differ).
   */
  deliver(stanza: Element, from: Jid, to: Jid, hops: number): boolean;
  /**
   * An instance of this node: queues a stanza as the text another node serialized it as (no iq
   * answer: those have their id restored on the way out); false when it is already gone.
   * `unwritten` takes the stanza back if the instance closes before writing it.
   */
  deliverText?(xml: string, unwritten: () => void): boolean;
}

/**
 * How component pools are spread over nodes (src/core/distribution.ts): alone, LocalPools; in a
 * cluster, src/cluster/component_pools.ts tells every node of each instance coming and going.
 */
export interface PoolDistribution extends Distribution<ComponentPool> {
  /** An instance connected to this node joined `pool`. */
  joined(pool: ComponentPool, instance: ComponentInstance): void;
  /** An instance connected to this node left `pool`. */
  left(pool: ComponentPool, instance: ComponentInstance): void;
  /** Brings the traffic counters of other nodes' instances up to date. */
  refresh(): Promise<void>;
}

interface Vacancy {
  id: string;
  address: string;
  until: number;
}

export class ComponentPool implements DomainHandler {
  /** Live instances by id: this node's, and (in a cluster) every other node's. */
  readonly instances = new Map<string, ComponentInstance>();
  /** Wrong secrets for this domain, per source address. */
  readonly handshakeDelays = new HandshakeDelays();
  /** Ids of this node's instances that left within the reconnect grace. */
  #vacant: Vacancy[] = [];
  /**
   * The instance id each recent key picked, while the live set stays the same: a rendezvous pick
   * hashes the key once per instance, a measurable share of routing a stanza.
   */
  #picks = new Map<string, string>();

  constructor(
    readonly config: ComponentConfig,
    /** The virtual host the component is configured under (it sends keepalive pings). */
    readonly hostDomain: string,
    readonly router: Router,
    readonly distribution: PoolDistribution,
    /** This node's name: the first half of its instances' ids. */
    readonly node = "local",
  ) {
    distribution.serve(this);
  }

  get domain(): string {
    return this.config.domain;
  }

  /**
   * The id for a new connection of this node: the id of an instance that left less than
   * `reconnect_grace_ms` ago (one from the same address first), so that it takes back exactly
   * the keys it had, or else a new one.
   */
  claimId(remote: string, connection: string): string {
    const now = Date.now();
    this.#vacant = this.#vacant.filter((v) => v.until > now);
    const address = hostOf(remote);
    const i = Math.max(0, this.#vacant.findIndex((v) => v.address === address));
    const reused = this.#vacant.splice(i, 1)[0];
    return reused?.id ?? `${this.node}/${connection}`;
  }

  add(instance: ComponentInstance): void {
    this.instances.set(instance.instanceId, instance);
    this.#picks.clear();
    if (instance.node === this.node) this.distribution.joined(this, instance);
  }

  remove(instance: ComponentInstance): void {
    if (this.instances.get(instance.instanceId) !== instance) return;
    this.instances.delete(instance.instanceId);
    this.#picks.clear();
    if (instance.node !== this.node) return;
    const grace = this.config.reconnect_grace_ms;
    if (grace > 0) {
      this.#vacant.push({
        id: instance.instanceId,
        address: hostOf(instance.remote),
        until: Date.now() + grace,
      });
    }
    this.distribution.left(this, instance);
  }

  /** The instance a stanza from `from` to `to` goes to now. */
  choose(from: Jid, to: Jid): ComponentInstance | undefined {
    const key = balanceKey(this.config.balance, from, to);
    if (key === null) {
      const all = [...this.instances.values()];
      return all[Math.floor(Math.random() * all.length)];
    }
    let id = this.#picks.get(key);
    if (id === undefined) {
      id = pick(this.instances.keys(), key);
      if (id === undefined) return undefined;
      if (this.#picks.size >= PICKS_KEPT) this.#picks.clear();
      this.#picks.set(key, id);
    }
    return this.instances.get(id);
  }

  receive(stanza: Element, from: Jid, to: Jid): void {
    this.route(stanza, from, to, 0);
  }

  /** `receive`, for a stanza that `hops` nodes have rerouted already. */
  route(stanza: Element, from: Jid, to: Jid, hops: number): void {
    // A reply to an instance's own request goes to that instance only, or nowhere: another
    // instance must never see it, and a result or error is never answered (RFC 6120 §8.2.3).
    const owner = requester(stanza);
    if (owner !== undefined) {
      if (!this.instances.get(owner)?.deliver(stanza, from, to, hops)) {
        log.debug("reply {id} for gone instance {owner} dropped", { id: stanza.attrs.id, owner });
      }
      return;
    }
    for (let tries = this.instances.size; tries >= 0; tries--) {
      const instance = this.choose(from, to);
      if (!instance) break;
      if (instance.deliver(stanza, from, to, hops)) return;
      this.remove(instance); // gone: try the next choice
    }
    this.router.bounce(stanza, "service-unavailable", {
      text: `no ${this.domain} instance is connected`,
    });
  }

  /** Each instance's share of the keys (estimated over sample keys; random: equal shares). */
  shares(): Map<string, number> {
    const out = new Map<string, number>();
    for (const id of this.instances.keys()) out.set(id, 0);
    if (this.config.balance === "random") {
      for (const id of out.keys()) out.set(id, 1 / out.size);
      return out;
    }
    for (let k = 0; k < SHARE_SAMPLE; k++) {
      const id = pick(out.keys(), `sample${k}@share`)!;
      out.set(id, out.get(id)! + 1 / SHARE_SAMPLE);
    }
    return out;
  }
}

// An instance's iq request leaves with its id prefixed by the instance id, so that the answer,
// arriving on whichever node, goes back to the instance that asked; the prefix is taken off as
// the answer is written to it. Instance ids hold no "~" (node names and connection ids).
const TAG = "pc~";

/** The id an iq request of instance `instanceId` carries on its way out. */
export function requestId(instanceId: string, id: string): string {
  return `${TAG}${instanceId}~${id}`;
}

/** The instance an iq result or error answers, if it answers one. */
function requester(stanza: Element): string | undefined {
  const { type, id } = stanza.attrs;
  if (stanza.name !== "iq" || (type !== "result" && type !== "error")) return undefined;
  if (!id?.startsWith(TAG)) return undefined;
  const end = id.indexOf("~", TAG.length);
  return end < 0 ? undefined : id.slice(TAG.length, end);
}

/** The id the instance gave its request, on an answer to it (else the stanza's id). */
export function originalId(stanza: Element, instanceId: string): string | undefined {
  const id = stanza.attrs.id;
  return requester(stanza) === instanceId ? id!.slice(TAG.length + instanceId.length + 1) : id;
}

/** "1.2.3.4:5" → "1.2.3.4" (also for IPv6 addresses). */
function hostOf(remote: string): string {
  return remote.slice(0, remote.lastIndexOf(":"));
}
