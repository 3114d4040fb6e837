// Service discovery (XEP-0030) for the server and for accounts. Other modules add features to
// host.features / host.accountFeatures; services on their own domains add items (host.items).
import type { Module } from "../core/host.ts";
import { discoInfoPayload } from "../core/iq.ts";
import { x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { hasFrom } from "../storage/store.ts";

export const discoModule: Module = {
  name: "disco",
  install(host) {
    host.features.add(NS.discoInfo).add(NS.discoItems);
    host.accountFeatures.add(NS.discoInfo).add(NS.discoItems);
    host.onGet("server", NS.discoInfo, (iq) => {
      if (iq.payload.attrs.node) return iq.error("item-not-found");
      iq.reply(discoInfoPayload(host.identities, host.features));
    });
    host.onGet("server", NS.discoItems, (iq) => {
      if (iq.payload.attrs.node) return iq.error("item-not-found");
      iq.reply(x(
        "query",
        { xmlns: NS.discoItems },
        ...host.items.map((i) => x("item", { jid: i.jid, name: i.name })),
      ));
    });
    // An account answers for itself to its owner and to contacts subscribed to its presence;
    // for its nodes (PEP), the module that has them answers.
    host.onGet("account", NS.discoInfo, async (iq) => {
      const { store } = host.server;
      const node = iq.payload.attrs.node;
      if (node !== undefined) {
        return host.accountNodes ? host.accountNodes.info(iq, node) : iq.error("item-not-found");
      }
      if (!iq.self) {
        const item = await store.getRosterItem(iq.to.local, iq.to.domain, iq.from.bare);
        if (!item || !hasFrom(item.subscription)) {
          return iq.error("service-unavailable");
        }
      }
      iq.reply(discoInfoPayload(host.accountIdentities, host.accountFeatures));
    });
    host.onGet("account", NS.discoItems, (iq) => {
      if (host.accountNodes) return host.accountNodes.items(iq);
      if (!iq.self) return iq.error("service-unavailable");
      iq.reply(x("query", { xmlns: NS.discoItems }));
    });
  },
};
