// The muc#owner protocol (XEP-0045 §10): the configuration form (instant room, full form,
// cancel at creation) and room destruction with a reason and an alternate venue.
import { x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { parseJid } from "../jid/jid.ts";
import type { IqRequest } from "../core/iq.ts";
import type { Room } from "./room.ts";
import { applyConfigForm, configForm } from "./room_config.ts";

export function ownerIq(room: Room, iq: IqRequest): void {
  if (room.affiliation(iq.from.bare) !== "owner") {
    return iq.error("forbidden", { text: "only owners configure the room" });
  }
  const svc = room.svc.config;
  if (iq.type === "get") {
    const form = configForm(room.config, svc, room.svc.archive !== undefined);
    return iq.reply(x("query", { xmlns: NS.mucOwner }, form));
  }
  const destroy = iq.payload.child("destroy");
  if (destroy) {
    const alternate = destroy.attrs.jid;
    if (alternate !== undefined && !parseJid(alternate)) return iq.error("jid-malformed");
    room.destroy(alternate, destroy.childText("reason"));
    return iq.reply();
  }
  const form = iq.payload.child("x", NS.dataForms);
  if (!form) return iq.error("bad-request", { text: "expected a data form or <destroy/>" });
  if (form.attrs.type === "cancel") {
    // Cancelling the first configuration abandons the new room (§10.1.3).
    if (room.locked) room.destroy();
    return iq.reply();
  }
  if (form.attrs.type !== "submit") return iq.error("bad-request", { text: "submit the form" });
  const next = applyConfigForm(room.config, form, svc);
  if (typeof next === "string") return iq.error("not-acceptable", { text: next });
  room.configure(next);
  iq.reply();
}
