// Delivery to local accounts by stanza kind and address (RFC 6121 §8.5): full JIDs to their
// session, bare JIDs to the highest-priority available resources (on any node of a cluster),
// with offline storage behind.
import type { Host, Module, StanzaEvent } from "../core/host.ts";
import type { Session, SessionRegistry } from "../router/sessions.ts";
import { Element } from "../xml/element.ts";

const SUBSCRIPTION_TYPES = new Set(["subscribe", "subscribed", "unsubscribe", "unsubscribed"]);

export function isSubscription(presence: Element): boolean {
  return SUBSCRIPTION_TYPES.has(presence.attrs.type ?? "");
}

/** Available resources of an account with non-negative priority. */
export function availableResources(sessions: SessionRegistry, bare: string): Session[] {
  const out: Session[] = [];
  for (const s of sessions.resources(bare)) if (s.available && s.priority >= 0) out.push(s);
  return out;
}

/** The resources a chat/normal message to a bare JID goes to: those of highest priority. */
export function messageTargets(sessions: SessionRegistry, bare: string): Session[] {
  let best = -1;
  let out: Session[] = [];
  for (const s of sessions.resources(bare)) {
    if (!s.available || s.priority < 0 || s.priority < best) continue;
    if (s.priority > best) {
      best = s.priority;
      out = [];
    }
    out.push(s);
  }
  return out;
}

/** A copy of `stanza` addressed to `to`, sharing its children (delivery never changes them). */
export function readdressed(stanza: Element, to: string): Element {
  return new Element(stanza.name, { ...stanza.attrs, to }, stanza.children);
}

export function deliverToBare(host: Host, ev: StanzaEvent): void {
  const { stanza, to } = ev;
  const sessions = host.server.sessions;
  const type = stanza.attrs.type ?? "normal";
  if (type === "error") return;
  if (type === "groupchat") return host.server.router.bounce(stanza, "service-unavailable");
  const targets = type === "headline"
    ? availableResources(sessions, to.bare)
    : messageTargets(sessions, to.bare);
  if (targets.length) {
    for (const s of targets) sessions.deliver(s, stanza);
    return;
  }
  if (type === "headline") return;
  if (!host.events.fire("message/offline", ev)) {
    host.server.router.bounce(stanza, "service-unavailable");
  }
}

export const deliveryModule: Module = {
  name: "delivery",
  install(host) {
    const { sessions, router } = host.server;
    host.events.on("message/bare", (ev) => {
      deliverToBare(host, ev);
      return true;
    });
    host.events.on("message/full", (ev) => {
      const session = sessions.get(ev.to);
      if (session) {
        sessions.deliver(session, ev.stanza);
        return true;
      }
      const type = ev.stanza.attrs.type ?? "normal";
      if (type === "normal" || type === "chat") deliverToBare(host, ev);
      else if (type === "groupchat") router.bounce(ev.stanza, "service-unavailable");
      return true;
    });
    host.events.on("presence/full", (ev) => {
      if (isSubscription(ev.stanza)) {
        return host.events.fire("presence/bare", { ...ev, to: ev.to.toBare() });
      }
      const session = sessions.get(ev.to);
      if (session) sessions.deliver(session, ev.stanza);
      return true;
    });
    host.events.on("iq/full", (ev) => {
      const session = sessions.get(ev.to);
      if (session) sessions.deliver(session, ev.stanza);
      else router.bounce(ev.stanza, "service-unavailable");
      return true;
    });
    // Messages and presence addressed to the server itself are not for anyone.
    host.events.on("message/host", () => true);
    host.events.on("presence/host", () => true);
  },
};
