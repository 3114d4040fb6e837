// The muc#admin protocol (XEP-0045 §8, §9): moderators change roles (kick, voice), admins and
// owners change affiliations (ban, membership, admin and owner lists) and read the lists.
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { parseJid } from "../jid/jid.ts";
import type { IqRequest } from "../core/iq.ts";
import {
  type Affiliation,
  affiliationRank,
  AFFILIATIONS,
  defaultRole,
  type Role,
  ROLES,
} from "./roles.ts";
import type { Occupant } from "./occupant.ts";
import type { Room } from "./room.ts";
import { itemElement, STATUS } from "./room_stanzas.ts";
import type { ErrorCondition } from "../router/stanza_error.ts";

const ADMIN = affiliationRank("admin");

type Change = () => void;
type Refusal = { condition: ErrorCondition; text: string };

export function adminIq(room: Room, iq: IqRequest): void {
  const items = iq.payload.elements("item");
  if (items.length === 0) return iq.error("bad-request", { text: "no item" });
  if (iq.type === "get") return list(room, iq, items[0]);
  // Every item is checked before any is applied, so a refused request changes nothing.
  const changes: Change[] = [];
  /** Accounts the request gives an affiliation they did not have. */
  const added = new Set<string>();
  for (const item of items) {
    const c = item.attrs.affiliation !== undefined
      ? affiliationChange(room, iq, item, added)
      : roleChange(room, iq, item);
    if (typeof c !== "function") return iq.error(c.condition, { text: c.text });
    changes.push(c);
  }
  if (room.affiliationsFull(added.size)) {
    const max = room.svc.config.max_affiliations;
    return iq.error("not-allowed", { text: `a room holds at most ${max} affiliations` });
  }
  for (const c of changes) c();
  iq.reply();
}

function roleChange(room: Room, iq: IqRequest, item: Element): Change | Refusal {
  const actor = room.occupantOf(iq.from);
  if (!actor || actor.role !== "moderator") {
    return { condition: "forbidden", text: "only moderators change roles" };
  }
  const role = item.attrs.role as Role;
  if (!ROLES.includes(role) || item.attrs.nick === undefined) {
    return { condition: "bad-request", text: "an item needs a nick and a role" };
  }
  const target = room.occupantByNick(item.attrs.nick);
  if (!target) return { condition: "item-not-found", text: "no such occupant" };
  const actorRank = affiliationRank(room.affiliation(actor.bare));
  const targetRank = affiliationRank(room.affiliation(target.bare));
  // Only admins and owners make or unmake moderators; nobody demotes an admin or owner (§9.6).
  if ((role === "moderator" || target.role === "moderator") && actorRank < ADMIN) {
    return { condition: "not-allowed", text: "only admins change moderators" };
  }
  if (role !== "moderator" && targetRank >= ADMIN) {
    return { condition: "not-allowed", text: "admins and owners keep their role" };
  }
  const reason = item.childText("reason");
  return () => {
    if (role === "none") {
      room.remove(target, { codes: [STATUS.KICKED], actor: actor.nick, reason });
      return;
    }
    target.role = role;
    room.announce(target, actor.nick, reason);
  };
}

function affiliationChange(
  room: Room,
  iq: IqRequest,
  item: Element,
  added: Set<string>,
): Change | Refusal {
  const actorAff = room.affiliation(iq.from.bare);
  const aff = item.attrs.affiliation as Affiliation;
  const jid = parseJid(item.attrs.jid ?? "");
  if (!AFFILIATIONS.includes(aff) || !jid) {
    return { condition: "bad-request", text: "an item needs a jid and an affiliation" };
  }
  const bare = jid.bare;
  const current = room.affiliation(bare);
  if (affiliationRank(actorAff) < ADMIN) {
    return { condition: "forbidden", text: "only admins change affiliations" };
  }
  const ownerOnly = affiliationRank(aff) >= ADMIN || affiliationRank(current) >= ADMIN;
  if (ownerOnly && actorAff !== "owner") {
    return { condition: "not-allowed", text: "only owners change admins and owners" };
  }
  if (current === "owner" && aff !== "owner" && owners(room) === 1) {
    return { condition: "conflict", text: "a room keeps at least one owner" };
  }
  if (current === "none" && aff !== "none") added.add(bare);
  const actor = room.occupantOf(iq.from)?.nick;
  const reason = item.childText("reason");
  return () => {
    room.setAffiliation(bare, aff);
    room.svc.persist(room);
    for (const occ of [...room.occupants()]) {
      if (occ.bare === bare) applyToOccupant(room, occ, aff, actor, reason);
    }
  };
}

function applyToOccupant(
  room: Room,
  occ: Occupant,
  aff: Affiliation,
  actor: string | undefined,
  reason: string | undefined,
): void {
  if (aff === "outcast") {
    return room.remove(occ, { codes: [STATUS.BANNED], affiliation: aff, actor, reason });
  }
  if (room.config.membersOnly && affiliationRank(aff) < affiliationRank("member")) {
    return room.remove(occ, {
      codes: [STATUS.AFFILIATION_CHANGED],
      affiliation: aff,
      actor,
      reason,
    });
  }
  occ.role = defaultRole(aff, room.config);
  room.announce(occ, actor, reason);
}

function owners(room: Room): number {
  let n = 0;
  for (const [, a] of room.affiliations()) if (a === "owner") n++;
  return n;
}

/** Lists by affiliation (admins; owners for the admin and owner lists) or by role (moderators). */
function list(room: Room, iq: IqRequest, query: Element): void {
  const aff = query.attrs.affiliation as Affiliation | undefined;
  const role = query.attrs.role as Role | undefined;
  const actorAff = room.affiliation(iq.from.bare);
  const out = x("query", { xmlns: NS.mucAdmin });
  if (aff !== undefined) {
    if (!AFFILIATIONS.includes(aff) || aff === "none") return iq.error("bad-request");
    const needed = affiliationRank(aff) >= ADMIN ? "owner" : "admin";
    if (affiliationRank(actorAff) < affiliationRank(needed)) return iq.error("forbidden");
    for (const [bare, a] of room.affiliations()) {
      if (a === aff) out.append(x("item", { affiliation: a, jid: bare }));
    }
    return iq.reply(out);
  }
  if (role === undefined || !ROLES.includes(role) || role === "none") {
    return iq.error("bad-request");
  }
  const actor = room.occupantOf(iq.from);
  if (actor?.role !== "moderator") return iq.error("forbidden");
  for (const occ of room.occupants()) {
    if (occ.role !== role) continue;
    out.append(itemElement({
      affiliation: room.affiliation(occ.bare),
      role: occ.role,
      jid: occ.primary.jid.full,
      nick: occ.nick,
    }));
  }
  iq.reply(out);
}
