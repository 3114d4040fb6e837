// Message carbons (XEP-0280): resources that enable carbons get copies of the chat messages their
// account sends and receives on other resources.
import type { Host, Module } from "../core/host.ts";
import type { Session } from "../router/sessions.ts";
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { messageTargets } from "../im/delivery.ts";
import { stamped } from "../mam/stanza_ids.ts";

function eligible(msg: Element): boolean {
  const type = msg.attrs.type ?? "normal";
  if (type !== "chat" && !(type === "normal" && msg.child("body"))) return false;
  if (msg.child("private", NS.carbons) || msg.child("no-copy", NS.hints)) return false;
  return !msg.child("received", NS.carbons) && !msg.child("sent", NS.carbons);
}

function copyTo(
  host: Host,
  bare: string,
  msg: Element,
  kind: "sent" | "received",
  skip: Session[],
) {
  const sessions = host.server.sessions;
  let wrapped: Element | undefined;
  for (const s of sessions.resources(bare)) {
    if (!s.carbons || skip.includes(s)) continue;
    wrapped ??= x(
      "forwarded",
      { xmlns: NS.forward },
      x("message", { ...msg.attrs, xmlns: NS.client }, ...msg.children),
    );
    sessions.deliver(
      s,
      x(
        "message",
        { from: bare, to: s.jid.full, type: msg.attrs.type },
        x(kind, { xmlns: NS.carbons }, wrapped),
      ),
    );
  }
}

export const carbonsModule: Module = {
  name: "carbons",
  install(host) {
    const sessions = host.server.sessions;
    host.features.add(NS.carbons);
    host.onIq("account", NS.carbons, (iq) => {
      if (!iq.self || iq.type !== "set") return iq.error(iq.self ? "bad-request" : "forbidden");
      const session = sessions.get(iq.from);
      if (!session) return iq.error("item-not-found");
      if (iq.payload.name === "enable") session.carbons = true;
      else if (iq.payload.name === "disable") session.carbons = false;
      else return iq.error("bad-request");
      sessions.changed(session);
      iq.reply();
    });
    const inbound = (msg: Element, bare: string, full?: Session) => {
      if (!eligible(msg)) return false;
      copyTo(host, bare, msg, "received", full ? [full] : messageTargets(sessions, bare));
      return false;
    };
    host.events.on("message/full", (ev) => inbound(ev.stanza, ev.to.bare, sessions.get(ev.to)), 10);
    host.events.on("message/bare", (ev) => inbound(ev.stanza, ev.to.bare), 10);
    host.events.on("stanza/out", (ev) => {
      if (ev.stanza.name === "message" && eligible(ev.stanza)) {
        // The copy carries the id the sender's archive gave the message (XEP-0359).
        const id = ev.stanzaId;
        const msg = id === undefined ? ev.stanza : stamped(ev.stanza, ev.from.bare, id);
        copyTo(host, ev.from.bare, msg, "sent", [ev.session]);
      }
      return false;
    }, 5);
  },
};
