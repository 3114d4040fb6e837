// Local client sessions, indexed by bare JID then resource. The router looks here for full-JID
// delivery; the IM modules keep their per-session state on the session object itself.
import type { Element } from "../xml/element.ts";
import type { Jid } from "../jid/jid.ts";

export interface LocalSession {
  readonly jid: Jid;
  /** Has sent initial presence and not gone unavailable (RFC 6121 "available resource"). */
  available: boolean;
  priority: number;
  /** The last presence the session broadcast. */
  presence: Element | null;
  /** Requested the roster: receives roster pushes (RFC 6121 "interested resource"). */
  rosterRequested: boolean;
  /** Requested the blocklist: receives blocklist pushes (XEP-0191). */
  blocklistRequested: boolean;
  carbons: boolean;
  /** Entities that got directed presence, to be told when the session goes unavailable. */
  directed: Set<string>;
  /**
   * Contacts were told this full JID is available and not told otherwise since (perhaps by the
   * session this one replaced): its end owes them an unavailable presence.
   */
  announced: boolean;
  /** A newer session bound the same full JID: this one leaves silently (no session/closed). */
  readonly replaced: boolean;
  deliver(stanza: Element): void;
  close(condition?: string, text?: string): void;
  /** Marks the session replaced and closes it with a conflict stream error. */
  replace(): void;
}

export class SessionRegistry {
  #accounts = new Map<string, Map<string, LocalSession>>();
  #count = 0;

  get size(): number {
    return this.#count;
  }

  get(full: Jid): LocalSession | undefined {
    return this.#accounts.get(full.bare)?.get(full.resource);
  }

  /** All sessions of an account (bound, available or not). */
  resources(bare: string): Iterable<LocalSession> {
    return this.#accounts.get(bare)?.values() ?? [];
  }

  /** Adds a session; returns the one bound to the same full JID before, which the caller replaces. */
  add(session: LocalSession): LocalSession | undefined {
    let account = this.#accounts.get(session.jid.bare);
    if (!account) this.#accounts.set(session.jid.bare, account = new Map());
    const old = account.get(session.jid.resource);
    account.set(session.jid.resource, session);
    if (!old) this.#count++;
    return old;
  }

  /** Removes the session if it is still the registered one; true when it was. */
  remove(session: LocalSession): boolean {
    const account = this.#accounts.get(session.jid.bare);
    if (account?.get(session.jid.resource) !== session) return false;
    account.delete(session.jid.resource);
    this.#count--;
    if (account.size === 0) this.#accounts.delete(session.jid.bare);
    return true;
  }
}
