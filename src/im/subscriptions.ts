// The presence subscription state machine (RFC 6121 §3): outbound requests and answers from our
// users, inbound ones from contacts, the roster changes and pushes each causes, and pending
// inbound requests kept until answered and redelivered at each login.
import type { Host, Module, StanzaEvent } from "../core/host.ts";
import type { Jid } from "../jid/jid.ts";
import { type Element, x } from "../xml/element.ts";
import { hasFrom, hasTo, type RosterItem, type Subscription } from "../storage/store.ts";
import { isSubscription, readdressed } from "./delivery.ts";
import { pushRoster } from "./roster.ts";
import { parseStanza } from "../xml/parse_string.ts";
import { answerFailure } from "../core/failure.ts";

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

/**
 * Changes the user's item for `contact` in one atomic store operation (another node may change it
 * at the same time) and pushes the result to the user's interested resources; false when
 * `change` left the item as it was (returned null).
 */
async function update(
  host: Host,
  user: Jid,
  contact: string,
  change: (item: RosterItem | null) => RosterItem | null,
): Promise<boolean> {
  const r = await host.server.store.updateRosterItem(user.local, user.domain, contact, change);
  if (r) pushRoster(host, user.bare, r.item, r.version);
  return r !== null;
}

/** Ends the user's subscription to `contact`, or its pending request; false when it had neither. */
function cancelTo(host: Host, user: Jid, contact: string): Promise<boolean> {
  return update(
    host,
    user,
    contact,
    (item) =>
      item && (hasTo(item.subscription) || item.ask)
        ? { ...item, subscription: make(false, hasFrom(item.subscription)), ask: false }
        : null,
  );
}

/** Ends `contact`'s subscription to the user, or refuses its pending request; false when neither. */
async function cancelFrom(host: Host, user: Jid, contact: string): Promise<boolean> {
  const hadPending = await host.server.store.removePendingIn(user.local, user.domain, contact);
  const ended = await update(
    host,
    user,
    contact,
    (item) =>
      item && hasFrom(item.subscription)
        ? { ...item, subscription: make(hasTo(item.subscription), false) }
        : null,
  );
  return hadPending || ended;
}

async function outbound(host: Host, user: Jid, contact: Jid, stanza: Element): Promise<void> {
  const type = stanza.attrs.type!;
  const { store, router } = host.server;
  const { local, domain, bare } = user;
  const cj = contact.bare;
  // Routed from the bare JID (RFC 6121 §3.1.2), keeping what the client put in (a status text).
  const route = () =>
    router.sendFrom(x("presence", { ...stanza.attrs, from: bare, to: cj }, ...stanza.children));
  switch (type) {
    case "subscribe":
      await update(host, user, cj, (item) => {
        const cur = item ?? blank(cj);
        return !hasTo(cur.subscription) && !cur.ask ? { ...cur, ask: true } : null;
      });
      return route();
    case "subscribed":
      if (!await store.removePendingIn(local, domain, cj)) return; // nothing to approve
      await update(host, user, cj, (item) => {
        const cur = item ?? blank(cj);
        return { ...cur, subscription: make(hasTo(cur.subscription), true) };
      });
      route();
      return sendPresenceOf(host, user, cj, false);
    case "unsubscribe":
      await cancelTo(host, user, cj);
      return route();
    case "unsubscribed":
      if (!await cancelFrom(host, user, cj)) return;
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
    for (const s of sessions.resources(bare)) if (s.available) sessions.deliver(s, stamped);
  };
  if (!await store.getCredentials(local, domain)) {
    if (type === "subscribe") {
      router.sendFrom(x("presence", { from: bare, to: from, type: "unsubscribed" }));
    }
    return;
  }
  switch (type) {
    case "subscribe": {
      const item = await store.getRosterItem(local, domain, from);
      if (item && hasFrom(item.subscription)) {
        return router.sendFrom(x("presence", { from: bare, to: from, type: "subscribed" }));
      }
      await store.addPendingIn(local, domain, from, stamped.toString());
      return toResources();
    }
    case "subscribed": {
      const approved = await update(
        host,
        user,
        from,
        (item) =>
          item && item.ask && !hasTo(item.subscription)
            ? { ...item, subscription: make(true, hasFrom(item.subscription)), ask: false }
            : null,
      );
      if (approved) toResources();
      return;
    }
    case "unsubscribe":
      if (!await cancelFrom(host, user, from)) return;
      toResources();
      return sendPresenceOf(host, user, from, true);
    case "unsubscribed":
      if (await cancelTo(host, user, from)) toResources();
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
