// Private XML storage (XEP-0049): one element per namespace, readable only by its owner; at most
// `limits.max_private_keys` namespaces per account. A module may keep a namespace itself (HostEvents
// "private/iq": XEP-0402's bookmarks). Stored in the map shape STORES.private of the
// account, key "namespace name", the element as a string.
import type { Module } from "../core/host.ts";
import { STORES } from "../storage/store.ts";
import { x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { parseStanza } from "../xml/parse_string.ts";

const RESERVED = new Set<string | undefined>([undefined, NS.client, NS.private]);

export const privateModule: Module = {
  name: "private",
  install(host) {
    const { store } = host.server;
    host.accountFeatures.add(NS.private);
    host.onIq("account", NS.private, async (iq) => {
      if (!iq.self) return iq.error("forbidden");
      const items = iq.payload.elements();
      if (items.length !== 1 || RESERVED.has(items[0].attrs.xmlns)) {
        return iq.error("not-acceptable");
      }
      const item = items[0];
      if (host.events.fire("private/iq", { iq, item })) return;
      const key = `${item.attrs.xmlns} ${item.name}`;
      const { local, domain } = iq.from;
      const privates = store.map<string>(STORES.private);
      if (iq.type === "set") {
        const max = host.server.config.limits.max_private_keys;
        // A new namespace beyond the quota does not meet the server's criteria: not-acceptable
        // (modify), since retrying as is would not help; replacing a stored one always works.
        if (!await privates.set(local, domain, key, item.toString(), { max })) {
          return iq.error("not-acceptable", { text: `more than ${max} private namespaces` });
        }
        return iq.reply();
      }
      const stored = await privates.get(local, domain, key);
      iq.reply(x("query", { xmlns: NS.private }, (stored && parseStanza(stored)) || item));
    });
  },
};
