// The service's list of public rooms (XEP-0045 §6.3) in pages (Result Set Management, XEP-0059):
// rooms in JID order, at most DISCO_PAGE per answer, the next page `after` the last JID seen.
// A request without RSM gets the first page, with a <set> saying how many there are when that is
// not all of them (XEP-0059 lets the responder limit a result set it was not asked to).
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";

const RSM = "http://jabber.org/protocol/rsm";
/** The most rooms in one disco#items answer. */
export const DISCO_PAGE = 100;

export interface ListedRoom {
  jid: string;
  name: string;
}

/** One page of `rooms` (any order) as asked by the request's <set>, if any. */
export function roomItems(rooms: ListedRoom[], query: Element | undefined): Element {
  rooms.sort((a, b) => a.jid < b.jid ? -1 : a.jid > b.jid ? 1 : 0);
  const set = query?.child("set", RSM);
  const asked = Number(set?.childText("max") ?? DISCO_PAGE);
  const max = Math.min(Number.isInteger(asked) && asked >= 0 ? asked : DISCO_PAGE, DISCO_PAGE);
  const after = set?.childText("after");
  const before = set?.child("before");
  const index = Number(set?.childText("index") ?? NaN);
  let start = 0;
  // Positions by JID, not by a remembered item: rooms come and go between pages.
  if (after) start = rooms.findIndex((r) => r.jid > after);
  else if (before) {
    const until = before.text() ? rooms.findIndex((r) => r.jid >= before.text()) : rooms.length;
    start = Math.max(0, (until === -1 ? rooms.length : until) - max);
  } else if (Number.isInteger(index) && index >= 0) start = index;
  if (start === -1) start = rooms.length;
  const page = rooms.slice(start, start + max);
  const q = x("query", { xmlns: NS.discoItems });
  for (const r of page) q.append(x("item", { jid: r.jid, name: r.name }));
  if (set || page.length < rooms.length) {
    const out = x("set", { xmlns: RSM });
    if (page.length > 0) {
      out.append(x("first", { index: String(start) }, page[0].jid));
      out.append(x("last", {}, page[page.length - 1].jid));
    }
    out.append(x("count", {}, String(rooms.length)));
    q.append(out);
  }
  return q;
}
