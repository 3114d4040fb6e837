// The router: every stanza between entities passes here and goes to the handler of its
// destination domain — a local virtual host, or a service (MUC, proxy, components) — behind one
// interface. Remote domains (s2s, other cluster nodes) plug in the same way.
import type { Element } from "../xml/element.ts";
import type { Jid } from "../jid/jid.ts";
import { parseJid } from "../jid/jid.ts";
import { type ErrorCondition, type ErrorOptions, errorReply } from "./stanza_error.ts";

export interface DomainHandler {
  /** Takes a stanza whose `to` is at this handler's domain. */
  receive(stanza: Element, from: Jid, to: Jid): void;
}

export class Router {
  #domains = new Map<string, DomainHandler>();

  addDomain(domain: string, handler: DomainHandler): void {
    if (this.#domains.has(domain)) throw new Error(`domain ${domain} is already routed`);
    this.#domains.set(domain, handler);
  }

  /** Whether this server handles `domain` (a host or one of its services). */
  serves(domain: string): boolean {
    return this.#domains.has(domain);
  }

  route(stanza: Element, from: Jid, to: Jid): void {
    const handler = this.#domains.get(to.domain);
    if (handler) handler.receive(stanza, from, to);
    // No server-to-server links: a remote domain cannot be reached (RFC 6120 §10.4.3).
    else this.bounce(stanza, "remote-server-not-found");
  }

  /** Answers `stanza` with an error back to its sender (never an error to an error). */
  bounce(stanza: Element, condition: ErrorCondition, opts?: ErrorOptions): void {
    const reply = errorReply(stanza, condition, opts);
    if (!reply) return;
    this.sendFrom(reply);
  }

  /** Routes a stanza built by the server, taking from/to from its attributes. */
  sendFrom(stanza: Element): void {
    const to = parseJid(stanza.attrs.to ?? "");
    const from = parseJid(stanza.attrs.from ?? "") ?? to;
    if (to && from) this.route(stanza, from, to);
  }
}
