// A client-to-server stream (RFC 6120): stream header checks, STARTTLS, SASL, resource binding or
// resumption (XEP-0198), then validation and stamping of every stanza the client sends before its
// host routes it. What it binds is a ClientSession (client_session.ts), which may outlive it.
import { randomBytes } from "node:crypto";
import { type Attrs, type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { Jid, parseJid } from "../jid/jid.ts";
import { prepResource } from "../jid/precis.ts";
import { XmlStream } from "../stream/xml_stream.ts";
import type { Transport } from "../stream/transport.ts";
import type { Host } from "../core/host.ts";
import type { ServerContext } from "../core/context.ts";
import type { ListenerConfig } from "../config/schema.ts";
import { isLocal } from "../router/sessions.ts";
import type { TlsContexts } from "../tls/certificates.ts";
import { errorReply, iqResult } from "../router/stanza_error.ts";
import { offeredMechanisms } from "../sasl/mechanisms.ts";
import { SaslNegotiation } from "./sasl_negotiation.ts";
import { streamFeatures } from "./features.ts";
import { logger } from "../log/logger.ts";
import type { StreamErrorCondition } from "../stream/stream_error.ts";
import { ClientSession } from "./client_session.ts";
import type { Resumption } from "./resumption.ts";
import { smElement } from "./sm_elements.ts";

const log = logger("c2s");
const STANZAS = new Set(["message", "presence", "iq"]);
const IQ_TYPES = new Set(["get", "set", "result", "error"]);
/**
 * Archive entries waiting to be written above which a client whose message adds more stops being
 * read until it is written (a few batches' worth: the store keeps up below it).
 */
const ARCHIVE_HIGH_WATER = 5000;
/**
 * Stream errors after which a resumable session waits for its client: the connection failed or
 * was refused for its pace, not the client's standing.
 */
const RESUMABLE_AFTER = new Set<string>([
  "connection-timeout",
  "policy-violation",
  "system-shutdown",
  "internal-server-error",
]);

export interface C2SDeps {
  ctx: ServerContext;
  hosts: Map<string, Host>;
  tls: TlsContexts;
  listener: ListenerConfig;
  resumption: Resumption;
}

export class C2SSession extends XmlStream {
  host: Host | undefined;
  user: string | undefined;
  /** The session this stream bound or resumed; it may outlive the stream (XEP-0198). */
  session: ClientSession | undefined;
  readonly startedAt = Date.now();
  /** Stanzas that came while a replayed one was being stored (#behind). */
  #behindReplay: Element[] | undefined;
  /** What the stanza being handled waits for before it counts as handled (XEP-0198). */
  #stored: Promise<void> | undefined;
  /** OutboundEvent.replayKey of the stanza being handled. */
  #replayKey: string | undefined;
  /** Resent stanzas after a resumption are checked against handled ids until a new one comes. */
  dedupe = false;
  /** A resumption is being looked up (perhaps on another node). */
  resuming = false;
  /** The stream error this stream is closing with, if any. */
  #condition: string | undefined;
  /** close() has begun: nothing is asked of the client any more. */
  #closing = false;
  /** Created by the first SASL element, dropped once authenticated (memory per session). */
  #sasl: SaslNegotiation | undefined;

  constructor(transport: Transport, secure: boolean, readonly deps: C2SDeps) {
    const l = deps.ctx.config.limits;
    super(
      transport,
      secure,
      {
        // Raised to max_stanza_size once the client has authenticated (the parser reads it live).
        maxStanzaSize: Math.min(l.max_stanza_size, l.max_stanza_size_before_auth),
        maxDepth: l.max_depth,
        rateBytesPerSecond: l.rate_bytes_per_second,
        rateBurstBytes: l.rate_burst_bytes,
        maxOutboundBuffer: l.max_outbound_buffer,
        tlsHandshakeMs: deps.ctx.config.timeouts.tls_handshake * 1000,
      },
      log,
      NS.client,
    );
    log.info("connection {id} opened from {remote}", { id: this.id, remote: this.remote });
  }

  get authenticated(): boolean {
    return this.user !== undefined;
  }

  get bound(): boolean {
    return this.session !== undefined;
  }

  /** The bare JID this stream authenticated as. */
  get bare(): string {
    return `${this.user}@${this.host!.domain}`;
  }

  streamStart(attrs: Attrs, defaultNs: string | undefined): void {
    const domain = parseJid(attrs.to ?? "")?.domain;
    const host = domain === undefined ? undefined : this.deps.hosts.get(domain);
    this.sendHeader({
      id: randomBytes(9).toString("base64url"),
      from: host?.domain ?? attrs.to,
      to: attrs.from,
      version: "1.0",
      "xml:lang": "en",
    });
    if (defaultNs !== NS.client) return this.error("invalid-namespace", "expected jabber:client");
    if (!host || (this.host && this.host !== host)) return this.error("host-unknown");
    if (!/^1\.\d+$/.test(attrs.version ?? "")) return this.error("unsupported-version");
    this.host = host;
    this.send(streamFeatures({
      secure: this.secure,
      authenticated: this.authenticated,
      starttls: this.deps.tls.get(host.domain) ? this.deps.listener.starttls : "disabled",
      mechanisms: this.#mechanisms(),
      registration: host.config.registration,
      csi: host.server.config.csi.enabled,
    }));
  }

  stanza(el: Element): void {
    if (this.authenticated) this.#afterAuth(el);
    else this.#beforeAuth(el);
  }

  /** A request for acknowledgement goes out with the batch when stanzas await one (XEP-0198). */
  override flush(): void {
    const sm = this.session?.sm;
    if (sm !== undefined && !sm.requested && sm.sent !== sm.askedAt && !this.#closing) {
      sm.requested = true;
      sm.askedAt = sm.sent;
      this.send("<r xmlns='urn:xmpp:sm:3'/>");
    }
    super.flush();
  }

  #mechanisms(): string[] {
    if (!this.secure && this.deps.listener.starttls === "required") return [];
    return offeredMechanisms(this.secure || this.deps.listener.plain_without_tls);
  }

  #beforeAuth(el: Element): void {
    const ns = el.attrs.xmlns;
    const tlsRequired = !this.secure && this.deps.listener.starttls === "required";
    if (el.name === "starttls" && ns === NS.tls) return this.#starttls();
    if (ns === NS.sasl) {
      if (tlsRequired) return this.error("policy-violation", "STARTTLS is required first");
      this.#sasl ??= new SaslNegotiation(
        this.#saslPeer(),
        this.deps.ctx.config.timeouts.auth_failure_delay_ms,
      );
      void this.#sasl.handle(el);
      return;
    }
    if (
      el.name === "iq" && !ns && el.child("query", NS.register) && this.host!.config.registration
    ) {
      if (tlsRequired) return this.error("policy-violation", "STARTTLS is required first");
      this.host!.events.fire("c2s/register", {
        stanza: el,
        remote: this.remote,
        reply: (r) => this.send(r),
      });
      return;
    }
    this.error("not-authorized", "authenticate first");
  }

  #starttls(): void {
    const ctx = this.deps.tls.get(this.host!.domain);
    if (this.secure || !ctx || this.deps.listener.starttls === "disabled") {
      this.send(x("failure", { xmlns: NS.tls }));
      return this.close();
    }
    this.send(x("proceed", { xmlns: NS.tls }));
    this.startTls(ctx);
    this.headerSent = false;
  }

  #saslPeer() {
    return {
      send: (el: Element | string) => this.send(el),
      auth: this.deps.ctx.counters.auth,
      offered: () => this.#mechanisms(),
      remote: this.remote,
      throttle: this.deps.ctx.authThrottle,
      context: () => {
        const host = this.host!;
        const store = this.deps.ctx.store;
        return {
          domain: host.domain,
          credentials: (user: string) => store.getCredentials(user, host.domain),
          secret: this.deps.ctx.secret,
          iterations: this.deps.ctx.config.auth.scram_iterations,
        };
      },
      succeeded: (user: string) => {
        this.user = user;
        this.#sasl = undefined;
        this.limits.maxStanzaSize = this.deps.ctx.config.limits.max_stanza_size;
        log.info("authenticated {user}@{domain} on {id} from {remote}", {
          user,
          domain: this.host!.domain,
          id: this.id,
          remote: this.remote,
        });
        this.restartStream();
      },
      failed: (condition: string, attempts: number) => {
        log.info("authentication failed ({condition}, attempt {attempts}) on {id} from {remote}", {
          condition,
          attempts,
          id: this.id,
          remote: this.remote,
        });
      },
      tooManyFailures: () => this.error("policy-violation", "too many authentication failures"),
    };
  }

  /** XEP-0352's <inactive/> and <active/>: nonzas (stream management does not count them). */
  #clientState(el: Element): void {
    if (el.name !== "inactive" && el.name !== "active") {
      return this.error("unsupported-stanza-type");
    }
    this.session!.clientState(el.name === "inactive");
  }

  #afterAuth(el: Element): void {
    if (this.#behindReplay) return void this.#behindReplay.push(el);
    if (el.attrs.xmlns === NS.sm) return smElement(this, el);
    if (el.attrs.xmlns === NS.csi && this.session && this.host!.server.config.csi.enabled) {
      return this.#clientState(el);
    }
    const session = this.session;
    const sm = session?.sm;
    if (sm === undefined) {
      this.#clientStanza(el);
      return this.#backpressure(this.#takeStored());
    }
    // Counted as handled once routed (XEP-0198 §4). After a resumption, the client resends what
    // it had no acknowledgement for: what was handled already is counted and dropped.
    const id = stanzaId(el);
    this.#replayKey = sm.resumable && id !== undefined ? `${sm.id}\0${id}` : undefined;
    if (this.dedupe) {
      if (id !== undefined && sm.seen(id)) {
        // Routed by the node that died, perhaps not yet stored there: stored now (archives
        // keep one entry per message), not delivered again; what follows waits for it, so it
        // is stored in the order sent.
        el.setAttr("from", session!.jid.full);
        const stored = this.host!.replayed(el, session!, this.#replayKey);
        session!.handled(undefined, stored);
        if (stored) this.#behind(stored);
        return;
      }
      this.dedupe = false;
    }
    this.#clientStanza(el);
    const stored = this.#takeStored();
    session!.handled(id, stored);
    this.#backpressure(stored);
  }

  #takeStored(): Promise<void> | undefined {
    const stored = this.#stored;
    this.#stored = undefined;
    return stored;
  }

  /**
   * While the archive has much to write, a client whose message waits for it reads no more
   * input until it is written: the archive's backlog stays bounded.
   */
  #backpressure(stored: Promise<void> | undefined): void {
    if (stored && this.deps.ctx.archive.backlog > ARCHIVE_HIGH_WATER) this.holdInput(stored);
  }

  /** Holds this client's stanzas (queued, and its input) until `done`, then handles them. */
  #behind(done: Promise<void>): void {
    const queued: Element[] = this.#behindReplay = [];
    this.holdInput(done);
    void done.catch(() => {}).then(() => {
      this.#behindReplay = undefined;
      for (let i = 0; i < queued.length && !this.closed; i++) {
        // Another wait began: the rest queues behind it, in order.
        const waiting = this.#behindReplay as Element[] | undefined;
        if (waiting) return void waiting.push(...queued.slice(i));
        this.#afterAuth(queued[i]);
      }
    });
  }

  #clientStanza(el: Element): void {
    if (!STANZAS.has(el.name)) return this.error("unsupported-stanza-type", `<${el.name}/>`);
    if (el.attrs.xmlns !== undefined) return this.error("invalid-namespace");
    const session = this.session;
    if (el.name === "iq") {
      const type = el.attrs.type ?? "";
      const children = el.elements();
      if (
        !el.attrs.id || !IQ_TYPES.has(type) ||
        ((type === "get" || type === "set") && children.length !== 1)
      ) {
        return this.#reject(el, "bad-request");
      }
      if (!session) return this.#preBind(el, children[0]);
      if (
        type === "set" && children[0].name === "session" && children[0].attrs.xmlns === NS.session
      ) {
        return this.#reply(iqResult(el));
      }
    } else if (!session) {
      return this.error("not-authorized", "bind a resource first");
    }
    const jid = session!.jid;
    const from = el.attrs.from;
    if (from !== undefined && from !== jid.full && from !== jid.bare) {
      const given = parseJid(from);
      if (!given || (given.full !== jid.full && given.full !== jid.bare)) {
        return this.error("invalid-from");
      }
    }
    let to: Jid | null = null;
    if (el.attrs.to !== undefined) {
      to = parseJid(el.attrs.to);
      if (!to) return this.#reject(el, "jid-malformed");
    }
    el.setAttr("from", jid.full);
    this.#stored = this.host!.outbound(el, session!, to, this.#replayKey);
  }

  /** Sends a reply from the server to this client: a stanza, counted under stream management. */
  #reply(stanza: Element): void {
    if (this.session) this.session.deliver(stanza);
    else this.send(stanza);
  }

  #reject(el: Element, condition: "bad-request" | "jid-malformed"): void {
    const reply = errorReply(el, condition);
    if (reply) this.#reply(reply.setAttr("from", undefined));
  }

  #preBind(iq: Element, payload: Element): void {
    if (iq.attrs.type === "set" && payload.name === "bind" && payload.attrs.xmlns === NS.bind) {
      return this.#bind(iq, payload);
    }
    if (
      iq.attrs.type === "set" && payload.name === "session" && payload.attrs.xmlns === NS.session
    ) {
      return this.send(iqResult(iq));
    }
    this.error("not-authorized", "bind a resource first");
  }

  /** Resource binding (RFC 6120 §7); a second session with the same full JID replaces the first. */
  #bind(iq: Element, payload: Element): void {
    if (this.resuming) return this.error("not-authorized", "bind during a resumption");
    const asked = payload.childText("resource")?.trim();
    let resource: string;
    if (asked) {
      const prepped = prepResource(asked);
      if (prepped === null) return this.#reject(iq, "bad-request");
      resource = prepped;
    } else {
      resource = "parley-" + randomBytes(6).toString("hex");
    }
    const host = this.host!;
    const jid = new Jid(this.user!, host.domain, resource);
    // Newer than the session it replaces, even within the same millisecond: on a tie, another
    // node would keep that one by its name, and both would stay.
    const before = this.deps.ctx.sessions.get(jid)?.boundAt ?? 0;
    const boundAt = Math.max(Date.now(), before + 1);
    const session = new ClientSession(jid, boundAt, host, this.deps.resumption, this);
    this.session = session;
    const old = this.deps.ctx.sessions.add(session);
    if (old) {
      host.events.fire("session/replaced", { old, by: session });
      // One on another node is closed there, when its node hears of this bind.
      if (isLocal(old)) old.replace();
    }
    this.send(
      iqResult(iq, x("bind", { xmlns: NS.bind }, x("jid", {}, jid.full))).setAttr(
        "from",
        undefined,
      ),
    );
    log.debug("bound {jid} on {id}", { jid: jid.full, id: this.id });
    host.events.fire("session/bound", session);
  }

  /** A resumption (XEP-0198) attached this stream to `session`. */
  resumed(session: ClientSession): void {
    this.session = session;
    this.limits.maxStanzaSize = this.deps.ctx.config.limits.max_stanza_size;
    log.info("resumed {jid} on {id}", { jid: session.jid.full, id: this.id });
  }

  override error(condition: StreamErrorCondition, text?: string, extra?: Element): void {
    if (this.closed) return;
    this.#condition = condition;
    super.error(condition, text, extra);
  }

  override close(why?: string, text?: string): void {
    if (why) return this.error(why as StreamErrorCondition, text);
    if (this.closed) return;
    this.#closing = true;
    const session = this.session;
    // The client learns what was handled before the stream ends (XEP-0198 §7).
    const sm = session?.sm;
    if (sm) this.send(`<a xmlns='urn:xmpp:sm:3' h='${sm.handled}'/>`);
    // Over as soon as we close it: stanzas for this address no longer wait on a closing stream.
    const condition = this.#condition;
    session?.streamEnded(this, condition === undefined || !RESUMABLE_AFTER.has(condition));
    super.close();
  }

  protected closedHook(): void {
    log.info("connection {id} closed ({jid})", {
      id: this.id,
      jid: this.session?.jid.full ?? "no resource bound",
    });
    this.session?.streamEnded(this, false);
  }

  /** A ping is a stanza like any other the session is sent (counted by stream management). */
  protected override sendPing(xml: string): void {
    if (this.session) this.session.deliver(xml);
    else this.send(xml);
  }

  /** Pings idle clients (XEP-0199) and drops dead ones, or ones that do not log in in time. */
  checkIdle(now: number): void {
    if (this.closed) return;
    const t = this.deps.ctx.config.timeouts;
    if (!this.session) {
      if (now - this.startedAt > t.handshake * 1000) {
        this.error("connection-timeout", "no login in time");
      }
      return;
    }
    this.keepalive(now, t.ping_interval, t.ping_timeout, this.host!.domain, this.session.jid.full);
  }
}

/** The id a client stanza is known by for duplicates: its origin-id (XEP-0359), or its id. */
function stanzaId(el: Element): string | undefined {
  if (el.name === "message") {
    const origin = el.child("origin-id", NS.sid)?.attrs.id;
    if (origin !== undefined) return origin;
  }
  return el.attrs.id;
}
