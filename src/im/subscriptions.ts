// The presence subscription state machine (RFC 6121 §3): outbound requests and answers from our
// users, inbound ones from contacts, the roster changes and pushes each causes, and pending
// inbound requests kept until answered and redelivered at each login.
import type { Host, Module, StanzaEvent } from "../core/host.ts";
import type { Jid } from "../jid/jid.ts";
import { type Element, x } from "../xml/element.ts";
import type { RosterItem, Subscription } from "../storage/store.ts";
import { isSubscription, readdressed } from "./delivery.ts";
import { pushRoster } from "./roster.ts";
import { parseStanza } from "../xml/parse_string.ts";
import { answerFailure } from "../core/failure.ts";

const hasTo = (s: Subscription) => s === "to" || s === "both";
const hasFrom = (s: Subscription) => s === "from" || s === "both";
const make = (to: boolean, from: boolean): Subscription =>
  to ? (from ? "both" : "to") : (from ? "from" : "none");

function blank(jid: string): RosterItem {
  return { jid, subscription: "none", ask: false, groups: [] };
}

/** Sends each available resource's presence (or unavailable) from `user` to `contact`. */
export function sendPresenceOf(host: Host, user: Jid, contact: string, unavailable: boolean): void {
  for (const s of host.server.sessions.resources(user.bare)) {
    if (!s.available) continue;
    const p = unavailable || !s.presence
      ? x("presence", { from: s.jid.full, to: contact, type: "unavailable" })
      : readdressed(s.presence, contact);
    host.server.router.sendFrom(p);
  }
}

/** Stores a changed roster item and pushes it to the user's interested resources. */
async function save(host: Host, user: Jid, next: RosterItem): Promise<void> {
  pushRoster(
    host,
    user.bare,
    next,
    await host.server.store.putRosterItem(user.local, user.domain, next),
  );
}

/** Ends the user's subscription to `contact`, or its pending request; false when it had neither. */
async function cancelTo(host: Host, user: Jid, item: RosterItem | null): Promise<boolean> {
  if (!item || (!hasTo(item.subscription) && !item.ask)) return false;
  await save(host, user, {
    ...item,
    subscription: make(false, hasFrom(item.subscription)),
    ask: false,
  });
  return true;
}

/** Ends `contact`'s subscription to the user, or refuses its pending request; false when neither. */
async function cancelFrom(
  host: Host,
  user: Jid,
  contact: string,
  item: RosterItem | null,
): Promise<boolean> {
  const hadPending = await host.server.store.removePendingIn(user.local, user.domain, contact);
  if (!item || !hasFrom(item.subscription)) return hadPending;
  await save(host, user, { ...item, subscription: make(hasTo(item.subscription), false) });
  return true;
}

async function outbound(host: Host, user: Jid, contact: Jid, stanza: Element): Promise<void> {
  const type = stanza.attrs.type!;
  const { store, router } = host.server;
  const { local, domain, bare } = user;
  const cj = contact.bare;
  const item = await store.getRosterItem(local, domain, cj);
  // Routed from the bare JID (RFC 6121 §3.1.2), keeping what the client put in (a status text).
  const route = () =>
    router.sendFrom(x("presence", { ...stanza.attrs, from: bare, to: cj }, ...stanza.children));
  switch (type) {
    case "subscribe": {
      const cur = item ?? blank(cj);
      if (!hasTo(cur.subscription) && !cur.ask) await save(host, user, { ...cur, ask: true });
      return route();
    }
    case "subscribed": {
      if (!await store.removePendingIn(local, domain, cj)) return; // nothing to approve
      const cur = item ?? blank(cj);
      await save(host, user, { ...cur, subscription: make(hasTo(cur.subscription), true) });
      route();
      return sendPresenceOf(host, user, cj, false);
    }
    case "unsubscribe":
      await cancelTo(host, user, item);
      return route();
    case "unsubscribed":
      if (!await cancelFrom(host, user, cj, item)) return;
      route();
      return sendPresenceOf(host, user, cj, true);
  }
}

async function inbound(host: Host, ev: StanzaEvent): Promise<void> {
  const { store, router, sessions } = host.server;
  const user = ev.to;
  const { local, domain, bare } = user;
  const from = ev.from.bare;
  const type = ev.stanza.attrs.type!;
  const stamped = x("presence", { ...ev.stanza.attrs, from, to: bare }, ...ev.stanza.children);
  const toResources = () => {
    for (const s of sessions.resources(bare)) if (s.available) s.deliver(stamped);
  };
  if (!await store.getCredentials(local, domain)) {
    if (type === "subscribe") {
      router.sendFrom(x("presence", { from: bare, to: from, type: "unsubscribed" }));
    }
    return;
  }
  const item = await store.getRosterItem(local, domain, from);
  switch (type) {
    case "subscribe":
      if (item && hasFrom(item.subscription)) {
        return router.sendFrom(x("presence", { from: bare, to: from, type: "subscribed" }));
      }
      await store.addPendingIn(local, domain, from, stamped.toString());
      return toResources();
    case "subscribed":
      if (!item || !item.ask || hasTo(item.subscription)) return;
      await save(host, user, {
        ...item,
        subscription: make(true, hasFrom(item.subscription)),
        ask: false,
      });
      return toResources();
    case "unsubscribe":
      if (!await cancelFrom(host, user, from, item)) return;
      toResources();
      return sendPresenceOf(host, user, from, true);
    case "unsubscribed":
      if (await cancelTo(host, user, item)) toResources();
  }
}

export const subscriptionsModule: Module = {
  name: "subscriptions",
  install(host) {
    const { serial, router } = host.server;
    host.events.on("stanza/out", (ev) => {
      if (ev.stanza.name !== "presence" || !isSubscription(ev.stanza)) return false;
      if (!ev.toAbsent && !ev.to.isDomain) {
        const user = ev.from.toBare();
        serial.call(user.bare, () => outbound(host, user, ev.to, ev.stanza))
          .catch(
            answerFailure(
              ev.stanza,
              `subscription from ${user.bare}`,
              (r) => ev.session.deliver(r),
            ),
          );
      }
      return true;
    }, 60);
    host.events.on("presence/bare", (ev) => {
      if (!isSubscription(ev.stanza)) return false;
      serial.call(ev.to.bare, () => inbound(host, ev))
        .catch(
          answerFailure(ev.stanza, `subscription to ${ev.to.bare}`, (r) => router.sendFrom(r)),
        );
      return true;
    }, 10);
    // Requests that arrived while the user was away are shown again at each login (§3.1.3).
    host.events.on("session/available", (session) => {
      const { local, domain, bare } = session.jid;
      serial.run(bare, async () => {
        for (const p of await host.server.store.getPendingIn(local, domain)) {
          const el = parseStanza(p.stanza);
          if (el) session.deliver(el);
        }
      });
    });
  },
};
