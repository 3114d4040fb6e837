// vCard-temp (XEP-0054): an account sets its own vCard; anyone may read it. Stored as a string in
// the key-value shape STORES.vcard of the account; a change is told (HostEvents "vcard/set": the
// avatar conversion of XEP-0398).
import type { Module, VcardEvent } from "../core/host.ts";
import { STORES } from "../storage/store.ts";
import { x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { parseStanza } from "../xml/parse_string.ts";

export const vcardModule: Module = {
  name: "vcard",
  install(host) {
    host.features.add(NS.vcard);
    const { store } = host.server;
    host.onIq("account", NS.vcard, async (iq) => {
      const { local, domain } = iq.to;
      const vcards = store.keyval<string>(STORES.vcard);
      if (iq.type === "set") {
        if (!iq.self) return iq.error("forbidden");
        if (iq.payload.name !== "vCard") return iq.error("bad-request");
        await vcards.set(local, domain, iq.payload.toString());
        const ev: VcardEvent = { account: iq.to, vcard: iq.payload };
        host.events.fire("vcard/set", ev);
        await ev.done; // never rejects: a handler reports its own failure
        return iq.reply();
      }
      const stored = await vcards.get(local, domain);
      if (stored === null) {
        if (!iq.self && !await store.getCredentials(local, domain)) {
          return iq.error("service-unavailable");
        }
        return iq.reply(x("vCard", { xmlns: NS.vcard }));
      }
      iq.reply(parseStanza(stored) ?? x("vCard", { xmlns: NS.vcard }));
    });
  },
};
