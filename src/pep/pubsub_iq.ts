// The pubsub requests an account's PEP service answers (XEP-0060 §6–8, the subset XEP-0163
// needs), read from the iq and handed to the service; its refusals (PubsubError) answered as
// the XEP says. Only the owner publishes, retracts, creates and administers; anyone may ask for
// items and subscribe, as the access model allows.
import type { IqRequest } from "../core/iq.ts";
import { parseJid } from "../jid/jid.ts";
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { configForm, DEFAULT_CONFIG, formOf } from "./node_config.ts";
import { type Affiliation, AFFILIATIONS } from "./nodes.ts";
import { PubsubError } from "./pubsub_error.ts";
import type { PepService } from "./service.ts";

/** Runs a request, answering a refusal (PubsubError) as such; other failures go to IqHandlers. */
async function answering(iq: IqRequest, run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (e) {
    if (e instanceof PubsubError) e.answer(iq);
    else throw e;
  }
}

const ownerOnly = (iq: IqRequest) => {
  if (!iq.self) throw new PubsubError("forbidden");
};

/**
 * The one request a <pubsub/> holds, or bad-request; `besides` may come with it (publish-options,
 * a create's configure).
 */
function single(pubsub: Element, besides: string[] = []): Element {
  const children = pubsub.elements().filter((e) => !besides.includes(e.name));
  if (children.length !== 1) throw new PubsubError("bad-request");
  return children[0];
}

function nodeOf(el: Element): string {
  const node = el.attrs.node;
  if (!node) throw new PubsubError("bad-request", "nodeid-required");
  return node;
}

function itemsReply(node: string, items: [string, Element][]): Element {
  return x(
    "pubsub",
    { xmlns: NS.pubsub },
    x("items", { node }, ...items.map(([id, payload]) => x("item", { id }, payload))),
  );
}

/** iq get/set in http://jabber.org/protocol/pubsub to an account. */
export function pubsubIq(service: PepService) {
  return (iq: IqRequest) =>
    answering(iq, async () => {
      const owner = iq.to;
      const request = single(iq.payload, ["publish-options", "configure"]);
      const set = iq.type === "set";
      switch (`${iq.type} ${request.name}`) {
        case "set publish": {
          ownerOnly(iq);
          const node = nodeOf(request);
          const items = request.elements("item");
          if (items.length !== 1) {
            throw new PubsubError(
              "bad-request",
              items.length ? "invalid-payload" : "item-required",
            );
          }
          const payloads = items[0].elements();
          if (payloads.length !== 1) {
            throw new PubsubError(
              "bad-request",
              payloads.length ? "invalid-payload" : "payload-required",
            );
          }
          const form = iq.payload.child("publish-options");
          const options = formOf(form, NS.pubsubPublishOptions);
          if (form && !options) throw new PubsubError("conflict", "precondition-not-met");
          const id = await service.publish(owner, node, payloads[0], {
            id: items[0].attrs.id || undefined,
            form: options,
            publisher: iq.from,
          });
          return iq.reply(
            x("pubsub", { xmlns: NS.pubsub }, x("publish", { node }, x("item", { id }))),
          );
        }
        case "get items": {
          const node = nodeOf(request);
          const ids = request.elements("item").map((i) => i.attrs.id ?? "").filter((id) => id);
          const max = request.attrs.max_items;
          if (max !== undefined && !/^[0-9]{1,9}$/.test(max)) throw new PubsubError("bad-request");
          const items = await service.items(owner, node, iq.from, {
            ids: ids.length ? ids : undefined,
            last: max === undefined ? undefined : Number(max),
          });
          return iq.reply(itemsReply(node, items));
        }
        case "set retract": {
          ownerOnly(iq);
          const node = nodeOf(request);
          const ids = request.elements("item").map((i) => i.attrs.id ?? "");
          if (ids.length === 0 || ids.includes("")) {
            throw new PubsubError("bad-request", "item-required");
          }
          const notify = request.attrs.notify === "true" || request.attrs.notify === "1";
          await service.retract(owner, node, ids, notify);
          return iq.reply();
        }
        case "set create": {
          ownerOnly(iq);
          const form = formOf(iq.payload.child("configure"), NS.pubsubNodeConfig);
          await service.create(owner, nodeOf(request), form);
          return iq.reply();
        }
        case "set subscribe":
        case "set unsubscribe": {
          const node = nodeOf(request);
          const jid = parseJid(request.attrs.jid ?? "");
          if (!jid) throw new PubsubError("bad-request", "invalid-jid");
          const on = request.name === "subscribe";
          const last = await service.subscribe(owner, node, iq.from, jid, on);
          iq.reply(
            on
              ? x(
                "pubsub",
                { xmlns: NS.pubsub },
                x("subscription", { node, jid: jid.full, subscription: "subscribed" }),
              )
              : undefined,
          );
          if (last) iq.router.route(last, owner, jid);
          return;
        }
        case "get subscriptions": {
          const { subscribers } = await service.nodes.load(owner);
          const mine: Element[] = [];
          for (const [node, jids] of subscribers) {
            for (const jid of jids) {
              if (parseJid(jid)?.bare === iq.from.bare) {
                mine.push(x("subscription", { node, jid, subscription: "subscribed" }));
              }
            }
          }
          return iq.reply(
            x("pubsub", { xmlns: NS.pubsub }, x("subscriptions", {}, ...mine)),
          );
        }
        case "get affiliations": {
          const { nodes } = await service.nodes.load(owner);
          const mine: Element[] = [];
          for (const [node, record] of nodes) {
            const affiliation = iq.self ? "owner" : record.affiliations[iq.from.bare];
            if (affiliation) mine.push(x("affiliation", { node, affiliation }));
          }
          return iq.reply(x("pubsub", { xmlns: NS.pubsub }, x("affiliations", {}, ...mine)));
        }
        default:
          throw new PubsubError(set ? "feature-not-implemented" : "bad-request");
      }
    });
}

/** iq get/set in http://jabber.org/protocol/pubsub#owner to an account: its owner only. */
export function pubsubOwnerIq(service: PepService) {
  return (iq: IqRequest) =>
    answering(iq, async () => {
      ownerOnly(iq);
      const owner = iq.to;
      const request = single(iq.payload);
      const reply = (child?: Element) =>
        iq.reply(child && x("pubsub", { xmlns: NS.pubsubOwner }, child));
      switch (`${iq.type} ${request.name}`) {
        case "get default":
          return reply(x("default", {}, configForm(DEFAULT_CONFIG)));
        case "get configure": {
          const node = nodeOf(request);
          const record = await service.record(owner, node);
          return reply(x("configure", { node }, configForm(record.config)));
        }
        case "set configure": {
          const form = formOf(request, NS.pubsubNodeConfig);
          if (!form) throw new PubsubError("bad-request");
          await service.configure(owner, nodeOf(request), form);
          return reply();
        }
        case "set purge":
        case "set delete":
          await service.clear(owner, nodeOf(request), request.name as "purge" | "delete");
          return reply();
        case "get affiliations": {
          const node = nodeOf(request);
          const record = await service.record(owner, node);
          return reply(x(
            "affiliations",
            { node },
            x("affiliation", { jid: owner.bare, affiliation: "owner" }),
            ...Object.entries(record.affiliations).map(([jid, affiliation]) =>
              x("affiliation", { jid, affiliation })
            ),
          ));
        }
        case "set affiliations": {
          const node = nodeOf(request);
          const changes: [string, Affiliation][] = [];
          for (const a of request.elements("affiliation")) {
            const jid = parseJid(a.attrs.jid ?? "");
            const affiliation = a.attrs.affiliation as Affiliation;
            if (!jid || !AFFILIATIONS.includes(affiliation) || affiliation === "owner") {
              throw new PubsubError("bad-request");
            }
            if (jid.bare === owner.bare) throw new PubsubError("not-acceptable");
            changes.push([jid.bare, affiliation]);
          }
          await service.affiliate(owner, node, changes);
          return reply();
        }
        case "get subscriptions": {
          const node = nodeOf(request);
          await service.record(owner, node);
          const { subscribers } = await service.nodes.load(owner);
          return reply(x(
            "subscriptions",
            { node },
            ...(subscribers.get(node) ?? []).map((jid) =>
              x("subscription", { jid, subscription: "subscribed" })
            ),
          ));
        }
        default:
          throw new PubsubError(iq.type === "set" ? "feature-not-implemented" : "bad-request");
      }
    });
}
