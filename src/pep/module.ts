// Personal eventing (XEP-0163) on every account of a host: the pubsub service (service.ts) behind
// its iq handlers, notifications by interest (interest.ts), what clients build on it (bookmarks,
// avatars), and disco: the features on the account, its nodes as items.
import type { Module } from "../core/host.ts";
import { x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { discoInfoPayload } from "../core/iq.ts";
import { avatarConversion } from "./avatars.ts";
import { bookmarksCompat } from "./bookmarks.ts";
import { watchInterest } from "./interest.ts";
import { PubsubError } from "./pubsub_error.ts";
import { pubsubIq, pubsubOwnerIq } from "./pubsub_iq.ts";
import { PepService } from "./service.ts";

/** What the service supports, as XEP-0060 §10 names it (advertised on every account). */
const FEATURES = [
  "access-open",
  "access-presence",
  "access-roster",
  "access-whitelist",
  "auto-create",
  "auto-subscribe",
  "config-node",
  "create-and-configure",
  "create-nodes",
  "delete-items",
  "delete-nodes",
  "filtered-notifications",
  "item-ids",
  "last-published",
  "member-affiliation",
  "multi-items",
  "outcast-affiliation",
  "persistent-items",
  "presence-notifications",
  "publish",
  "publish-options",
  "purge-nodes",
  "retract-items",
  "retrieve-affiliations",
  "retrieve-default",
  "retrieve-items",
  "retrieve-subscriptions",
  "subscribe",
];

export const pepModule: Module = {
  name: "pep",
  install(host) {
    const service = new PepService(host);
    host.accountFeatures.add(NS.pubsub);
    for (const f of FEATURES) host.accountFeatures.add(`${NS.pubsub}#${f}`);
    host.accountIdentities.push({ category: "pubsub", type: "pep" });
    host.onIq("account", NS.pubsub, pubsubIq(service));
    host.onIq("account", NS.pubsubOwner, pubsubOwnerIq(service));
    host.accountNodes = {
      // The nodes the requester may read, as items.
      async items(iq) {
        const nodes = await service.readable(iq.to, iq.from.bare);
        iq.reply(x(
          "query",
          { xmlns: NS.discoItems },
          ...nodes.map((node) => x("item", { jid: iq.to.bare, node })),
        ));
      },
      async info(iq, node) {
        try {
          await service.checkRead(iq.to, await service.record(iq.to, node), iq.from.bare);
        } catch (e) {
          if (e instanceof PubsubError) return e.answer(iq);
          throw e;
        }
        const payload = discoInfoPayload([{ category: "pubsub", type: "leaf" }], [NS.pubsub]);
        iq.reply(payload.setAttr("node", node));
      },
    };
    watchInterest(host, service);
    bookmarksCompat(host, service);
    avatarConversion(host, service);
    host.events.on("account/deleted", (account) => service.nodes.forget(account));
  },
};
