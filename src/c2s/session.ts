// A client-to-server session (RFC 6120): stream header checks, STARTTLS, SASL, resource binding,
// then validation and stamping of every stanza the client sends before its host routes it.
import { randomBytes } from "node:crypto";
import { type Attrs, type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { Jid, parseJid } from "../jid/jid.ts";
import { prepResource } from "../jid/precis.ts";
import { XmlStream } from "../stream/xml_stream.ts";
import type { Transport } from "../stream/transport.ts";
import type { StanzaCounts } from "../metrics/counters.ts";
import type { Host } from "../core/host.ts";
import type { ServerContext } from "../core/context.ts";
import type { ListenerConfig } from "../config/schema.ts";
import { isLocal, type LocalSession } from "../router/sessions.ts";
import type { TlsContexts } from "../tls/certificates.ts";
import { errorReply, iqResult } from "../router/stanza_error.ts";
import { offeredMechanisms } from "../sasl/mechanisms.ts";
import { SaslNegotiation } from "./sasl_negotiation.ts";
import { streamFeatures } from "./features.ts";
import { logger } from "../log/logger.ts";

const log = logger("c2s");
const STANZAS = new Set(["message", "presence", "iq"]);
const IQ_TYPES = new Set(["get", "set", "result", "error"]);

export interface C2SDeps {
  ctx: ServerContext;
  hosts: Map<string, Host>;
  tls: TlsContexts;
  listener: ListenerConfig;
}

export class C2SSession extends XmlStream implements LocalSession {
  host: Host | undefined;
  jid!: Jid;
  readonly node = null;
  boundAt = 0;
  user: string | undefined;
  available = false;
  priority = 0;
  presence: Element | null = null;
  rosterRequested = false;
  blocklistRequested = false;
  carbons = false;
  directed = new Set<string>();
  announced = false;
  readonly startedAt = Date.now();
  /**
   * unbound → bound → ended; or bound → replaced, when a newer session binds the same full JID.
   * Only an ended session was ever announced as gone: a replaced one leaves without a trace.
   */
  #state: "unbound" | "bound" | "replaced" | "ended" = "unbound";
  /** Created by the first SASL element, dropped once authenticated (memory per session). */
  #sasl: SaslNegotiation | undefined;
  /** The node's count of stanzas delivered to clients (/metrics). */
  readonly #stanzasOut: StanzaCounts;

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
    this.#stanzasOut = deps.ctx.counters.stanzasOut;
    log.info("connection {id} opened from {remote}", { id: this.id, remote: this.remote });
  }

  get authenticated(): boolean {
    return this.user !== undefined;
  }

  get bound(): boolean {
    return this.#state !== "unbound";
  }

  get replaced(): boolean {
    return this.#state === "replaced";
  }

  /** Every stanza for this session passes here: counted as stanzas out (/metrics). */
  deliver(stanza: Element | string): void {
    if (this.closed) return;
    const out = this.#stanzasOut;
    if (typeof stanza === "string") out.text(stanza);
    else out.element(stanza.name);
    this.send(stanza);
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
    }));
  }

  stanza(el: Element): void {
    if (this.authenticated) this.#afterAuth(el);
    else this.#beforeAuth(el);
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

  #afterAuth(el: Element): void {
    if (!STANZAS.has(el.name)) return this.error("unsupported-stanza-type", `<${el.name}/>`);
    if (el.attrs.xmlns !== undefined) return this.error("invalid-namespace");
    if (el.name === "iq") {
      const type = el.attrs.type ?? "";
      const children = el.elements();
      if (
        !el.attrs.id || !IQ_TYPES.has(type) ||
        ((type === "get" || type === "set") && children.length !== 1)
      ) {
        return this.#reject(el, "bad-request");
      }
      if (!this.bound) return this.#preBind(el, children[0]);
      if (
        type === "set" && children[0].name === "session" && children[0].attrs.xmlns === NS.session
      ) {
        return this.send(iqResult(el));
      }
    } else if (!this.bound) {
      return this.error("not-authorized", "bind a resource first");
    }
    const from = el.attrs.from;
    if (from !== undefined && from !== this.jid.full && from !== this.jid.bare) {
      const given = parseJid(from);
      if (!given || (given.full !== this.jid.full && given.full !== this.jid.bare)) {
        return this.error("invalid-from");
      }
    }
    let to: Jid | null = null;
    if (el.attrs.to !== undefined) {
      to = parseJid(el.attrs.to);
      if (!to) return this.#reject(el, "jid-malformed");
    }
    el.setAttr("from", this.jid.full);
    this.host!.outbound(el, this, to);
  }

  #reject(el: Element, condition: "bad-request" | "jid-malformed"): void {
    const reply = errorReply(el, condition);
    if (reply) this.send(reply.setAttr("from", undefined));
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
    this.jid = new Jid(this.user!, host.domain, resource);
    this.boundAt = Date.now();
    this.#state = "bound";
    const old = this.deps.ctx.sessions.add(this);
    if (old) {
      host.events.fire("session/replaced", { old, by: this });
      // One on another node is closed there, when its node hears of this bind.
      if (isLocal(old)) old.replace();
    }
    this.send(
      iqResult(iq, x("bind", { xmlns: NS.bind }, x("jid", {}, this.jid.full))).setAttr(
        "from",
        undefined,
      ),
    );
    log.debug("bound {jid} on {id}", { jid: this.jid.full, id: this.id });
    host.events.fire("session/bound", this);
  }

  replace(): void {
    if (this.#state !== "bound") return;
    this.#state = "replaced";
    this.close("conflict", "replaced by a new session with the same resource");
  }

  override close(condition?: string, text?: string): void {
    if (condition) return this.error(condition as Parameters<XmlStream["error"]>[0], text);
    // Over as soon as we close it: stanzas for this address no longer wait on a closing stream.
    this.#end();
    super.close();
  }

  protected closedHook(): void {
    log.info("connection {id} closed ({jid})", {
      id: this.id,
      jid: this.bound ? this.jid.full : "no resource bound",
    });
    this.#end();
  }

  /** Unregisters a bound session and tells the modules, once; a replaced one stays silent. */
  #end(): void {
    if (this.#state !== "bound") return;
    this.#state = "ended";
    this.deps.ctx.sessions.remove(this);
    this.host!.events.fire("session/closed", this);
  }

  /** Pings idle clients (XEP-0199) and drops dead ones, or ones that do not log in in time. */
  checkIdle(now: number): void {
    if (this.closed) return;
    const t = this.deps.ctx.config.timeouts;
    if (!this.bound) {
      if (now - this.startedAt > t.handshake * 1000) {
        this.error("connection-timeout", "no login in time");
      }
      return;
    }
    this.keepalive(now, t.ping_interval, t.ping_timeout, this.host!.domain, this.jid.full);
  }
}
