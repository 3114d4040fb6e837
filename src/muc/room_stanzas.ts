// The muc#user payloads a room sends (XEP-0045 §7, §9, §10): occupant items with status codes,
// and occupant presence built from the presence the occupant sent.
import { Element, type Node, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import type { Router } from "../router/router.ts";
import { type ErrorCondition, type ErrorOptions, errorReply } from "../router/stanza_error.ts";
import type { Affiliation, Role } from "./roles.ts";

/** Status codes (XEP-0045 §15.6) the server sends. */
export const STATUS = {
  NON_ANONYMOUS: 100,
  CONFIG_CHANGED: 104,
  SELF: 110,
  NOW_NON_ANONYMOUS: 172,
  NOW_SEMI_ANONYMOUS: 173,
  CREATED: 201,
  NICK_MODIFIED: 210,
  BANNED: 301,
  NICK_CHANGED: 303,
  KICKED: 307,
  AFFILIATION_CHANGED: 321,
  MEMBERS_ONLY: 322,
  SHUTDOWN: 332,
  ERROR: 333,
} as const;

export interface ItemInfo {
  affiliation: Affiliation;
  role: Role;
  /** The occupant's real JID, for those allowed to see it. */
  jid?: string;
  /** The new nick (nick change, status 303). */
  nick?: string;
  actor?: string;
  reason?: string;
}

export function itemElement(item: ItemInfo): Element {
  return x(
    "item",
    { affiliation: item.affiliation, role: item.role, jid: item.jid, nick: item.nick },
    item.actor !== undefined && x("actor", { nick: item.actor }),
    item.reason !== undefined && x("reason", {}, item.reason),
  );
}

export function mucUserX(children: (Node | false | undefined)[], codes: number[] = []): Element {
  return x(
    "x",
    { xmlns: NS.mucUser },
    ...children,
    ...codes.map((c) => x("status", { code: String(c) })),
  );
}

/**
 * The room's presence for an occupant: what the occupant sent (show, status, caps…) minus its
 * MUC join payload, plus the room's muc#user element.
 */
export function occupantPresence(
  from: string,
  sent: Element | null,
  type: "unavailable" | undefined,
  muc: Element,
  occupantId: string,
): Element {
  const children: Node[] = [];
  if (sent) {
    for (const c of sent.children) {
      if (typeof c === "string") continue;
      const ns = c.attrs.xmlns;
      if (ns !== NS.muc && ns !== NS.mucUser && ns !== NS.occupantId) children.push(c);
    }
  }
  children.push(muc, x("occupant-id", { xmlns: NS.occupantId, id: occupantId }));
  return new Element("presence", { from, type }, children);
}

/**
 * Answers a stanza sent to the MUC service with an error. Presence errors carry an empty
 * <x xmlns='http://jabber.org/protocol/muc'/> as in XEP-0045's examples: clients (slixmpp among
 * them) recognize a refused entry by it.
 */
export function mucBounce(
  router: Router,
  stanza: Element,
  condition: ErrorCondition,
  opts?: ErrorOptions,
): void {
  if (stanza.name !== "presence") return router.bounce(stanza, condition, opts);
  const reply = errorReply(stanza, condition, opts);
  if (reply) {
    router.sendFrom(
      new Element(reply.name, reply.attrs, [x("x", { xmlns: NS.muc }), ...reply.children]),
    );
  }
}
