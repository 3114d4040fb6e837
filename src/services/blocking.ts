// Blocking command (XEP-0191). Blocklists are cached per account (bounded); stanzas from a
// blocked entity are dropped (iq get/set answered service-unavailable), and stanzas to one are
// refused with not-acceptable + <blocked/>. Blocking a contact sends it our unavailable presence.
import type { Host, Module, OutboundEvent } from "../core/host.ts";
import { errorReply } from "../router/stanza_error.ts";
import { answerFailure, logFailure } from "../core/failure.ts";
import type { IqRequest } from "../core/iq.ts";
import type { Jid } from "../jid/jid.ts";
import { parseJid } from "../jid/jid.ts";
import { x } from "../xml/element.ts";
import { AccountCache } from "../core/account_cache.ts";
import { NS } from "../xml/ns.ts";

/** Whether a blocklist entry matches `jid` (XEP-0191 §3.3 / XEP-0016 matching order). */
function matches(list: Set<string>, jid: Jid): boolean {
  if (list.size === 0) return false; // most accounts block no one: no lookups per stanza
  return list.has(jid.full) || list.has(jid.bare) || list.has(jid.domain) ||
    (jid.resource !== "" && list.has(`${jid.domain}/${jid.resource}`));
}

/** Blocklists by account, cached (AccountCache: never stale in a cluster). */
type Blocklists = AccountCache<Set<string>>;

/** Straight to the sending session: routed, the error would itself be blocked on the way in. */
function blockedReply(ev: OutboundEvent): void {
  const reply = errorReply(ev.stanza, "not-acceptable", {
    extra: x("blocked", { xmlns: NS.blockingErrors }),
  });
  if (reply) ev.session.deliver(reply);
}

async function handleIq(host: Host, lists: Blocklists, iq: IqRequest): Promise<void> {
  if (!iq.self) return iq.error("forbidden");
  const { store, sessions, router } = host.server;
  const { local, domain, bare } = iq.from;
  const list = await lists.load(iq.from.toBare());
  const session = sessions.get(iq.from);
  if (iq.type === "get") {
    if (iq.payload.name !== "blocklist") return iq.error("bad-request");
    if (session && !session.blocklistRequested) {
      session.blocklistRequested = true;
      sessions.changed(session);
    }
    return iq.reply(
      x("blocklist", { xmlns: NS.blocking }, ...[...list].map((j) => x("item", { jid: j }))),
    );
  }
  const name = iq.payload.name;
  if (name !== "block" && name !== "unblock") return iq.error("bad-request");
  const jids: string[] = [];
  for (const item of iq.payload.elements("item")) {
    const j = parseJid(item.attrs.jid ?? "");
    if (!j) return iq.error("jid-malformed");
    jids.push(j.full);
  }
  if (name === "block") {
    if (jids.length === 0) return iq.error("bad-request");
    await store.block(local, domain, jids);
    for (const j of jids) {
      list.add(j);
      // The blocked entity stops seeing us (§3.3).
      for (const s of sessions.resources(bare)) {
        if (s.available) {
          router.sendFrom(x("presence", { from: s.jid.full, to: j, type: "unavailable" }));
        }
      }
    }
  } else {
    await store.unblock(local, domain, jids.length ? jids : null);
    if (jids.length) { for (const j of jids) list.delete(j); }
    else list.clear();
  }
  await lists.changed(iq.from);
  iq.reply();
  const push = x(name, { xmlns: NS.blocking }, ...jids.map((j) => x("item", { jid: j })));
  for (const s of sessions.resources(bare)) {
    if (s.blocklistRequested) {
      sessions.deliver(s, x("iq", { to: s.jid.full, type: "set", id: "block" + Date.now() }, push));
    }
  }
}

export const blockingModule: Module = {
  name: "blocking",
  install(host) {
    const { caches, store } = host.server;
    const lists: Blocklists = new AccountCache(
      caches,
      `blocklist ${host.domain}`,
      async (account) => new Set(await store.getBlocklist(account.local, account.domain)),
    );
    host.features.add(NS.blocking);
    host.accountFeatures.add(NS.blocking);
    host.onIq("account", NS.blocking, (iq) => handleIq(host, lists, iq));
    host.events.on("session/bound", (s) => {
      lists.load(s.jid.toBare()).catch((e) => logFailure(`blocklist of ${s.jid.bare}`, e));
    });
    host.events.on("stanza/in", (ev) => {
      // An account does not block itself: its own stanzas (answers to it among them) pass.
      if (ev.from.bare === ev.to.bare) return false;
      const list = lists.cached(ev.to.bare);
      if (!list) {
        // Not cached yet: hold the stanza until the list is loaded, then deliver it as usual.
        // Without the list nobody can tell whether the sender is blocked: it is refused.
        lists.load(ev.to.toBare()).then(
          () => host.receive(ev.stanza, ev.from, ev.to),
          answerFailure(
            ev.stanza,
            `blocklist of ${ev.to.bare}`,
            (r) => host.server.router.sendFrom(r),
          ),
        );
        return true;
      }
      if (!matches(list, ev.from)) return false;
      const type = ev.stanza.attrs.type;
      if (ev.stanza.name === "iq" && (type === "get" || type === "set")) {
        host.server.router.bounce(ev.stanza, "service-unavailable");
      } else if (ev.stanza.name === "message" && type !== "headline") {
        // A headline (a PEP notification among them) is dropped without an error.
        host.server.router.bounce(ev.stanza, "service-unavailable");
      }
      return true;
    }, 100);
    host.events.on("stanza/out", (ev) => {
      const list = lists.cached(ev.from.bare);
      if (!list || ev.toAbsent || !matches(list, ev.to)) return false;
      // Unavailable presence may still go out (it is how blocking hides us).
      if (ev.stanza.name === "presence" && ev.stanza.attrs.type === "unavailable") return false;
      blockedReply(ev);
      return true;
    }, 100);
  },
};
