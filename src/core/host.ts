// A virtual host: the domain handler for one served domain. It sorts each stanza by address
// (the domain itself, an account's bare JID, a full JID) and hands it to whichever module
// registered for it, the way Prosody modules hook events. The core knows no IM semantics.
import type { Element } from "../xml/element.ts";
import { Jid, parseJid } from "../jid/jid.ts";
import type { HostConfig } from "../config/schema.ts";
import type { DomainHandler } from "../router/router.ts";
import type { LocalSession, Session } from "../router/sessions.ts";
import { Hooks } from "./hooks.ts";
import { type DiscoIdentity, type IqHandler, IqHandlers, type IqRequest } from "./iq.ts";
import type { ServerContext } from "./context.ts";
import type { StanzaCounts } from "../metrics/counters.ts";
import { logger } from "../log/logger.ts";

const log = logger("host");

export interface StanzaEvent {
  stanza: Element;
  from: Jid;
  to: Jid;
}

export interface OutboundEvent extends StanzaEvent {
  session: LocalSession;
  /** The client gave no `to` (RFC 6120 §10.3: meant for its own account or the server). */
  toAbsent: boolean;
  /**
   * What identifies this stanza if its client sends it again (a stream management resend): its
   * session's resumption id and the stanza's id. Absent when a resend could not be recognised.
   */
  replayKey?: string;
  /**
   * Set by a module whose handling of the stanza completes later (an archive write): it settles
   * then, and only then does the stanza count as handled (XEP-0198 <a h/>).
   */
  stored?: Promise<void>;
  /** The id the sender's archive gave this message (XEP-0359), for its copies (carbons). */
  stanzaId?: string;
}

/** Disco of what an account holds (XEP-0030 items and nodes), answered by the module that has it. */
export interface AccountNodes {
  /** disco#items on the account (no node). */
  items(iq: IqRequest): void | Promise<void>;
  /** disco#info on one of the account's nodes. */
  info(iq: IqRequest, node: string): void | Promise<void>;
}

/** An account's private XML (XEP-0049) of one namespace, asked for or set by its owner. */
export interface PrivateEvent {
  iq: IqRequest;
  /** The element named in the request (its namespace says what it is). */
  item: Element;
}

/** An account's vCard stored; the set is answered once `done` (set by a handler) settles. */
export interface VcardEvent {
  account: Jid;
  vcard: Element;
  /** What follows from it (the avatar converted, XEP-0398), done before the answer. */
  done?: Promise<void>;
}

/** A request on a stream that has not authenticated yet (XEP-0077 registration). */
export interface PreAuthEvent {
  stanza: Element;
  /** The client's address, "ip:port". */
  remote: string;
  reply(stanza: Element): void;
}

export type HostEvents = {
  "c2s/register": PreAuthEvent;
  /** Any stanza for a local account, before delivery; true drops it (blocking). */
  "stanza/in": StanzaEvent;
  "message/bare": StanzaEvent;
  "message/full": StanzaEvent;
  "presence/bare": StanzaEvent;
  "presence/full": StanzaEvent;
  "iq/full": StanzaEvent;
  "message/host": StanzaEvent;
  /** A chat/normal message found no available resource: store it or refuse it. */
  "message/offline": StanzaEvent;
  /** A message for an account with no available resource was stored for later (offline). */
  "message/stored": StanzaEvent;
  "presence/host": StanzaEvent;
  /** A stanza sent by a local session, before it is routed. */
  "stanza/out": OutboundEvent;
  /**
   * A stanza a client sent again after its session moved to this node, which the node it came
   * from had handled already: not routed again, but what storing it does is done (at most again).
   */
  "stanza/replayed": OutboundEvent;
  "session/bound": LocalSession;
  /**
   * A session bound the full JID of an older one (a client reconnecting), perhaps on another
   * node: `old` leaves silently, so what its contacts and rooms know of that address carries over
   * to `by`.
   */
  "session/replaced": { old: Session; by: LocalSession };
  /** Initial presence sent (the session became an available resource). */
  "session/available": LocalSession;
  /**
   * A message was queued for a local session whose connection is gone (XEP-0198 detached): its
   * client may be asleep (push notifications).
   */
  "message/held": { session: LocalSession; stanza: Element | string };
  /** An answer (iq result or error) to an account's bare JID: to an iq sent in its name. */
  "iq/answer": StanzaEvent;
  /** A bound session ended (never fired for a replaced one). */
  "session/closed": LocalSession;
  /**
   * Private XML of a namespace a module keeps itself (XEP-0402's bookmarks): true when the
   * module took the request (and answers it).
   */
  "private/iq": PrivateEvent;
  /** An account's vCard (XEP-0054) was stored. */
  "vcard/set": VcardEvent;
  /** An account was deleted (XEP-0077 cancel or the CLI). */
  "account/deleted": Jid;
  /**
   * Another node of the cluster (named) sent its sessions, after a start or a healed partition:
   * its sessions may not know the presence of this node's.
   */
  "node/up": string;
};

// Event names by stanza kind, looked up rather than built: this runs for every delivery.
const TO_BARE = { message: "message/bare", presence: "presence/bare" } as const;
const TO_FULL = { message: "message/full", presence: "presence/full", iq: "iq/full" } as const;

export class Host implements DomainHandler {
  readonly jid: Jid;
  readonly events = new Hooks<HostEvents>();
  /** What disco#info on the domain advertises; modules add to it when installed. */
  readonly features = new Set<string>();
  readonly identities: DiscoIdentity[] = [{ category: "server", type: "im", name: "Parley" }];
  /** Entities listed in disco#items on the domain (services such as MUC and the proxy). */
  readonly items: { jid: string; name?: string }[] = [];
  /** Features advertised on account bare JIDs. */
  readonly accountFeatures = new Set<string>();
  readonly accountIdentities: DiscoIdentity[] = [{ category: "account", type: "registered" }];
  /** What an account holds as disco items and nodes (its PEP nodes), when a module has them. */
  accountNodes: AccountNodes | undefined;
  #serverIq: IqHandlers;
  #accountIq: IqHandlers;
  /** Stanzas from clients, counted as they enter (/metrics). */
  readonly #stanzasIn: StanzaCounts;

  constructor(readonly server: ServerContext, readonly config: HostConfig) {
    this.jid = new Jid("", config.domain);
    this.#stanzasIn = server.counters.stanzasIn;
    this.#serverIq = new IqHandlers(server.router, log);
    this.#accountIq = new IqHandlers(server.router, log);
  }

  get domain(): string {
    return this.jid.domain;
  }

  /** Registers the handler of iq get/set for a namespace, addressed to the domain or an account. */
  onIq(scope: "server" | "account", ns: string, handler: IqHandler): void {
    (scope === "server" ? this.#serverIq : this.#accountIq).on(ns, handler);
  }

  /** Like onIq, for a query-only namespace: a set gets bad-request. */
  onGet(scope: "server" | "account", ns: string, handler: IqHandler): void {
    (scope === "server" ? this.#serverIq : this.#accountIq).onGet(ns, handler);
  }

  receive(stanza: Element, from: Jid, to: Jid): void {
    const ev: StanzaEvent = { stanza, from, to };
    if (to.isDomain) {
      if (stanza.name === "iq") return this.#serverIq.dispatch(stanza, from, to);
      this.events.fire(stanza.name === "message" ? "message/host" : "presence/host", ev);
      return;
    }
    if (this.events.fire("stanza/in", ev)) return;
    if (to.isBare && stanza.name === "iq") {
      const type = stanza.attrs.type;
      if (type === "result" || type === "error") return void this.events.fire("iq/answer", ev);
      return this.#accountIq.dispatch(stanza, from, to);
    }
    // A bare-JID iq went to the account handlers above: only messages and presence are left.
    const kind = stanza.name as keyof typeof TO_FULL;
    this.events.fire(to.isBare ? TO_BARE[kind as keyof typeof TO_BARE] : TO_FULL[kind], ev);
  }

  /**
   * A stanza from a local session: modules may take it, otherwise it is routed. What clients
   * send passes here, whatever their transport: counted here as stanzas in. Returns what the
   * stanza's handling waits for (OutboundEvent.stored), if anything.
   */
  outbound(
    stanza: Element,
    session: LocalSession,
    to: Jid | null,
    replayKey?: string,
  ): Promise<void> | undefined {
    this.#stanzasIn.element(stanza.name);
    const ev: OutboundEvent = {
      stanza,
      from: session.jid,
      to: to ?? session.jid.toBare(),
      session,
      toAbsent: to === null,
      replayKey,
    };
    return this.dispatchOutbound(ev);
  }

  /**
   * A local session's stanza that was handled already (HostEvents "stanza/replayed"): returns
   * what its handling waits for, if anything.
   */
  replayed(stanza: Element, session: LocalSession, replayKey?: string): Promise<void> | undefined {
    const to = parseJid(stanza.attrs.to ?? "");
    if (!to) return undefined;
    const ev: OutboundEvent = {
      stanza,
      from: session.jid,
      to,
      session,
      toAbsent: false,
      replayKey,
    };
    this.events.fire("stanza/replayed", ev);
    return ev.stored;
  }

  /** Runs a local session's stanza through the modules and the router (again, after a wait). */
  dispatchOutbound(ev: OutboundEvent): Promise<void> | undefined {
    if (!this.events.fire("stanza/out", ev)) this.server.router.route(ev.stanza, ev.from, ev.to);
    return ev.stored;
  }
}

/** A module adds behaviour to a host by registering handlers; see src/modules.ts. */
export interface Module {
  name: string;
  install(host: Host): void;
}
