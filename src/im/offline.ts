// Offline messages (XEP-0160): chat and normal messages for an account with no available
// resource are stored with a delay stamp (XEP-0203) and delivered on its next initial presence.
// Over the limit the sender gets service-unavailable. Once the store has refused a message, the
// account is remembered as full, so a flood at it is refused at once, without the store or the
// account's queue, until its messages are taken: on any node of a cluster (a take drops the mark
// everywhere, through the shared caches), or, for changes made elsewhere, such as the CLI, until
// the memory expires.
import type { Module } from "../core/host.ts";
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { parseStanza } from "../xml/parse_string.ts";
import { LRUCache } from "lru-cache";
import { answerFailure } from "../core/failure.ts";

/** How long a refusal is trusted without asking the store again. */
const FULL_FOR_MS = 10_000;
/** Accounts remembered as full at once; beyond it the oldest are asked about again. */
const MAX_FULL = 10_000;

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

export const offlineModule: Module = {
  name: "offline",
  install(host) {
    const { store, serial, router, config } = host.server;
    const full = new FullStores();
    const cache = `offline-full ${host.domain}`;
    host.server.caches.register(cache, (bare) => full.takenElsewhere(bare));
    const refuse = (stanza: Element) =>
      router.bounce(stanza, "service-unavailable", { text: "offline storage is full" });
    host.features.add(NS.offline);
    host.events.on("message/offline", ({ stanza, to }) => {
      const type = stanza.attrs.type ?? "normal";
      if ((type !== "normal" && type !== "chat") || !storable(stanza)) return true;
      const bare = to.bare;
      if (full.has(bare)) {
        refuse(stanza);
        return true;
      }
      const epoch = full.epoch;
      serial.call(bare, async () => {
        if (!await store.getCredentials(to.local, to.domain)) {
          return router.bounce(stanza, "service-unavailable");
        }
        const copy = stanza.clone();
        copy.append(
          x("delay", { xmlns: NS.delay, from: host.domain, stamp: new Date().toISOString() }),
        );
        const max = config.limits.max_offline_messages;
        if (!await store.pushOffline(to.local, to.domain, copy.toString(), max)) {
          full.refused(bare, epoch);
          refuse(stanza);
        }
      }).catch(
        answerFailure(
          stanza,
          `storing an offline message for ${bare}`,
          (reply) => router.sendFrom(reply),
        ),
      );
      return true;
    });
    host.events.on("session/available", (session) => {
      if (session.priority < 0) return;
      const { local, domain, bare } = session.jid;
      full.taking(bare);
      serial.run(bare, async () => {
        try {
          const taken = await store.takeOffline(local, domain);
          // Other nodes may remember the store as full: it has room now. (An empty store had
          // room before, and every node heard so from the take that emptied it.)
          if (taken.length) void host.server.caches.invalidate(cache, bare);
          for (const xml of taken) {
            const el = parseStanza(xml);
            if (el) session.deliver(el);
          }
        } finally {
          full.taken(bare);
        }
      });
    });
    // Deletion empties the store: a re-created account starts with room.
    host.events.on("account/deleted", (jid) => {
      full.forget(jid.bare);
      void host.server.caches.invalidate(cache, jid.bare);
    });
  },
};
