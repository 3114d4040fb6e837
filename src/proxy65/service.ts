// The SOCKS5 Bytestreams proxy's XMPP side (XEP-0065 §6): discovery, the streamhost query, and
// activation. Who may use it: users of this server's hosts by default, or the configured domains
// and bare JIDs. A refusal by policy is not-allowed (§6.3.2). The proxy is spread over nodes
// through the StreamDistribution it is given (src/core/distribution.ts): alone, LocalStreams; in a
// cluster, src/cluster/proxy65_relay.ts. It never learns which.
import { createHash } from "node:crypto";
import type { Element } from "../xml/element.ts";
import { x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import type { DomainHandler, Router } from "../router/router.ts";
import { discoInfoPayload, IqHandlers, type IqRequest } from "../core/iq.ts";
import { logger } from "../log/logger.ts";
import type { Proxy65Config } from "../config/schema.ts";
import type { DescriptorBudget } from "../stream/descriptor_budget.ts";
import { type Activation, Socks5Relay } from "./relay.ts";
import type { Host } from "../core/host.ts";
import type { Distribution } from "../core/distribution.ts";

const OFFERS_MAX = 10_000;
const log = logger("proxy65");

export const NS_BYTESTREAMS = "http://jabber.org/protocol/bytestreams";

/** How the proxy is spread over nodes: where a stream is activated, whether one runs elsewhere. */
export interface StreamDistribution extends Distribution<Proxy65Service> {
  /** Activates the stream `hash` for `owner` (a bare JID), wherever its connections are. */
  activate(proxy: Proxy65Service, hash: string, owner: string): Activation | Promise<Activation>;
  /** Whether the stream `hash` runs on another node. */
  activeElsewhere(proxy: Proxy65Service, hash: string): boolean;
}

export class Proxy65Service implements DomainHandler {
  readonly relay: Socks5Relay;
  #iq: IqHandlers;
  #announcedPort = 0;
  /** Offers naming this proxy seen on their way to the target: "sid\ntarget" → requester. */
  #offers = new Map<string, string>();
  /** `allow`, prepared (RFC 7622): domains, and bare JIDs. */
  #allowDomains = new Set<string>();
  #allowBare = new Set<string>();

  constructor(
    readonly config: Proxy65Config,
    readonly router: Router,
    /** Domains whose users may use the proxy when `allow` is empty. */
    readonly localDomains: Set<string>,
    descriptors: DescriptorBudget,
    readonly distribution: StreamDistribution,
  ) {
    this.relay = new Socks5Relay(
      config,
      descriptors,
      (hash) => distribution.activeElsewhere(this, hash),
    );
    distribution.serve(this);
    for (const entry of config.allow) {
      const j = parseJid(entry);
      if (!j) log.warn("proxy65 allow: {entry} is not a JID; ignored", { entry });
      else if (j.isDomain) this.#allowDomains.add(j.domain);
      else this.#allowBare.add(j.bare);
    }
    const info = discoInfoPayload(
      [{ category: "proxy", type: "bytestreams", name: "SOCKS5 Bytestreams Service" }],
      [NS.discoInfo, NS_BYTESTREAMS],
    );
    this.#iq = new IqHandlers(router, log)
      .onGet(NS.discoInfo, (iq) => iq.reply(info))
      .onGet(NS.discoItems, (iq) => iq.reply(x("query", { xmlns: NS.discoItems })))
      .on(NS_BYTESTREAMS, (iq) => this.#bytestreams(iq));
  }

  get domain(): string {
    return this.config.domain;
  }

  async start(): Promise<void> {
    const port = await this.relay.listen();
    this.#announcedPort = this.config.announce_port ?? port;
    const { host, port: announced } = this.streamhost;
    log.info("proxy65 {domain} announces {host}:{announced}", {
      domain: this.domain,
      host,
      announced,
    });
  }

  /** What clients are told to connect to (XEP-0065 §6.2): this node's announced address. */
  get streamhost(): { host: string; port: number } {
    return { host: this.config.host ?? this.config.bind, port: this.#announcedPort };
  }

  stop(): Promise<void> {
    return this.relay.close();
  }

  /**
   * Watches a host's users offer this proxy to a target (XEP-0065 §6.3.1), so an activation by
   * anyone but the offering requester can be refused with not-allowed rather than not found.
   */
  watch(host: Host): void {
    host.events.on("stanza/out", ({ stanza, from, to }) => {
      if (stanza.name !== "iq" || stanza.attrs.type !== "set") return false;
      const q = stanza.child("query", NS_BYTESTREAMS);
      const sid = q?.attrs.sid;
      const named = (h: Element) => parseJid(h.attrs.jid ?? "")?.full === this.domain;
      if (!sid || !q.elements("streamhost").some(named)) return false;
      if (this.#offers.size >= OFFERS_MAX) this.#offers.delete(this.#offers.keys().next().value!);
      this.#offers.set(`${sid}\n${to.full}`, from.full);
      return false;
    }, 1);
  }

  allowed(from: Jid): boolean {
    if (this.config.allow.length === 0) return this.localDomains.has(from.domain);
    return this.#allowDomains.has(from.domain) || this.#allowBare.has(from.bare);
  }

  receive(stanza: Element, from: Jid, to: Jid): void {
    if (stanza.name === "iq") this.#iq.dispatch(stanza, from, to);
    else if (stanza.name === "message") this.router.bounce(stanza, "service-unavailable");
  }

  async #bytestreams(iq: IqRequest): Promise<void> {
    const { from, payload: q } = iq;
    if (!this.allowed(from)) return iq.error("not-allowed");
    if (iq.type === "get") {
      const { host, port } = this.streamhost;
      return iq.reply(x(
        "query",
        { xmlns: NS_BYTESTREAMS },
        x("streamhost", { jid: this.domain, host, port: String(port) }),
      ));
    }
    const sid = q.attrs.sid;
    const targetText = q.childText("activate")?.trim();
    if (!sid || !targetText) return iq.error("bad-request");
    const target = parseJid(targetText);
    if (!target) return iq.error("jid-malformed");
    // DST.ADDR = SHA1(SID + Requester JID + Target JID): only the real requester's hash matches.
    const hash = createHash("sha1").update(sid + from.full + target.full).digest("hex");
    const offer = `${sid}\n${target.full}`;
    switch (await this.distribution.activate(this, hash, from.bare)) {
      case "ok":
        this.#offers.delete(offer);
        return iq.reply();
      case "no-pair": {
        const offeredBy = this.#offers.get(offer);
        if (offeredBy !== undefined && offeredBy !== from.full) {
          return iq.error("not-allowed", { text: "only the requester may activate" });
        }
        return iq.error("item-not-found");
      }
      case "already-active":
        return iq.error("bad-request", { text: "already activated" });
      case "user-limit":
        return iq.error("resource-constraint", { text: "too many streams" });
      case "full":
        return iq.error("resource-constraint", { text: "the proxy is full" });
    }
  }
}
