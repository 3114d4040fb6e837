// Small server-answered queries: ping (XEP-0199), software version (XEP-0092) and entity time
// (XEP-0202). Client-to-server pings for dead-connection detection live in the c2s session.
import type { Module } from "../core/host.ts";
import { x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { VERSION } from "../version.ts";

export const pingModule: Module = {
  name: "ping",
  install(host) {
    host.features.add(NS.ping);
    host.onGet("server", NS.ping, (iq) => iq.reply());
    // A ping to one's own bare JID is answered by the server on the account's behalf.
    host.onGet("account", NS.ping, (iq) => {
      if (!iq.self) return iq.error("service-unavailable");
      iq.reply();
    });
  },
};

export const versionModule: Module = {
  name: "version",
  install(host) {
    host.features.add(NS.version);
    host.onGet("server", NS.version, (iq) => {
      iq.reply(
        x("query", { xmlns: NS.version }, x("name", {}, "Parley"), x("version", {}, VERSION)),
      );
    });
  },
};

export const timeModule: Module = {
  name: "time",
  install(host) {
    host.features.add(NS.time);
    host.onGet("server", NS.time, (iq) => {
      const utc = new Date().toISOString().replace(/\.\d+Z$/, "Z");
      iq.reply(x("time", { xmlns: NS.time }, x("tzo", {}, "+00:00"), x("utc", {}, utc)));
    });
  },
};
