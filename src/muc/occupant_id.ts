// Occupant ids (XEP-0421): what identifies an account in one room, the same on every node and
// across nick changes and rejoins, and telling nothing of the account (a keyed hash of the room
// and the account's bare JID, with the server's secret, the same on every node of a cluster).
import { createHmac } from "node:crypto";
import { Element, type Node, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";

export function occupantId(secret: Uint8Array, room: string, bare: string): string {
  return createHmac("sha256", secret).update(`${room}\0${bare}`).digest("base64url").slice(0, 24);
}

/**
 * `stanza` with the room's occupant id of its sender, and none the sender put there itself
 * (XEP-0421 §4: a client's own would let it pose as another).
 */
export function withOccupantId(stanza: Element, id: string): Element {
  const children: Node[] = stanza.children.filter((c) =>
    typeof c === "string" || c.name !== "occupant-id" || c.attrs.xmlns !== NS.occupantId
  );
  children.push(x("occupant-id", { xmlns: NS.occupantId, id }));
  return new Element(stanza.name, stanza.attrs, children);
}
