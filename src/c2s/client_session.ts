// A client's session: what the account's other resources, contacts and rooms see of one bound
// full JID, apart from the connection it runs over. Without stream management (XEP-0198) the two
// end together. With resumption enabled, the session outlives its connection: when the
// connection is gone it is detached (still available, stanzas for it queued) until a new
// connection resumes it, here or on another node, or until its resumption timeout passes; then it
// ends as on a logout, and what it was sent but never acknowledged is handled as undelivered.
import type { Element } from "../xml/element.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import type { Host } from "../core/host.ts";
import { capsOf, type LocalSession } from "../router/sessions.ts";
import type { TransportKind } from "../stream/transport.ts";
import type { StanzaCounts } from "../metrics/counters.ts";
import { KEPT_LIMITS, parseStanza } from "../xml/parse_string.ts";
import { deliverToBare } from "../im/delivery.ts";
import { type SmState, StreamManagement } from "./stream_management.ts";
import { ClientState } from "./client_state.ts";
import type { Resumption } from "./resumption.ts";

/** What a session asks of the connection it runs over (the c2s stream). */
export interface SessionStream {
  readonly transport: { readonly kind: TransportKind };
  send(xml: string | Element): void;
  /** Ends the connection; with a condition, by that stream error. */
  close(condition?: string, text?: string): void;
}

/** What a session is, as it moves to another node: IM state and stream management. */
export interface SessionState {
  jid: string;
  boundAt: number;
  available: boolean;
  priority: number;
  presence: string | null;
  roster: boolean;
  blocklist: boolean;
  carbons: boolean;
  announced: boolean;
  /** Taken over from a replica and not resumed since (ClientSession.adopted). */
  adopted?: boolean;
  directed: string[];
  sm: SmState;
}

export class ClientSession implements LocalSession {
  readonly node = null;
  available = false;
  priority = 0;
  presence: Element | null = null;
  get caps(): string | undefined {
    return capsOf(this.presence);
  }
  rosterRequested = false;
  blocklistRequested = false;
  carbons = false;
  directed = new Set<string>();
  announced = false;
  transport: { readonly kind: TransportKind };
  sm: StreamManagement | undefined;
  /** When the connection went (ms since the epoch), while detached. */
  detachedAt = 0;
  /** When a stream last resumed it (ms since the epoch; 0: never). */
  resumedAt = 0;
  /**
   * Taken over from a replica after its node died: the replica may lag what the client got or
   * sent by the last write, so a resumption acknowledging more is believed, not refused, and
   * what the client resends is checked against the ids it had sent. Until its next resumption.
   */
  adopted = false;
  /** Brought from another node (resumed here, or taken over): not a new bind. */
  restored = false;
  /** Stanzas written before stream management was enabled (a client's first count may hold some). */
  deliveredBeforeEnable = 0;
  /**
   * bound → ended; bound → detached → bound (resumed) or ended (timed out); bound or detached
   * → replaced (a newer bind of the full JID) or moved (resumed on another node). Only an ended
   * session was ever announced as gone: a replaced or moved one leaves without a trace.
   */
  #state: "bound" | "detached" | "replaced" | "moved" | "ended" = "bound";
  #stream: SessionStream | null;
  readonly #out: StanzaCounts;

  constructor(
    readonly jid: Jid,
    public boundAt: number,
    readonly host: Host,
    readonly resumption: Resumption,
    stream: SessionStream | null,
  ) {
    this.#stream = stream;
    // Its kind only: the transport object would keep a gone connection alive while detached.
    this.transport = { kind: stream?.transport.kind ?? "tcp" };
    this.#out = host.server.counters.stanzasOut;
  }

  /** A session taken over from another node (a resumption there, or its death): detached. */
  static restore(
    s: SessionState,
    jid: Jid,
    boundAt: number,
    host: Host,
    resumption: Resumption,
  ): ClientSession {
    const session = new ClientSession(jid, boundAt, host, resumption, null);
    session.available = s.available;
    session.priority = s.priority;
    session.presence = s.presence === null ? null : parseStanza(s.presence, KEPT_LIMITS);
    session.rosterRequested = s.roster;
    session.blocklistRequested = s.blocklist;
    session.carbons = s.carbons;
    session.announced = s.announced;
    session.directed = new Set(s.directed);
    session.sm = new StreamManagement(
      s.sm.id,
      s.sm.timeoutMs,
      s.sm,
      resumption.distribution.keepAcked,
    );
    session.adopted = s.adopted ?? false;
    session.#state = "detached";
    session.detachedAt = Date.now();
    session.restored = true;
    return session;
  }

  state(): SessionState {
    return {
      jid: this.jid.full,
      boundAt: this.boundAt,
      available: this.available,
      priority: this.priority,
      presence: this.presence?.toString() ?? null,
      roster: this.rosterRequested,
      blocklist: this.blocklistRequested,
      carbons: this.carbons,
      announced: this.announced,
      adopted: this.adopted || undefined,
      directed: [...this.directed],
      sm: this.sm!.state(),
    };
  }

  get replaced(): boolean {
    return this.#state === "replaced";
  }

  get detached(): boolean {
    return this.#state === "detached";
  }

  /** Bound or detached: the session may still be written to and resumed. */
  get live(): boolean {
    return this.#state === "bound" || this.#state === "detached";
  }

  /**
   * A client stanza was handled (XEP-0198): counted now, or once `stored` settles (its archive
   * entry is written) and every stanza handled before it is counted — a count is a position, so
   * none after a stanza not counted yet is. What is counted survives this node: a count the
   * client saw is never of a message a dead node had not stored.
   */
  handled(id: string | undefined, stored: Promise<void> | undefined): void {
    const sm = this.sm;
    if (!sm) return;
    const changed = () => {
      if (sm.resumable && this.live) this.resumption.changed(this);
    };
    if (stored === undefined && this.counting === undefined) {
      sm.handledOne(id);
      return changed();
    }
    // Its id is remembered now, as it is routed: resent after this node's death, it is
    // recognised by the node where the session resumes, and not delivered twice.
    this.#uncounted++;
    if (id !== undefined) sm.remember(id, (sm.handled + this.#uncounted) % 2 ** 32);
    changed();
    // `stored` settles either way: what failed to be stored was logged where it failed.
    const done = stored?.catch(() => {});
    const p: Promise<void> = (this.counting ?? Promise.resolve()).then(() => done).then(() => {
      this.#uncounted--;
      sm.handledOne(undefined);
      changed();
      if (this.counting === p) this.counting = undefined;
    });
    this.counting = p;
  }

  /** Settles once every client stanza handled so far is counted; undefined when all are. */
  counting: Promise<void> | undefined;
  /** Client stanzas handled and not counted yet. */
  #uncounted = 0;

  /** Whether this stanza text reached the session lately (a resend after a node died). */
  received(xml: string): boolean {
    return this.sm?.holds(xml) ?? false;
  }

  /**
   * Every stanza for this session passes here: held or dropped while the client is inactive
   * (XEP-0352), else written and counted as stanzas out (/metrics).
   */
  deliver(stanza: Element | string): void {
    if (!this.live) return;
    const csi = this.#csi;
    if (csi?.inactive && !csi.admit(stanza, (held) => held.forEach((h) => this.#write(h)))) return;
    this.#write(stanza);
  }

  /** XEP-0352: the client says it is inactive (true) or active again (what was held goes). */
  clientState(inactive: boolean): void {
    if (inactive) {
      this.#csi ??= new ClientState(
        this.host.server.counters.csi,
        this.host.server.config.csi.max_held,
      );
      this.#csi.inactive = true;
      return;
    }
    this.releaseHeld();
  }

  /**
   * Active again: what CSI held is written (or queued, detached). Also before the session is
   * handed to another node, with its queue.
   */
  releaseHeld(): void {
    const csi = this.#csi;
    if (!csi?.inactive) return;
    csi.inactive = false;
    for (const held of csi.take()) this.#write(held);
  }

  /** Made when the client first says it is inactive: an active session carries nothing. */
  #csi: ClientState | undefined;

  #write(stanza: Element | string): void {
    const out = this.#out;
    if (typeof stanza === "string") out.text(stanza);
    else out.element(stanza.name);
    const sm = this.sm;
    if (sm === undefined) {
      this.deliveredBeforeEnable++;
      return this.#stream?.send(stanza);
    }
    const xml = typeof stanza === "string" ? stanza : stanza.toString();
    sm.push(xml);
    if (sm.resumable) this.resumption.changed(this);
    const stream = this.#stream;
    const max = this.resumption.maxUnacked;
    if (stream) {
      stream.send(xml);
      // The session stays resumable: a client that cannot keep up reconnects and resumes.
      if (sm.unackedCount > max) {
        stream.close("policy-violation", "too many unacknowledged stanzas");
      }
    } else if (sm.unackedCount > 2 * max) {
      // Detached and still flooded: it ends now rather than hold more.
      this.end();
    } else if (xml.charCodeAt(1) === 109 /* "m": a message */) {
      this.host.events.fire("message/held", { session: this, stanza });
    }
  }

  /** Ends the session, wherever its connection is, with a stream error. */
  close(condition?: string, text?: string): void {
    if (this.#stream) this.#stream.close(condition, text);
    else this.end();
  }

  /** A newer bind of this full JID: this session leaves silently (its stream with a conflict). */
  replace(): void {
    if (!this.live) return;
    this.#state = "replaced";
    this.resumption.forget(this);
    this.#undelivered();
    this.#stream?.close("conflict", "replaced by a new session with the same resource");
  }

  /** Resumed on another node: it leaves here without a trace; its connection, if any, closes. */
  moved(): void {
    if (!this.live) return;
    this.#state = "moved";
    this.resumption.forget(this);
    this.#stream?.close("conflict", "resumed elsewhere");
  }

  /**
   * The connection is gone or closing: a resumable session waits for a resumption (unless it
   * `ends` with the connection: a clean close, a refused client), any other ends.
   */
  streamEnded(stream: SessionStream, ends: boolean): void {
    if (this.#stream !== stream) return;
    this.#stream = null;
    if (this.#state !== "bound") return;
    if (!ends && this.sm?.resumable) {
      this.#state = "detached";
      this.detachedAt = Date.now();
      this.resumption.detached(this);
      this.host.server.sessions.changed(this);
      // Written to a connection that was gone, perhaps: the client may not have them (push).
      for (const xml of this.sm!.unacked()) {
        if (xml.startsWith("<message")) {
          this.host.events.fire("message/held", { session: this, stanza: xml });
        }
      }
      return;
    }
    this.end();
  }

  /**
   * A new connection resumes this session with the client's `h`: returns what to send it again,
   * or null (nothing changed) when `h` acknowledges more than was sent.
   */
  resume(stream: SessionStream, h: number): string[] | null {
    const sm = this.sm!;
    const acknowledged = sm.acknowledge(h);
    if (acknowledged === "too-high") {
      if (!this.adopted) return null;
      sm.rebase(h);
    }
    const old = this.#stream;
    this.#stream = stream;
    this.#state = "bound";
    this.host.server.sessions.changed(this);
    // A resumed stream is active (XEP-0352 §4): what was held goes after the resent stanzas.
    if (this.#csi?.inactive) queueMicrotask(() => this.releaseHeld());
    this.resumedAt = Date.now();
    this.resumption.attached(this);
    if (stream.transport.kind !== this.transport.kind) {
      // Counted by transport: the registry recounts it.
      const sessions = this.host.server.sessions;
      sessions.drop(this);
      this.transport = { kind: stream.transport.kind };
      sessions.put(this);
    }
    // The client came back before its old connection was seen to die.
    old?.close("conflict", "resumed by a new connection");
    sm.requested = false;
    sm.askedAt = sm.acked;
    return sm.unacked();
  }

  /** Unregisters the session and tells the modules, once, then handles what it did not get. */
  end(): void {
    if (!this.live) return;
    this.#state = "ended";
    this.resumption.forget(this);
    this.host.server.sessions.remove(this);
    this.host.events.fire("session/closed", this);
    this.#undelivered();
  }

  /**
   * What was sent or queued and never acknowledged goes where it would have gone had the
   * session not been there (RFC 6121 §8.5.3.2, as ejabberd's resend_on_timeout): a chat or
   * normal message to the account's other resources or offline storage, an iq request answered
   * with recipient-unavailable; presence and room messages are state, not owed.
   */
  #undelivered(): void {
    const sm = this.sm;
    if (!sm?.unackedCount) return;
    const host = this.host;
    for (const xml of sm.drain()) {
      const stanza = parseStanza(xml, KEPT_LIMITS);
      if (!stanza) continue;
      const type = stanza.attrs.type;
      if (stanza.name === "message" && type !== "error" && type !== "groupchat") {
        const from = parseJid(stanza.attrs.from ?? "") ?? host.jid;
        deliverToBare(host, { stanza, from, to: this.jid });
      } else if (stanza.name === "iq" && (type === "get" || type === "set")) {
        host.server.router.bounce(stanza, "recipient-unavailable");
      }
    }
  }
}
