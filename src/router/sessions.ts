// The session directory: every client session of the cluster, on this node or another, indexed
// by bare JID then resource, so "which sessions does this account have, where, with which
// priority" is a local lookup. A session is plain data (what it is: replicable to other nodes);
// how a stanza reaches it is the directory's business: `deliver` hands it to the local stream or,
// for a session on another node, to the cluster's route. Single-node, there is no route and no
// observer, and the hot path pays for neither.
import type { Element } from "../xml/element.ts";
import type { Jid } from "../jid/jid.ts";
import type { TransportKind } from "../stream/transport.ts";

/** What a session is: identity and IM state, the same on every node of a cluster. */
export interface Session {
  readonly jid: Jid;
  /** Null for a session on this node; otherwise the name of the node holding it. */
  readonly node: string | null;
  /** When it was bound (ms since the epoch): of two binds of one full JID the newer wins. */
  readonly boundAt: number;
  /** Has sent initial presence and not gone unavailable (RFC 6121 "available resource"). */
  available: boolean;
  priority: number;
  /** The last presence the session broadcast. */
  presence: Element | null;
  /**
   * Its connection is gone and it waits to be resumed (XEP-0198): available still, stanzas for
   * it are queued, and its client may be asleep (push notifications).
   */
  readonly detached: boolean;
  /**
   * The entity capabilities its presence advertises (XEP-0115), as "hash ver": what it wants to
   * hear of (PEP notifications). Read often, so cheaper than `presence` where that is parsed.
   */
  readonly caps: string | undefined;
  /** Requested the roster: receives roster pushes (RFC 6121 "interested resource"). */
  rosterRequested: boolean;
  /** Requested the blocklist: receives blocklist pushes (XEP-0191). */
  blocklistRequested: boolean;
  carbons: boolean;
}

/** A session on this node: its stream and what only this node needs to know. */
export interface LocalSession extends Session {
  readonly node: null;
  /** What the session's stream runs over (counted by transport for /metrics). */
  readonly transport: { readonly kind: TransportKind };
  /** Entities that got directed presence, to be told when the session goes unavailable. */
  directed: Set<string>;
  /**
   * Contacts were told this full JID is available and not told otherwise since (perhaps by the
   * session this one replaced): its end owes them an unavailable presence.
   */
  announced: boolean;
  /** A newer session bound the same full JID: this one leaves silently (no session/closed). */
  readonly replaced: boolean;
  /**
   * Writes to the stream (a string is a serialized stanza); everything else goes through
   * SessionRegistry.deliver.
   */
  deliver(stanza: Element | string): void;
  close(condition?: string, text?: string): void;
  /** Marks the session replaced and closes it with a conflict stream error. */
  replace(): void;
  /**
   * Whether this stanza text reached the session lately: another node resending what a dead
   * node had handed over (stream management keeps what was sent) is not given twice.
   */
  received(xml: string): boolean;
}

/** How stanzas reach sessions on other nodes, and who hears of local changes (the cluster). */
export interface SessionObserver {
  /** A local session was bound; `old` is the record it replaced (local or remote), if any. */
  bound(session: LocalSession, old: Session | undefined): void;
  /** A replicable field of a local session changed. */
  changed(session: LocalSession): void;
  unbound(session: LocalSession): void;
  /** Delivers to a session on another node. */
  forward(session: Session, stanza: Element): void;
  /** Closes a session on another node with a stream error. */
  close(session: Session, condition: string, text: string): void;
  /** A stanza is being delivered to a local session (the cluster watches presence from afar). */
  delivering(session: LocalSession, stanza: Element): void;
}

/** The "hash ver" of a presence's entity capabilities (XEP-0115), if it has usable ones. */
export function capsOf(presence: Element | null): string | undefined {
  const c = presence?.child("c", CAPS);
  const { hash, ver, node } = c?.attrs ?? {};
  if (!hash || !ver || !node || hash.length > 16 || ver.length > 128 || node.length > 1024) {
    return undefined;
  }
  return `${hash} ${ver}`;
}

const CAPS = "http://jabber.org/protocol/caps";

export function isLocal(session: Session): session is LocalSession {
  return session.node === null;
}

export class SessionRegistry {
  #accounts = new Map<string, Map<string, Session>>();
  #count = 0;
  /** Local sessions by transport, kept with #count (per bind and unbind, never per stanza). */
  #byTransport: Record<TransportKind, number> = { tcp: 0, websocket: 0, bosh: 0 };
  #observer: SessionObserver | undefined;

  /** Local sessions. */
  get size(): number {
    return this.#count;
  }

  /** Local sessions by the transport of their stream. */
  get byTransport(): Readonly<Record<TransportKind, number>> {
    return this.#byTransport;
  }

  /** Set once, by the cluster node. */
  observe(observer: SessionObserver): void {
    this.#observer = observer;
  }

  get(full: Jid): Session | undefined {
    return this.#accounts.get(full.bare)?.get(full.resource);
  }

  /** All sessions of an account on every node (bound, available or not). */
  resources(bare: string): Iterable<Session> {
    return this.#accounts.get(bare)?.values() ?? [];
  }

  /** Every session on this node. */
  *local(): Iterable<LocalSession> {
    for (const account of this.#accounts.values()) {
      for (const s of account.values()) if (s.node === null) yield s as LocalSession;
    }
  }

  /** The one way a stanza reaches a session, wherever it is. */
  deliver(session: Session, stanza: Element): void {
    if (session.node !== null) return this.#observer!.forward(session, stanza);
    this.#observer?.delivering(session as LocalSession, stanza);
    (session as LocalSession).deliver(stanza);
  }

  /**
   * A stanza another node serialized, for a local session: written as it is. Not for presence,
   * which the cluster reads on its way (SessionObserver.delivering).
   */
  deliverText(session: LocalSession, xml: string): void {
    session.deliver(xml);
  }

  /** A replicable field of a local session changed (no-op without a cluster). */
  changed(session: Session): void {
    // An ended session may still be told unavailable: it is nobody's business any more.
    if (this.#observer && session.node === null && this.get(session.jid) === session) {
      this.#observer.changed(session as LocalSession);
    }
  }

  /** Ends a session, wherever it is, with a stream error. */
  close(session: Session, condition: string, text: string): void {
    if (session.node === null) (session as LocalSession).close(condition, text);
    else this.#observer!.close(session, condition, text);
  }

  /**
   * Adds a local session; returns the record bound to the same full JID before (the caller
   * replaces a local one; a remote one is replaced by its node when it hears of this bind).
   */
  add(session: LocalSession): Session | undefined {
    const old = this.put(session);
    this.#observer?.bound(session, old);
    return old;
  }

  /** Removes a local session if it is still the registered one; true when it was. */
  remove(session: LocalSession): boolean {
    if (!this.drop(session)) return false;
    this.#observer?.unbound(session);
    return true;
  }

  /** Puts a record in place of the one with its full JID (returned), telling no observer. */
  put(session: Session): Session | undefined {
    let account = this.#accounts.get(session.jid.bare);
    if (!account) this.#accounts.set(session.jid.bare, account = new Map());
    const old = account.get(session.jid.resource);
    account.set(session.jid.resource, session);
    if (session.node === null) this.#counted(session as LocalSession, 1);
    if (old?.node === null) this.#counted(old as LocalSession, -1);
    return old;
  }

  /** Removes a record if it is the registered one, telling no observer; true when it was. */
  drop(session: Session): boolean {
    const account = this.#accounts.get(session.jid.bare);
    if (account?.get(session.jid.resource) !== session) return false;
    account.delete(session.jid.resource);
    if (session.node === null) this.#counted(session as LocalSession, -1);
    if (account.size === 0) this.#accounts.delete(session.jid.bare);
    return true;
  }

  #counted(session: LocalSession, n: 1 | -1): void {
    this.#count += n;
    this.#byTransport[session.transport.kind] += n;
  }
}
