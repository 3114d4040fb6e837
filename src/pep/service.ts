// The personal eventing service of a host's accounts (XEP-0163): publish with auto-create and
// publish-options, items, retract, purge, delete, subscriptions, configuration; and the
// notifications they send. Notifications go, once the item is stored, to every available
// resource (on any node of the cluster: the session directory's deliver) of the owner and of each
// contact the access model lets read that advertises NODE+notify (XEP-0115, caps.ts), and to
// explicit subscribers. One account's publishes run one after another on this node (its serial
// queue), so their notifications leave in publish order.
//
// Some nodes are views of others (XEP-0402's storage:bookmarks over urn:xmpp:bookmarks:1): a
// VirtualNode answers for them, and its changes are notified as its own.
import { Buffer } from "node:buffer";
import type { Host } from "../core/host.ts";
import { Hooks } from "../core/hooks.ts";
import type { Jid } from "../jid/jid.ts";
import { parseJid } from "../jid/jid.ts";
import type { Session } from "../router/sessions.ts";
import { hasFrom, hasTo, type RosterItem } from "../storage/store.ts";
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { parseStanza } from "../xml/parse_string.ts";
import { readdressed } from "../im/delivery.ts";
import { readRefusal } from "./access.ts";
import { Caps } from "./caps.ts";
import {
  DEFAULT_CONFIG,
  itemsKept,
  type NodeConfig,
  preconditionsHold,
  submitted,
} from "./node_config.ts";
import { type Affiliation, type Item, type NodeRecord, PepNodes } from "./nodes.ts";
import { PubsubError } from "./pubsub_error.ts";

/** Longest node name and item id accepted (they are keys in the store). */
const MAX_NAME = 1024;
/** Affiliations of one node (a whitelist: the few who may read it). */
const MAX_AFFILIATIONS = 256;
/** Explicit subscriptions one other account may hold to one account's nodes. */
const SUBSCRIPTIONS_PER_SUBSCRIBER = 16;

export interface PublishedEvent {
  owner: Jid;
  node: string;
  id: string;
  payload: Element;
}

export interface RetractedEvent {
  owner: Jid;
  node: string;
  ids: string[];
}

export type PepEvents = {
  /** An item was published (stored, and notified). */
  published: PublishedEvent;
  /** Items were retracted, or (ids empty) the node purged or deleted. */
  retracted: RetractedEvent;
};

/** A node whose items are another's, seen another way. */
export interface VirtualNode {
  items(owner: Jid): Promise<[string, Element][]>;
  publish(owner: Jid, payload: Element): Promise<void>;
}

/** What to send: items published, or retracted, or the node purged or deleted. */
type Change =
  | { items: [string, Element][] }
  | { retract: string[] }
  | { purge: true }
  | { delete: true };

export class PepService {
  readonly nodes: PepNodes;
  readonly caps: Caps;
  readonly events = new Hooks<PepEvents>();
  readonly virtual = new Map<string, VirtualNode>();

  constructor(readonly host: Host) {
    this.nodes = new PepNodes(host.server, host.domain);
    this.caps = new Caps(host.server.store);
  }

  get #limits() {
    return this.host.server.config.pep;
  }

  /**
   * Publishes `payload` as item `id` (a new id when absent) of the owner's node, creating it with
   * `options` (a publish-options form) or checking them against it; the item's id.
   */
  async publish(
    owner: Jid,
    node: string,
    payload: Element,
    options: { id?: string; form?: Element; publisher?: Jid } = {},
  ): Promise<string> {
    checkName(node);
    if (options.id !== undefined) checkName(options.id);
    const xml = payload.toString();
    const max = this.#limits.max_item_size;
    if (Buffer.byteLength(xml) > max) {
      throw new PubsubError("not-acceptable", "payload-too-big", `items are at most ${max} bytes`);
    }
    const view = this.virtual.get(node);
    if (view) {
      await view.publish(owner, payload);
      return options.id ?? "current";
    }
    // Handlers of "published" run inside this account's serial task: they must not wait for
    // another task of the account (they start their own work, not awaited here).
    return await this.host.server.serial.call(owner.bare, async () => {
      const limit = this.#limits.max_items;
      let record = (await this.nodes.load(owner)).nodes.get(node);
      if (!record) {
        const config = options.form
          ? submitted(options.form, DEFAULT_CONFIG, limit, true)
          : { ...DEFAULT_CONFIG };
        record = await this.nodes.create(owner, node, config).catch(async (e) => {
          // Made by another node meanwhile: published to as it was made.
          const made = e instanceof PubsubError && e.condition === "conflict" &&
            await this.nodes.stored(owner, node);
          if (!made) throw e;
          return made;
        });
        if (options.form && !preconditionsHold(options.form, record.config, limit)) {
          throw new PubsubError("conflict", "precondition-not-met");
        }
      } else if (options.form && !preconditionsHold(options.form, record.config, limit)) {
        throw new PubsubError("conflict", "precondition-not-met");
      }
      const id = options.id ?? crypto.randomUUID();
      // A node that does not persist items still keeps its newest, the last published item (as
      // Prosody does).
      const item: Item = { xml, publisher: (options.publisher ?? owner).bare, at: Date.now() };
      await this.nodes.items(node).put(owner.local, owner.domain, id, item, {
        keep: record.config.persist_items ? itemsKept(record.config, limit) : 1,
      });
      await this.#notify(owner, node, record, { items: [[id, payload]] });
      this.events.fire("published", { owner, node, id, payload });
      return id;
    });
  }

  /** The node's record, or item-not-found. */
  async record(owner: Jid, node: string): Promise<NodeRecord> {
    const record = (await this.nodes.load(owner)).nodes.get(node);
    if (!record) throw new PubsubError("item-not-found");
    return record;
  }

  /** Refuses `reader` (a bare JID) when the access model does not let it read the node. */
  async checkRead(owner: Jid, record: NodeRecord, reader: string): Promise<void> {
    if (reader === owner.bare) return;
    const needsRoster = record.config.access_model === "presence" ||
      record.config.access_model === "roster";
    const item = needsRoster
      ? await this.host.server.store.getRosterItem(owner.local, owner.domain, reader)
      : null;
    const refusal = readRefusal(record, owner.bare, reader, item);
    if (refusal) throw refusal;
  }

  /** The names of the owner's nodes `reader` (a bare JID) may read. */
  async readable(owner: Jid, reader: string): Promise<string[]> {
    const { nodes } = await this.nodes.load(owner);
    const item = reader === owner.bare
      ? null
      : await this.host.server.store.getRosterItem(owner.local, owner.domain, reader);
    const out: string[] = [];
    for (const [node, record] of nodes) {
      if (!readRefusal(record, owner.bare, reader, item)) out.push(node);
    }
    return out;
  }

  /** The items `reader` asked for, oldest first: by id, or the newest `last`, or all. */
  async items(
    owner: Jid,
    node: string,
    reader: Jid,
    query: { ids?: string[]; last?: number } = {},
  ): Promise<[string, Element][]> {
    const view = this.virtual.get(node);
    if (view) {
      // A view is its owner's alone, as a whitelist node with nobody on the list.
      if (reader.bare !== owner.bare) throw new PubsubError("not-allowed", "closed-node");
      return await view.items(owner);
    }
    const record = await this.record(owner, node);
    await this.checkRead(owner, record, reader.bare);
    const stored = await this.nodes.items(node).list(owner.local, owner.domain, {
      keys: query.ids,
      last: query.last,
    });
    return parsed(stored);
  }

  /** Removes items; notifies their retraction when asked or configured to. */
  retract(owner: Jid, node: string, ids: string[], notify: boolean): Promise<void> {
    for (const id of ids) checkName(id);
    return this.host.server.serial.call(owner.bare, async () => {
      const record = await this.record(owner, node);
      const gone = await this.nodes.items(node).remove(owner.local, owner.domain, ids);
      if (gone.length === 0) throw new PubsubError("item-not-found");
      if (notify || record.config.notify_retract) {
        await this.#notify(owner, node, record, { retract: gone });
      }
      this.events.fire("retracted", { owner, node, ids: gone });
    });
  }

  /** Removes every item of the node (purge) or the node itself (delete), and says so. */
  clear(owner: Jid, node: string, what: "purge" | "delete"): Promise<void> {
    return this.host.server.serial.call(owner.bare, async () => {
      const record = await this.record(owner, node);
      const change = what === "purge" ? { purge: true as const } : { delete: true as const };
      // Who hears of it is read before a delete drops the subscriptions.
      const recipients = await this.#recipients(owner, node, record);
      if (what === "purge") await this.nodes.items(node).clear(owner.local, owner.domain);
      else await this.nodes.delete(owner, node);
      if (what === "purge" || record.config.notify_delete) {
        this.#send(owner, node, recipients, change);
      }
      this.events.fire("retracted", { owner, node, ids: [] });
    });
  }

  /** Changes the node's configuration (its owner's form). */
  configure(owner: Jid, node: string, form: Element): Promise<void> {
    return this.host.server.serial.call(owner.bare, async () => {
      const record = await this.record(owner, node);
      const config = submitted(form, record.config, this.#limits.max_items);
      await this.nodes.update(owner, node, { ...record, config });
      const items = this.nodes.items(node);
      const kept = await items.list(owner.local, owner.domain);
      const keep = config.persist_items ? itemsKept(config, this.#limits.max_items) : 1;
      if (kept.length > keep) {
        await items.remove(
          owner.local,
          owner.domain,
          kept.slice(0, kept.length - keep).map(([k]) => k),
        );
      }
    });
  }

  /** Sets affiliations (bare JID, affiliation; "none" removes one) of the owner's node. */
  affiliate(owner: Jid, node: string, changes: [string, Affiliation][]): Promise<void> {
    return this.host.server.serial.call(owner.bare, async () => {
      const record = await this.record(owner, node);
      const affiliations = { ...record.affiliations };
      for (const [jid, a] of changes) {
        if (a === "none") delete affiliations[jid];
        else affiliations[jid] = a;
      }
      if (Object.keys(affiliations).length > MAX_AFFILIATIONS) {
        throw new PubsubError("not-allowed", undefined, "too many affiliations");
      }
      await this.nodes.update(owner, node, { ...record, affiliations });
    });
  }

  /** Creates a node explicitly (XEP-0060 §8.1) with an optional configuration form. */
  async create(owner: Jid, node: string, form?: Element): Promise<void> {
    checkName(node);
    if (this.virtual.has(node)) throw new PubsubError("conflict");
    return await this.host.server.serial.call(owner.bare, async () => {
      const config: NodeConfig = form
        ? submitted(form, DEFAULT_CONFIG, this.#limits.max_items)
        : { ...DEFAULT_CONFIG };
      await this.nodes.create(owner, node, config);
    });
  }

  /**
   * Subscribes or unsubscribes `jid` (the requester's own address). A subscription returns the
   * event of the node's last item, to send once the subscription is answered (XEP-0060 §6.1.7).
   */
  async subscribe(
    owner: Jid,
    node: string,
    requester: Jid,
    jid: Jid,
    on: boolean,
  ): Promise<Element | undefined> {
    if (jid.bare !== requester.bare) throw new PubsubError("bad-request", "invalid-jid");
    const record = await this.record(owner, node);
    const subscribers = (await this.nodes.load(owner)).subscribers;
    if (!on) {
      if (!subscribers.get(node)?.includes(jid.full)) {
        throw new PubsubError("unexpected-request", "not-subscribed");
      }
      await this.nodes.subscribe(owner, node, jid.full, false);
      return undefined;
    }
    await this.checkRead(owner, record, requester.bare);
    // One stranger cannot take an account's every subscription (OMEMO nodes are open to all).
    let theirs = 0;
    for (const jids of subscribers.values()) {
      for (const j of jids) if (parseJid(j)?.bare === jid.bare) theirs++;
    }
    if (theirs >= SUBSCRIPTIONS_PER_SUBSCRIBER && requester.bare !== owner.bare) {
      throw new PubsubError("not-allowed", "too-many-subscriptions");
    }
    await this.nodes.subscribe(owner, node, jid.full, true);
    if (record.config.send_last_published_item === "never") return undefined;
    const [last] = await this.nodes.items(node).list(owner.local, owner.domain, { last: 1 });
    return last && this.#event(owner, node, parsedItems([last]), jid.full, last[1].at);
  }

  /**
   * Sends `session` the last published item of each of `nodes` (those it newly advertises
   * +notify for) of its own account and of each contact whose presence it receives, where it may
   * read them (XEP-0163 §6.2 last published item).
   */
  async sendLast(session: Session, nodes: string[]): Promise<void> {
    const { store } = this.host.server;
    const me = session.jid;
    const roster = await store.getRoster(me.local, me.domain);
    const contacts = new Map<string, RosterItem>();
    for (const item of roster.items) {
      const jid = parseJid(item.jid);
      if (jid?.domain === me.domain && jid.isBare && hasTo(item.subscription)) {
        contacts.set(jid.local, item);
      }
    }
    const users = [me.local, ...contacts.keys()];
    await Promise.all(nodes.map(async (node) => {
      if (this.virtual.has(node)) return;
      for (const last of await this.nodes.items(node).latest(users, me.domain)) {
        const owner = parseJid(`${last.user}@${me.domain}`)!;
        const record = (await this.nodes.load(owner)).nodes.get(node);
        if (!record || record.config.send_last_published_item !== "on_sub_and_presence") continue;
        if (owner.bare !== me.bare) {
          // The owner's roster item for this account: mirrored by the one read above for
          // presence; the roster access model reads the owner's own (its groups).
          const item = record.config.access_model === "roster"
            ? await store.getRosterItem(owner.local, owner.domain, me.bare)
            : { ...contacts.get(owner.local)!, subscription: "from" as const };
          if (readRefusal(record, owner.bare, me.bare, item)) continue;
        }
        const items = parsedItems([[last.key, last.value]]);
        this.host.server.router.route(
          this.#event(owner, node, items, me.full, last.value.at),
          owner,
          me,
        );
      }
    }));
  }

  /**
   * Notifies an item of a view (a VirtualNode) to the owner's resources that want it and to its
   * subscribers: nobody else reads views.
   */
  async notifyOwner(owner: Jid, node: string, id: string, payload: Element): Promise<void> {
    const ownerOnly: NodeRecord = {
      config: { ...DEFAULT_CONFIG, access_model: "whitelist" },
      affiliations: {},
    };
    const recipients = await this.#recipients(owner, node, ownerOnly);
    this.#send(owner, node, recipients, { items: [[id, payload]] });
  }

  /** Sends a change of the owner's node to whoever should hear of it. */
  async #notify(owner: Jid, node: string, record: NodeRecord, change: Change): Promise<void> {
    this.#send(owner, node, await this.#recipients(owner, node, record), change);
  }

  /**
   * Who hears of a change of the owner's node (full JIDs, each once): every available resource
   * of the owner and of each contact the access model lets read that advertises NODE+notify, and
   * each explicit subscriber the access model still lets read (at each available resource when
   * subscribed with a bare JID).
   */
  async #recipients(owner: Jid, node: string, record: NodeRecord): Promise<Jid[]> {
    const { store, sessions } = this.host.server;
    const ownOnly = record.config.access_model === "whitelist" &&
      Object.keys(record.affiliations).length === 0;
    const [roster, account] = await Promise.all([
      ownOnly ? { items: [] } : store.getRoster(owner.local, owner.domain),
      this.nodes.load(owner),
    ]);
    const contacts = new Map(roster.items.map((i) => [i.jid, i]));
    const mayRead = (bare: string) =>
      !readRefusal(record, owner.bare, bare, contacts.get(bare) ?? null);
    const candidates: Session[] = [];
    const add = (bare: string) => {
      for (const s of sessions.resources(bare)) if (s.available) candidates.push(s);
    };
    add(owner.bare);
    for (const item of roster.items) {
      if (hasFrom(item.subscription) && mayRead(item.jid)) add(item.jid);
    }
    const unknown = candidates.map((s) => s.caps).filter((k) =>
      k !== undefined && !this.caps.known(k)
    );
    if (unknown.length) await this.caps.load(unknown as string[]);
    const interest = `${node}+notify`;
    const to = new Map<string, Jid>();
    for (const s of candidates) if (this.caps.of(s)?.has(interest)) to.set(s.jid.full, s.jid);
    for (const jid of account.subscribers.get(node) ?? []) {
      const sub = parseJid(jid);
      if (!sub || !this.host.server.router.serves(sub.domain) || !mayRead(sub.bare)) continue;
      if (!sub.isBare) to.set(sub.full, sub);
      else {
        for (const s of sessions.resources(sub.bare)) if (s.available) to.set(s.jid.full, s.jid);
      }
    }
    return [...to.values()];
  }

  /**
   * Sends a change to its recipients, routed as any message from the owner (so a recipient that
   * blocks the owner, XEP-0191, does not get it), the payload serialized once for all.
   */
  #send(owner: Jid, node: string, recipients: Jid[], change: Change): void {
    if (recipients.length === 0) return;
    const { router } = this.host.server;
    const message = this.#event(owner, node, change, "");
    for (const to of recipients) router.route(readdressed(message, to.full), owner, to);
  }

  /**
   * The event message of a change (its payload serialized once for every recipient), addressed
   * to `to`; `publishedAt` stamps it (XEP-0203) as the last published item, sent later.
   */
  #event(owner: Jid, node: string, change: Change, to: string, publishedAt?: number): Element {
    let body: Element;
    if ("items" in change) {
      body = x(
        "items",
        { node },
        ...change.items.map(([id, payload]) => x("item", { id }, payload)),
      );
    } else if ("retract" in change) {
      body = x("items", { node }, ...change.retract.map((id) => x("retract", { id })));
    } else body = x("purge" in change ? "purge" : "delete", { node });
    const event = x("event", { xmlns: NS.pubsubEvent }, body);
    event.toString(); // kept: each recipient's message reuses it (Element's serialize)
    return x(
      "message",
      { from: owner.bare, to, type: "headline", id: crypto.randomUUID() },
      event,
      publishedAt !== undefined &&
        x("delay", {
          xmlns: NS.delay,
          from: owner.bare,
          stamp: new Date(publishedAt).toISOString(),
        }),
    );
  }
}

function checkName(name: string): void {
  if (!name || name.length > MAX_NAME) {
    throw new PubsubError("bad-request", name ? undefined : "nodeid-required");
  }
}

function parsedItems(stored: [string, Item][]): { items: [string, Element][] } {
  return { items: parsed(stored) };
}

/** Stored items with their payloads parsed (one that no longer parses is left out). */
function parsed(stored: [string, Item][]): [string, Element][] {
  const out: [string, Element][] = [];
  for (const [id, item] of stored) {
    const payload = parseStanza(item.xml);
    if (payload) out.push([id, payload]);
  }
  return out;
}
