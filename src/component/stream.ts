// An external component connection (XEP-0114, jabber:component:accept). After the handshake
// (hex SHA-1 of stream id + secret) it is one instance in its domain's pool. A component may only
// send from its own domain: any other `from` is an invalid-from stream error (RFC 6120 §4.9.3.9),
// which closes this instance only, so its users move to the others.
import { withoutOurIds } from "../mam/stanza_ids.ts";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Attrs, Element } from "../xml/element.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import { prepDomain } from "../jid/precis.ts";
import { XmlStream } from "../stream/xml_stream.ts";
import type { Transport } from "../stream/transport.ts";
import type { ServerContext } from "../core/context.ts";
import { errorReply } from "../router/stanza_error.ts";
import { type ComponentInstance, type ComponentPool, originalId, requestId } from "./pool.ts";
import { logger } from "../log/logger.ts";

const log = logger("component");
const NS_COMPONENT = "jabber:component:accept";
const STANZAS = new Set(["message", "presence", "iq"]);

export interface ComponentDeps {
  ctx: ServerContext;
  pools: Map<string, ComponentPool>;
}

/** A stanza, or the text of one another node forwarded with a way to take it back. */
type Pending = { stanza: Element; from: Jid; to: Jid } | { xml: string; unwritten: () => void };

export class ComponentStream extends XmlStream implements ComponentInstance {
  readonly stats = { received: 0, sent: 0 };
  readonly connectedAt = Date.now();
  /** Given by the pool at the handshake (a returning instance may get its old one back). */
  instanceId = "";
  pool: ComponentPool | undefined;
  #streamId = "";
  #authenticated = false;
  /** A wrong secret waiting out its delay before not-authorized. */
  #refusal: ReturnType<typeof setTimeout> | undefined;
  #pending: Pending[] = [];
  #flushQueued = false;

  constructor(transport: Transport, readonly deps: ComponentDeps) {
    const l = deps.ctx.config.limits;
    super(
      transport,
      false,
      {
        maxStanzaSize: l.max_stanza_size,
        maxDepth: l.max_depth,
        // Components carry many users' traffic: a higher rate than a client's, and a small
        // burst, so that a flood is parsed in slices between which other connections run.
        rateBytesPerSecond: l.component_rate_bytes_per_second,
        rateBurstBytes: l.component_rate_burst_bytes,
        maxOutboundBuffer: l.max_outbound_buffer,
      },
      log,
      NS_COMPONENT,
    );
    log.info("component connection {id} opened from {remote}", {
      id: this.id,
      remote: this.remote,
    });
  }

  streamStart(attrs: Attrs, defaultNs: string | undefined): void {
    const domain = prepDomain(attrs.to ?? "");
    this.pool = domain === null ? undefined : this.deps.pools.get(domain);
    this.#streamId = randomBytes(12).toString("hex");
    this.sendHeader({ id: this.#streamId, from: this.pool?.domain ?? attrs.to });
    if (defaultNs !== NS_COMPONENT) {
      return this.error("invalid-namespace", `expected ${NS_COMPONENT}`);
    }
    if (!this.pool) return this.error("host-unknown", "no such component domain");
  }

  stanza(el: Element): void {
    if (this.#refusal !== undefined) return; // closing: the answer is not-authorized
    if (!this.#authenticated) return this.#handshake(el);
    if (!STANZAS.has(el.name)) return this.error("unsupported-stanza-type", `<${el.name}/>`);
    // Some components label stanzas jabber:client; that is the same thing here.
    if (el.attrs.xmlns === "jabber:client") el.setAttr("xmlns", undefined);
    if (el.attrs.xmlns !== undefined) return this.error("invalid-namespace");
    const from = parseJid(el.attrs.from ?? "");
    if (!from || from.domain !== this.pool!.domain) {
      return this.error("invalid-from", `a component may only send from ${this.pool!.domain}`);
    }
    const to = parseJid(el.attrs.to ?? "");
    if (!to) {
      const reply = errorReply(el, "jid-malformed");
      if (reply) this.send(reply.setAttr("from", this.pool!.domain));
      return;
    }
    this.stats.sent++;
    this.deps.ctx.counters.stanzasIn.element(el.name);
    const { type, id } = el.attrs;
    if (el.name === "iq" && (type === "get" || type === "set") && id !== undefined) {
      el.setAttr("id", requestId(this.instanceId, id));
    }
    // Stanza ids by this server's JIDs are ours to give (XEP-0359), not a component's.
    const router = this.deps.ctx.router;
    const out = el.name === "message" ? withoutOurIds(el, (d) => router.serves(d)) : el;
    router.route(out, from, to);
  }

  #handshake(el: Element): void {
    if (el.name !== "handshake" || !this.pool) {
      return this.error("not-authorized", "handshake first");
    }
    const expected = createHash("sha1").update(this.#streamId + this.pool.config.secret).digest(
      "hex",
    );
    const given = Buffer.from(el.text().trim().toLowerCase());
    if (given.length !== expected.length || !timingSafeEqual(given, Buffer.from(expected))) {
      const base = this.deps.ctx.config.timeouts.auth_failure_delay_ms;
      const delay = this.pool.handshakeDelays.failed(this.remote, base);
      log.info("component handshake failed for {domain} from {remote}: answered in {delay} ms", {
        domain: this.pool.domain,
        remote: this.remote,
        delay,
      });
      this.#refusal = setTimeout(() => this.error("not-authorized", "wrong secret"), delay);
      return;
    }
    this.#authenticated = true;
    this.send("<handshake/>");
    this.instanceId = this.pool.claimId(this.remote, this.id);
    this.pool.add(this);
    log.info("component instance {id} of {domain} connected from {remote}", {
      id: this.instanceId,
      domain: this.pool.domain,
      remote: this.remote,
    });
  }

  get node(): string {
    return this.pool!.node;
  }

  deliver(stanza: Element, from: Jid, to: Jid): boolean {
    return this.#queue({ stanza, from, to });
  }

  deliverText(xml: string, unwritten: () => void): boolean {
    return this.#queue({ xml, unwritten });
  }

  #queue(p: Pending): boolean {
    if (this.closed || this.transport.destroyed) return false;
    this.#pending.push(p);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flushPending());
    }
    return true;
  }

  #flushPending(): void {
    this.#flushQueued = false;
    const batch = this.#pending;
    if (batch.length === 0) return;
    this.#pending = [];
    if (this.closed || this.transport.destroyed) return this.#reroute(batch);
    for (const p of batch) {
      if ("xml" in p) {
        this.send(p.xml);
        continue;
      }
      const id = originalId(p.stanza, this.instanceId);
      if (id !== p.stanza.attrs.id) p.stanza.setAttr("id", id);
      this.send(p.stanza);
    }
    this.stats.received += batch.length;
    this.flush();
  }

  /** Stanzas that never reached the wire go to another instance (or bounce). */
  #reroute(batch: Pending[]): void {
    this.pool?.remove(this);
    for (const p of batch) {
      if ("xml" in p) p.unwritten();
      else this.pool?.receive(p.stanza, p.from, p.to);
    }
  }

  protected closedHook(): void {
    log.info("component connection {id} closed", { id: this.id });
    clearTimeout(this.#refusal);
    this.pool?.remove(this);
    const left = this.#pending;
    this.#pending = [];
    if (left.length) this.#reroute(left);
  }

  checkIdle(now: number): void {
    if (this.closed) return;
    const t = this.deps.ctx.config.timeouts;
    if (!this.#authenticated) {
      if (now - this.connectedAt > t.handshake * 1000) {
        this.error("connection-timeout", "no handshake in time");
      }
      return;
    }
    this.keepalive(now, t.ping_interval, t.ping_timeout, this.pool!.hostDomain, this.pool!.domain);
  }
}
