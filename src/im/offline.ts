// Offline messages (XEP-0160): chat and normal messages for an account with no available
// resource are stored with a delay stamp (XEP-0203) and delivered on its next initial presence.
// Over the limit the sender gets service-unavailable. Once the store has refused a message, the
// account is remembered as full, so a flood at it is refused at once, without the store or the
// account's queue, until its messages are taken: on any node of a cluster (a take drops the mark
// everywhere, through the shared caches), or, for changes made elsewhere, such as the CLI, until
// the memory expires.
//
// In a cluster a node stores messages for a session it cannot see: one on a node declared dead
// (stalled, partitioned away) or whose records have not reached it yet. When that node's sessions
// are shown again (its snapshot arrived: "node/up"), what was stored for them meanwhile is
// delivered without waiting for a new login, exactly once (a take is one atomic delete that
// returns what it deleted, so two nodes or two sessions never both get a message):
// - every node takes for the account of each of its own available sessions (priority >= 0), as
//   on initial presence: whichever node stored them;
// - a store write that ends while the account has an available resource on another node (whose
//   take may have run before the write) is taken back at once and routed to the account as
//   normal delivery would;
// - as is one that ended before this node saw that resource: the accounts stored for in the last
//   RECENT_MS are looked at again on "node/up".
// A taken message whose session ended or went unavailable meanwhile goes to the account as a new
// one would; if that finds no resource it is stored again, and sets off no further take (no
// loop). On one node only initial presence takes: the account's queue orders a write before any
// later take.
import type { Host, Module } from "../core/host.ts";
import { type Element, x } from "../xml/element.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import { NS } from "../xml/ns.ts";
import { parseStanza } from "../xml/parse_string.ts";
import { LRUCache } from "lru-cache";
import { answerFailure } from "../core/failure.ts";
import type { LocalSession } from "../router/sessions.ts";
import { deliverToBare, messageTargets } from "./delivery.ts";

/** How long a refusal is trusted without asking the store again. */
const FULL_FOR_MS = 10_000;
/** Accounts remembered as full at once; beyond it the oldest are asked about again. */
const MAX_FULL = 10_000;
/**
 * How long a cluster node remembers that it stored for an account: longer than a link takes from
 * coming up to the peer's snapshot arriving (the window in which the peer may take before this
 * node sees its sessions).
 */
const RECENT_MS = 60_000;
/** Accounts remembered so at most; beyond it the oldest are forgotten. */
const MAX_RECENT = 10_000;

/** Messages worth storing: not chat-state notifications alone, not marked no-store (XEP-0334). */
function storable(msg: Element): boolean {
  let content = false;
  for (const c of msg.elements()) {
    const ns = c.attrs.xmlns;
    if (ns === NS.hints && (c.name === "no-store" || c.name === "no-permanent-store")) return false;
    if (ns !== NS.chatStates && c.name !== "thread") content = true;
  }
  return content;
}

/**
 * Accounts whose offline store is full, by bare JID. A refusal marks the account unless a take
 * was queued after the refused push (the take runs after it and empties the store), so a mark
 * is never older than the last take queued: a message refused on the mark would also have been
 * refused by the store.
 */
export class FullStores {
  #marks: LRUCache<string, true>;
  /** Takes queued and not yet finished, per account. */
  #taking = new Map<string, number>();
  /** Counts takes on other nodes: a refusal from before one is not kept. */
  #epoch = 0;

  constructor(ttlMs = FULL_FOR_MS, max = MAX_FULL, now = () => performance.now()) {
    // No timers: an expired mark goes when looked up or evicted.
    this.#marks = new LRUCache({ max, ttl: ttlMs, ttlResolution: 0, perf: { now } });
  }

  has(bare: string): boolean {
    return this.#marks.has(bare);
  }

  /** What `refused` needs to know that no other node took meanwhile: read before the push. */
  get epoch(): number {
    return this.#epoch;
  }

  /** The store refused a message for `bare`, pushed at `epoch`. */
  refused(bare: string, epoch = this.#epoch): void {
    if (!this.#taking.has(bare) && epoch === this.#epoch) this.#marks.set(bare, true);
  }

  /** The store has room again (the account was removed). */
  forget(bare: string): void {
    this.#marks.delete(bare);
  }

  /** Another node took `bare`'s messages (or, with no key, may have taken anyone's). */
  takenElsewhere(bare?: string): void {
    this.#epoch++;
    if (bare === undefined) this.#marks.clear();
    else this.forget(bare);
  }

  /** A take is queued: the store will have room. */
  taking(bare: string): void {
    this.forget(bare);
    this.#taking.set(bare, (this.#taking.get(bare) ?? 0) + 1);
  }

  taken(bare: string): void {
    const n = this.#taking.get(bare)! - 1;
    if (n > 0) this.#taking.set(bare, n);
    else this.#taking.delete(bare);
  }
}

/**
 * The accounts a cluster node stored messages for lately, oldest first (a Map keeps insertion
 * order; an account stored for again moves to the end).
 */
export class RecentStores {
  #at = new Map<string, number>();

  constructor(
    readonly ttlMs = RECENT_MS,
    readonly max = MAX_RECENT,
    readonly now = () => performance.now(),
  ) {}

  add(bare: string): void {
    this.#at.delete(bare);
    this.#at.set(bare, this.now());
    this.#prune();
  }

  delete(bare: string): void {
    this.#at.delete(bare);
  }

  /** The accounts stored for within the last `ttlMs`. */
  accounts(): string[] {
    this.#prune();
    return [...this.#at.keys()];
  }

  #prune(): void {
    const oldest = this.now() - this.ttlMs;
    for (const [bare, at] of this.#at) {
      if (at >= oldest && this.#at.size <= this.max) break;
      this.#at.delete(bare);
    }
  }
}

/** Whether an available resource of `bare` that messages go to is on another node. */
function elsewhere(host: Host, bare: string): boolean {
  return messageTargets(host.server.sessions, bare).some((s) => s.node !== null);
}

export const offlineModule: Module = {
  name: "offline",
  install(host) {
    const { store, serial, router, config, sessions } = host.server;
    const full = new FullStores();
    const cache = `offline-full ${host.domain}`;
    host.server.caches.register(cache, (bare) => full.takenElsewhere(bare));
    const clustered = config.cluster !== undefined;
    const recent = new RecentStores();
    /** Taken messages routed again: stored again if need be, setting off no take (no loop). */
    const rerouted = new WeakSet<Element>();
    const refuse = (stanza: Element) =>
      router.bounce(stanza, "service-unavailable", { text: "offline storage is full" });

    /**
     * Takes the messages stored for `jid`'s account (on its queue) and hands each to `deliver`.
     * One take empties the store atomically: no other session, here or on another node, gets
     * the same message.
     */
    const take = (jid: Jid, deliver: (stanza: Element) => void): void => {
      const { local, domain, bare } = jid;
      full.taking(bare);
      serial.run(bare, async () => {
        try {
          const taken = await store.takeOffline(local, domain);
          // Other nodes may remember the store as full: it has room now. (An empty store had
          // room before, and every node heard so from the take that emptied it.)
          if (taken.length) void host.server.caches.invalidate(cache, bare);
          for (const xml of taken) {
            const el = parseStanza(xml);
            if (el) deliver(el);
          }
        } finally {
          full.taken(bare);
        }
      });
    };

    /** A taken message goes to the account as a new one would: to its resources, or back. */
    const route = (stanza: Element): void => {
      const to = parseJid(stanza.attrs.to ?? "");
      if (!to) return;
      rerouted.add(stanza);
      deliverToBare(host, { stanza, from: parseJid(stanza.attrs.from ?? "") ?? host.jid, to });
    };

    /** Delivers what is stored for the account of an available session to that session. */
    const deliverStored = (session: LocalSession): void => {
      if (session.priority < 0) return;
      take(session.jid, (el) => {
        // Ended or gone unavailable during the take: the message is not lost with it.
        if (session.available && sessions.get(session.jid) === session) session.deliver(el);
        else route(el);
      });
    };

    host.features.add(NS.offline);
    host.events.on("message/offline", (ev) => {
      const { stanza, to } = ev;
      const type = stanza.attrs.type ?? "normal";
      if ((type !== "normal" && type !== "chat") || !storable(stanza)) return true;
      const bare = to.bare;
      if (full.has(bare)) {
        refuse(stanza);
        return true;
      }
      const epoch = full.epoch;
      const again = rerouted.has(stanza);
      serial.call(bare, async () => {
        if (!await store.getCredentials(to.local, to.domain)) {
          return router.bounce(stanza, "service-unavailable");
        }
        const copy = stanza.clone();
        // A message stored before keeps the stamp of when it first came.
        if (!again) {
          copy.append(
            x("delay", { xmlns: NS.delay, from: host.domain, stamp: new Date().toISOString() }),
          );
        }
        const max = config.limits.max_offline_messages;
        if (!await store.pushOffline(to.local, to.domain, copy.toString(), max)) {
          full.refused(bare, epoch);
          return refuse(stanza);
        }
        if (!again) host.events.fire("message/stored", ev);
        if (!clustered) return;
        // The node of a resource that appeared meanwhile may have taken before this write. (Not
        // for a message taken and routed already: it waits for the next take, never loops.)
        if (!again && elsewhere(host, bare)) take(to, route);
        else recent.add(bare);
      }).catch(
        answerFailure(
          stanza,
          `storing an offline message for ${bare}`,
          (reply) => router.sendFrom(reply),
        ),
      );
      return true;
    });
    host.events.on("session/available", deliverStored);
    // A node's sessions are shown again (it came back, a partition healed, it started): what
    // was stored for accounts that could not be seen meanwhile is delivered now.
    host.events.on("node/up", () => {
      // Other nodes stored for this node's sessions: each account takes once, for its
      // highest-priority session here.
      const best = new Map<string, LocalSession>();
      for (const s of sessions.local()) {
        if (s.jid.domain !== host.domain || !s.available || s.priority < 0) continue;
        const b = best.get(s.jid.bare);
        if (!b || s.priority > b.priority) best.set(s.jid.bare, s);
      }
      for (const s of best.values()) deliverStored(s);
      // This node stored for sessions it could not see, which another node may have taken for
      // before this node's write.
      for (const bare of recent.accounts()) {
        if (!elsewhere(host, bare)) continue;
        recent.delete(bare);
        const jid = parseJid(bare);
        if (jid) take(jid, route);
      }
    });
    // Deletion empties the store: a re-created account starts with room.
    host.events.on("account/deleted", (jid) => {
      full.forget(jid.bare);
      void host.server.caches.invalidate(cache, jid.bare);
    });
  },
};
