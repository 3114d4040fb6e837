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
    host.onIq("server", NS.ping, (iq) => iq.type === "get" ? iq.reply() : iq.error("bad-request"));
    // A ping to one's own bare JID is answered by the server on the account's behalf.
    host.onIq("account", NS.ping, (iq) => {
      if (iq.type !== "get") return iq.error("bad-request");
      if (!iq.self) return iq.error("service-unavailable");
      iq.reply();
    });
  },
};

export const versionModule: Module = {
  name: "version",
  install(host) {
    host.features.add(NS.version);
    host.onIq("server", NS.version, (iq) => {
      if (iq.type !== "get") return iq.error("bad-request");
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
    host.onIq("server", NS.time, (iq) => {
      if (iq.type !== "get") return iq.error("bad-request");
      const utc = new Date().toISOString().replace(/\.\d+Z$/, "Z");
      iq.reply(x("time", { xmlns: NS.time }, x("tzo", {}, "+00:00"), x("utc", {}, utc)));
    });
  },
};
