// Offline messages (XEP-0160): chat and normal messages for an account with no available
// resource are stored with a delay stamp (XEP-0203) and delivered on its next initial presence.
import type { Module } from "../core/host.ts";
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { parseStanza } from "../xml/parse_string.ts";

/** Messages worth storing: not chat-state notifications alone, not marked no-store (XEP-0334). */
function storable(msg: Element): boolean {
  let content = false;
  for (const c of msg.elements()) {
    const ns = c.attrs.xmlns;
    if (ns === NS.hints && (c.name === "no-store" || c.name === "no-permanent-store")) return false;
    if (ns !== NS.chatStates && c.name !== "thread") content = true;
  }
  return content;
}

export const offlineModule: Module = {
  name: "offline",
  install(host) {
    const { store, serial, router, config } = host.server;
    host.features.add(NS.offline);
    host.events.on("message/offline", ({ stanza, to }) => {
      const type = stanza.attrs.type ?? "normal";
      if ((type !== "normal" && type !== "chat") || !storable(stanza)) return true;
      serial.run(to.bare, async () => {
        if (!await store.getCredentials(to.local, to.domain)) {
          return router.bounce(stanza, "service-unavailable");
        }
        const copy = stanza.clone();
        copy.append(
          x("delay", { xmlns: NS.delay, from: host.domain, stamp: new Date().toISOString() }),
        );
        const max = config.limits.max_offline_messages;
        if (!await store.pushOffline(to.local, to.domain, copy.toString(), max)) {
          router.bounce(stanza, "service-unavailable", { text: "offline storage is full" });
        }
      });
      return true;
    });
    host.events.on("session/available", (session) => {
      if (session.priority < 0) return;
      const { local, domain, bare } = session.jid;
      serial.run(bare, async () => {
        for (const xml of await store.takeOffline(local, domain)) {
          const el = parseStanza(xml);
          if (el) session.deliver(el);
        }
      });
    });
  },
};
