// What the archives keep (XEP-0313 §5.1.1, XEP-0334): chat and normal messages with a body, or
// with a payload a client shows as a message (end-to-end encrypted, a call, a retraction, a
// reaction, an invitation), unless a hint says not to; never errors or headlines, nor chat
// states, receipts and markers alone. Room messages (groupchat) only in the room's archive.
import type { Element } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";

/** Payloads that make a message worth keeping without a body, by namespace. */
const KEPT_PAYLOADS = new Set([
  "eu.siacs.conversations.axolotl", // OMEMO (legacy)
  "urn:xmpp:omemo:2",
  "urn:xmpp:openpgp:0",
  "jabber:x:encrypted",
  "urn:xmpp:jingle-message:0", // call invitations and their answers
  "urn:xmpp:jingle-message:1",
  "urn:xmpp:message-retract:1",
  "urn:xmpp:message-retract:0",
  "urn:xmpp:reactions:0",
  "jabber:x:conference", // direct room invitations
  NS.mucUser, // mediated invitations
]);

/**
 * Whether `msg` goes into an archive: its text for full-text search (the body, "" without one)
 * when it does, undefined when it does not. `groupchat` is the kind a room keeps.
 */
export function archivedText(msg: Element, groupchat = false): string | undefined {
  const type = msg.attrs.type ?? "normal";
  if (groupchat ? type !== "groupchat" : type !== "chat" && type !== "normal") return undefined;
  let body: string | undefined;
  let kept = false;
  for (const c of msg.children) {
    if (typeof c === "string") continue;
    const ns = c.attrs.xmlns;
    if (c.name === "body" && ns === undefined) body ??= c.text();
    else if (ns === NS.hints) {
      if (c.name === "no-store" || c.name === "no-permanent-store") return undefined;
      if (c.name === "store") kept = true;
    } else if (ns !== undefined && KEPT_PAYLOADS.has(ns)) kept = true;
  }
  if (body !== undefined) return body;
  return kept ? "" : undefined;
}
