// What a room answers about its archive: archive queries (XEP-0313 on MUC), for occupants, and for
// members of members-only rooms; and moderation (XEP-0425): a moderator retracts a message, whose
// archived copy becomes a tombstone and whose retraction goes to everyone live (and into the
// archive, for those who catch up later).
import { Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import type { Jid } from "../jid/jid.ts";
import type { IqRequest } from "../core/iq.ts";
import { mamHandler } from "../mam/query.ts";
import type { Room } from "./room.ts";
import { affiliationRank } from "./roles.ts";

/** Whether `from` may read the room's archive: why not, or the room's JID. */
function reader(room: Room, from: Jid): Jid | string {
  const rank = affiliationRank(room.affiliation(from.bare));
  if (rank < affiliationRank("none")) return "you are banned from the room";
  if (rank >= affiliationRank("member")) return room.jid;
  if (room.config.membersOnly) return "the archive of a members-only room is for members";
  return room.occupantOf(from) ? room.jid : "join the room to read its archive";
}

export function archiveIq(room: Room, iq: IqRequest): void | Promise<void> {
  const archive = room.svc.archive;
  if (!archive) return iq.error("service-unavailable");
  return mamHandler(archive.store, archive.maxPage, (q) => reader(room, q.from))(iq);
}

export async function moderateIq(room: Room, iq: IqRequest): Promise<void> {
  const archive = room.svc.archive;
  if (!archive) return iq.error("service-unavailable");
  if (iq.type !== "set") return iq.error("bad-request");
  const moderator = room.occupantOf(iq.from);
  if (moderator?.role !== "moderator") {
    return iq.error("forbidden", { text: "only moderators retract messages" });
  }
  const id = iq.payload.attrs.id;
  if (!id || !iq.payload.child("retract", NS.retract)) {
    return iq.error("bad-request", { text: "expected <moderate id><retract/></moderate>" });
  }
  const found = await archive.find(room.jid, id);
  if (!found) return iq.error("item-not-found", { text: "no such message in the archive" });
  const reason = iq.payload.childText("reason");
  const moderated = x(
    "moderated",
    { xmlns: NS.moderate, by: moderator.jid.full },
    x("occupant-id", { xmlns: NS.occupantId, id: moderator.id }),
  );
  const why = reason !== undefined && x("reason", {}, reason);
  // The tombstone keeps who said it and its ids, nothing of what was said.
  const kept = found.stanza.children.filter((c) =>
    typeof c !== "string" &&
    (c.attrs.xmlns === NS.occupantId || c.attrs.xmlns === NS.sid || c.attrs.xmlns === NS.delay)
  );
  const tombstone = new Element("message", found.stanza.attrs, [
    x("retracted", { xmlns: NS.retract, stamp: new Date().toISOString() }, moderated, why),
    ...kept,
  ]);
  await archive.replace(room.jid, id, tombstone);
  room.retract(id, x("retract", { xmlns: NS.retract, id }, moderated, why));
  iq.reply();
}
