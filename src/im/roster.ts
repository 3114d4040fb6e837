// Roster management (RFC 6121 §2): get with versioning (§2.6), set, remove, and pushes to every
// interested resource. Removing a contact also cancels subscriptions both ways (§2.5.2).
import type { Host, Module } from "../core/host.ts";
import type { IqRequest } from "../core/iq.ts";
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { parseJid } from "../jid/jid.ts";
import { hasFrom, type RosterItem } from "../storage/store.ts";

const MAX_TEXT = 1023;

export function itemElement(item: RosterItem | { jid: string; remove: true }): Element {
  if ("remove" in item) return x("item", { jid: item.jid, subscription: "remove" });
  return x(
    "item",
    {
      jid: item.jid,
      name: item.name,
      subscription: item.subscription,
      ask: item.ask ? "subscribe" : undefined,
    },
    ...item.groups.map((g) => x("group", {}, g)),
  );
}

/** Sends a roster push for one item to each resource of the account that asked for the roster. */
export function pushRoster(
  host: Host,
  bare: string,
  item: RosterItem | { jid: string; remove: true },
  version: number,
): void {
  const sessions = host.server.sessions;
  for (const s of sessions.resources(bare)) {
    if (!s.rosterRequested) continue;
    sessions.deliver(
      s,
      x(
        "iq",
        { to: s.jid.full, type: "set", id: "push" + (++pushCounter).toString(36) },
        x("query", { xmlns: NS.roster, ver: String(version) }, itemElement(item)),
      ),
    );
  }
}
let pushCounter = 0;

async function get(host: Host, iq: IqRequest): Promise<void> {
  const session = host.server.sessions.get(iq.from);
  if (session && !session.rosterRequested) {
    session.rosterRequested = true;
    host.server.sessions.changed(session);
  }
  const roster = await host.server.store.getRoster(iq.from.local, iq.from.domain);
  const ver = String(roster.version);
  if (iq.payload.attrs.ver === ver) return iq.reply(); // unchanged: the client's copy is current
  iq.reply(x("query", { xmlns: NS.roster, ver }, ...roster.items.map(itemElement)));
}

async function set(host: Host, iq: IqRequest): Promise<void> {
  const items = iq.payload.elements("item");
  if (items.length !== 1) return iq.error("bad-request", { text: "exactly one item is expected" });
  const el = items[0];
  const contact = parseJid(el.attrs.jid ?? "");
  if (!contact) return iq.error("bad-request", { text: "invalid jid" });
  // Items are contacts, keyed like subscriptions by the prepared bare JID (as Prosody does).
  if (!contact.isBare) return iq.error("bad-request", { text: "a roster item is a bare jid" });
  if (contact.bare === iq.from.bare) return iq.error("not-allowed", { text: "that is you" });
  const { store, router } = host.server;
  const { local, domain, bare } = iq.from;
  const jid = contact.bare;
  if (el.attrs.subscription === "remove") {
    const hadPendingIn = await store.removePendingIn(local, domain, jid);
    // The item as it was when removed (another node may change it meanwhile) says what to cancel.
    const removed = await store.deleteRosterItem(local, domain, jid);
    if (!removed) return hadPendingIn ? iq.reply() : iq.error("item-not-found");
    const old = removed.item;
    iq.reply();
    pushRoster(host, bare, { jid, remove: true }, removed.version);
    const send = (type: string) => router.sendFrom(x("presence", { from: bare, to: jid, type }));
    if (old.subscription === "to" || old.subscription === "both" || old.ask) send("unsubscribe");
    if (hasFrom(old.subscription) || hadPendingIn) {
      send("unsubscribed");
    }
    return;
  }
  const groups = el.elements("group").map((g) => g.text());
  if (new Set(groups).size !== groups.length) {
    return iq.error("bad-request", { text: "duplicate group" });
  }
  if (groups.some((g) => g === "" || g.length > MAX_TEXT)) return iq.error("not-acceptable");
  const name = el.attrs.name || undefined;
  if (name && name.length > MAX_TEXT) return iq.error("not-acceptable");
  // The subscription is kept as stored at the moment of the write (another node may change it).
  const { item, version } = (await store.updateRosterItem(local, domain, jid, (old) => ({
    jid,
    name,
    groups,
    subscription: old?.subscription ?? "none",
    ask: old?.ask ?? false,
  })))!;
  iq.reply();
  pushRoster(host, bare, item, version);
}

export const rosterModule: Module = {
  name: "roster",
  install(host) {
    host.onIq("account", NS.roster, (iq) => {
      if (!iq.self) return iq.error("forbidden");
      return host.server.serial.call(
        iq.from.bare,
        () => iq.type === "get" ? get(host, iq) : set(host, iq),
      );
    });
  },
};
