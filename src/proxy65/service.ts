// The SOCKS5 Bytestreams proxy's XMPP side (XEP-0065 §6): discovery, the streamhost query, and
// activation. Who may use it: users of this server's hosts by default, or the configured domains
// and bare JIDs. A refusal by policy is not-allowed (§6.3.2).
import { createHash } from "node:crypto";
import type { Element } from "../xml/element.ts";
import { x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import type { DomainHandler, Router } from "../router/router.ts";
import { iqResult } from "../router/stanza_error.ts";
import type { Proxy65Config } from "../config/schema.ts";
import { Socks5Relay } from "./relay.ts";
import type { Host } from "../core/host.ts";

const OFFERS_MAX = 10_000;

export const NS_BYTESTREAMS = "http://jabber.org/protocol/bytestreams";

export class Proxy65Service implements DomainHandler {
  readonly relay: Socks5Relay;
  #announcedPort = 0;
  /** Offers naming this proxy seen on their way to the target: "sid\ntarget" → requester. */
  #offers = new Map<string, string>();

  constructor(
    readonly config: Proxy65Config,
    readonly router: Router,
    /** Domains whose users may use the proxy when `allow` is empty. */
    readonly localDomains: Set<string>,
  ) {
    this.relay = new Socks5Relay(config);
  }

  get domain(): string {
    return this.config.domain;
  }

  async start(): Promise<void> {
    const port = await this.relay.listen();
    this.#announcedPort = this.config.announce_port ?? port;
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
      if (!sid || !q.elements("streamhost").some((h) => h.attrs.jid === this.domain)) return false;
      if (this.#offers.size >= OFFERS_MAX) this.#offers.delete(this.#offers.keys().next().value!);
      this.#offers.set(`${sid}\n${to.full}`, from.full);
      return false;
    }, 1);
  }

  allowed(from: Jid): boolean {
    const allow = this.config.allow;
    if (allow.length === 0) return this.localDomains.has(from.domain);
    return allow.includes(from.domain) || allow.includes(from.bare);
  }

  receive(stanza: Element, from: Jid): void {
    const type = stanza.attrs.type;
    if (stanza.name !== "iq") {
      if (stanza.name === "message") this.router.bounce(stanza, "service-unavailable");
      return;
    }
    if (type !== "get" && type !== "set") return;
    const q = stanza.elements()[0];
    const ns = q?.attrs.xmlns;
    const reply = (payload?: Element) => this.router.sendFrom(iqResult(stanza, payload));
    if (ns === NS.discoInfo && type === "get") {
      return reply(x(
        "query",
        { xmlns: NS.discoInfo },
        x("identity", {
          category: "proxy",
          type: "bytestreams",
          name: "SOCKS5 Bytestreams Service",
        }),
        x("feature", { var: NS.discoInfo }),
        x("feature", { var: NS_BYTESTREAMS }),
      ));
    }
    if (ns === NS.discoItems && type === "get") return reply(x("query", { xmlns: NS.discoItems }));
    if (ns !== NS_BYTESTREAMS) return this.router.bounce(stanza, "service-unavailable");
    if (!this.allowed(from)) return this.router.bounce(stanza, "not-allowed");
    if (type === "get") {
      return reply(x(
        "query",
        { xmlns: NS_BYTESTREAMS },
        x("streamhost", {
          jid: this.domain,
          host: this.config.host ?? this.config.bind,
          port: String(this.#announcedPort),
        }),
      ));
    }
    const sid = q.attrs.sid;
    const targetText = q.childText("activate")?.trim();
    if (!sid || !targetText) return this.router.bounce(stanza, "bad-request");
    const target = parseJid(targetText);
    if (!target) return this.router.bounce(stanza, "jid-malformed");
    // DST.ADDR = SHA1(SID + Requester JID + Target JID): only the real requester's hash matches.
    const hash = createHash("sha1").update(sid + from.full + target.full).digest("hex");
    switch (this.relay.activate(hash, from.bare)) {
      case "ok":
        this.#offers.delete(`${sid}\n${target.full}`);
        return reply();
      case "no-pair": {
        const offeredBy = this.#offers.get(`${sid}\n${target.full}`);
        if (offeredBy !== undefined && offeredBy !== from.full) {
          return this.router.bounce(stanza, "not-allowed", {
            text: "only the requester may activate",
          });
        }
        return this.router.bounce(stanza, "item-not-found");
      }
      case "already-active":
        return this.router.bounce(stanza, "bad-request", { text: "already activated" });
      case "user-limit":
        return this.router.bounce(stanza, "resource-constraint", { text: "too many streams" });
    }
  }
}
