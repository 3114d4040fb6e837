// The instances connected for one component domain, and the router's handler for that domain:
// each stanza goes to the instance its balance key picks. A stanza for an instance that is gone
// before the stanza was written is rerouted to another; with none left the sender gets
// service-unavailable. Nothing is dropped silently.
import type { Element } from "../xml/element.ts";
import type { Jid } from "../jid/jid.ts";
import type { DomainHandler, Router } from "../router/router.ts";
import type { ComponentConfig } from "../config/schema.ts";
import { balanceKey, pick } from "./balance.ts";
import { HandshakeDelays } from "./handshake_delay.ts";

export interface ComponentInstance {
  /** Stable, cluster-wide unique id (node name and connection id). */
  readonly id: string;
  readonly remote: string;
  readonly connectedAt: number;
  /** Stanzas delivered to the instance and sent by it. */
  readonly stats: { received: number; sent: number };
  /** Queues the stanza for writing; false when the instance is already gone. */
  deliver(stanza: Element, from: Jid, to: Jid): boolean;
}

export class ComponentPool implements DomainHandler {
  readonly instances = new Map<string, ComponentInstance>();
  /** Wrong secrets for this domain, per source address. */
  readonly handshakeDelays = new HandshakeDelays();

  constructor(
    readonly config: ComponentConfig,
    /** The virtual host the component is configured under (it sends keepalive pings). */
    readonly hostDomain: string,
    readonly router: Router,
  ) {}

  get domain(): string {
    return this.config.domain;
  }

  add(instance: ComponentInstance): void {
    this.instances.set(instance.id, instance);
  }

  remove(instance: ComponentInstance): void {
    if (this.instances.get(instance.id) === instance) this.instances.delete(instance.id);
  }

  /** The instance a stanza from `from` to `to` goes to now. */
  choose(from: Jid, to: Jid): ComponentInstance | undefined {
    const key = balanceKey(this.config.balance, from, to);
    if (key === null) {
      const all = [...this.instances.values()];
      return all[Math.floor(Math.random() * all.length)];
    }
    const id = pick(this.instances.keys(), key);
    return id === undefined ? undefined : this.instances.get(id);
  }

  receive(stanza: Element, from: Jid, to: Jid): void {
    for (let tries = this.instances.size; tries >= 0; tries--) {
      const instance = this.choose(from, to);
      if (!instance) break;
      if (instance.deliver(stanza, from, to)) return;
      this.remove(instance); // gone: try the next choice
    }
    this.router.bounce(stanza, "service-unavailable", {
      text: `no ${this.domain} instance is connected`,
    });
  }
}
