// An account's PEP nodes as stored: each node's configuration and affiliations (map
// STORES.pepNodes of the account, by node name), explicit subscriptions (map
// STORES.pepSubscriptions, key "node\njid"), and items (items shape "pep/" + node, by item id).
// Nodes and subscriptions are read on every publish: a per-node cache of them per account, dropped
// on every node of the cluster before a change is answered (core/account_cache.ts).
import { AccountCache } from "../core/account_cache.ts";
import type { ServerContext } from "../core/context.ts";
import type { Jid } from "../jid/jid.ts";
import type { ItemStore } from "../storage/shapes.ts";
import { STORES } from "../storage/store.ts";
import { DEFAULT_CONFIG, type NodeConfig } from "./node_config.ts";
import { PubsubError } from "./pubsub_error.ts";

export type Affiliation = "owner" | "publisher" | "member" | "none" | "outcast";
export const AFFILIATIONS: readonly Affiliation[] = [
  "owner",
  "publisher",
  "member",
  "none",
  "outcast",
];

export interface NodeRecord {
  config: NodeConfig;
  /** Affiliations other than the owner's, by bare JID. */
  affiliations: Record<string, Affiliation>;
}

/** An item as stored: its payload's XML, who published it and when (ms since the epoch). */
export interface Item {
  xml: string;
  publisher: string;
  at: number;
}

/** What an account has, as cached: its nodes and, per node, its explicit subscribers. */
export interface AccountNodes {
  nodes: Map<string, NodeRecord>;
  /** Subscribed JIDs (as given: full or bare) per node. */
  subscribers: Map<string, string[]>;
}

const SUBSCRIPTION_KEY = (node: string, jid: string) => `${node}\n${jid}`;

export class PepNodes {
  readonly #cache: AccountCache<AccountNodes>;

  /** The accounts of `domain` (a cache of its own among the node's). */
  constructor(readonly server: ServerContext, domain: string) {
    this.#cache = new AccountCache(server.caches, `pep ${domain}`, (owner) => this.#read(owner));
  }

  /** The account's nodes and subscribers (cached). */
  load(owner: Jid): Promise<AccountNodes> {
    return this.#cache.load(owner);
  }

  items(node: string): ItemStore<Item> {
    return this.server.store.items<Item>(STORES.pepItems + node);
  }

  /**
   * Creates `node` with `config`, unless the account has `pep.max_nodes` already (not-allowed,
   * max-nodes-exceeded) or has it (conflict). The cap holds across nodes writing at once.
   */
  async create(owner: Jid, node: string, config: NodeConfig): Promise<NodeRecord> {
    const record: NodeRecord = { config, affiliations: {} };
    const max = this.server.config.pep.max_nodes;
    const map = this.server.store.map<NodeRecord>(STORES.pepNodes);
    if ((await this.load(owner)).nodes.has(node)) throw new PubsubError("conflict");
    // Added only if no node (here or elsewhere) made it meanwhile: one configuration wins.
    if (!await map.set(owner.local, owner.domain, node, record, { max, add: true })) {
      if (await map.get(owner.local, owner.domain, node)) throw new PubsubError("conflict");
      throw new PubsubError("not-allowed", "max-nodes-exceeded", `more than ${max} nodes`);
    }
    await this.#changed(owner);
    return record;
  }

  /** A node's record as stored now (not cached): another node may have just made it. */
  async stored(owner: Jid, node: string): Promise<NodeRecord | null> {
    const r = await this.server.store.map<NodeRecord>(STORES.pepNodes).get(
      owner.local,
      owner.domain,
      node,
    );
    return r && { ...r, config: { ...DEFAULT_CONFIG, ...r.config } };
  }

  /** Replaces a node's record (its configuration or affiliations). */
  async update(owner: Jid, node: string, record: NodeRecord): Promise<void> {
    await this.server.store.map<NodeRecord>(STORES.pepNodes).set(
      owner.local,
      owner.domain,
      node,
      record,
    );
    await this.#changed(owner);
  }

  /** Deletes a node with its items and subscriptions. */
  async delete(owner: Jid, node: string): Promise<void> {
    const { store } = this.server;
    const subscribers = (await this.load(owner)).subscribers.get(node) ?? [];
    const subscriptions = store.map(STORES.pepSubscriptions);
    await Promise.all([
      store.map(STORES.pepNodes).set(owner.local, owner.domain, node, null),
      this.items(node).clear(owner.local, owner.domain),
      ...subscribers.map((jid) =>
        subscriptions.set(owner.local, owner.domain, SUBSCRIPTION_KEY(node, jid), null)
      ),
    ]);
    await this.#changed(owner);
  }

  /** Subscribes (true) or unsubscribes `jid` to `node`. */
  async subscribe(owner: Jid, node: string, jid: string, on: boolean): Promise<void> {
    // Bounded like the account's nodes: one cap for what a stranger can make an account keep.
    const max = this.server.config.pep.max_items;
    const ok = await this.server.store.map(STORES.pepSubscriptions).set(
      owner.local,
      owner.domain,
      SUBSCRIPTION_KEY(node, jid),
      on ? "subscribed" : null,
      { max },
    );
    if (!ok) throw new PubsubError("not-allowed", "too-many-subscriptions");
    await this.#changed(owner);
  }

  /** Forgets a removed account's nodes (the store removed them with the account). */
  forget(owner: Jid): void {
    this.#changed(owner).catch(() => {}); // a node that missed it drops everything on relink
  }

  async #read(owner: Jid): Promise<AccountNodes> {
    const { store } = this.server;
    const [nodes, subscriptions] = await Promise.all([
      store.map<NodeRecord>(STORES.pepNodes).entries(owner.local, owner.domain),
      store.map(STORES.pepSubscriptions).keys(owner.local, owner.domain),
    ]);
    const subscribers = new Map<string, string[]>();
    for (const key of subscriptions) {
      const cut = key.lastIndexOf("\n");
      const node = key.slice(0, cut);
      subscribers.set(node, [...subscribers.get(node) ?? [], key.slice(cut + 1)]);
    }
    return {
      // A record written by an older version lacks what was added since: the defaults.
      nodes: new Map(
        nodes.map(([n, r]) => [n, { ...r, config: { ...DEFAULT_CONFIG, ...r.config } }]),
      ),
      subscribers,
    };
  }

  /** Drops the account's cached nodes here and on every other node before the change is answered. */
  async #changed(owner: Jid): Promise<void> {
    this.server.caches.clear(this.#cache.name, owner.bare);
    await this.#cache.changed(owner);
  }
}
