// Message archive (XEP-0313) queries from a raw client: the query built from options, the result
// messages collected in order, and the <fin/> with its result set.
import type { RawClient } from "./raw_client.ts";
import type { Element } from "../../src/xml/element.ts";
import { NS } from "../../src/xml/ns.ts";
import { escapeAttr, escapeText } from "../../src/xml/escape.ts";

export interface MamOptions {
  /** The archive's JID (a room); the account's own when absent. */
  to?: string;
  with?: string;
  start?: string;
  end?: string;
  afterId?: string;
  beforeId?: string;
  ids?: string[];
  text?: string;
  max?: number;
  after?: string;
  /** "" asks for the last page. */
  before?: string;
  flip?: boolean;
  /** Extra form fields, raw. */
  extra?: string;
}

export interface MamResult {
  id: string;
  stamp: string;
  /** The archived stanza. */
  message: Element;
}

export interface MamPage {
  results: MamResult[];
  /** The iq answer: a result with <fin/>, or an error. */
  answer: Element;
  fin?: Element;
  first?: string;
  last?: string;
  count?: number;
  complete: boolean;
}

const field = (name: string, ...values: string[]) =>
  `<field var='${escapeAttr(name)}'>${
    values.map((v) => `<value>${escapeText(v)}</value>`).join("")
  }</field>`;

let queries = 0;

export async function mamQuery(c: RawClient, o: MamOptions = {}): Promise<MamPage> {
  const qid = `q${++queries}`;
  let form = field("FORM_TYPE", NS.mam);
  if (o.with) form += field("with", o.with);
  if (o.start) form += field("start", o.start);
  if (o.end) form += field("end", o.end);
  if (o.afterId) form += field("after-id", o.afterId);
  if (o.beforeId) form += field("before-id", o.beforeId);
  if (o.ids) form += field("ids", ...o.ids);
  if (o.text) form += field(`{${NS.fulltext}}fulltext`, o.text);
  form += o.extra ?? "";
  let rsm = "";
  if (o.max !== undefined) rsm += `<max>${o.max}</max>`;
  if (o.after !== undefined) rsm += `<after>${escapeText(o.after)}</after>`;
  if (o.before !== undefined) rsm += `<before>${escapeText(o.before)}</before>`;
  const answer = await c.iq(
    "set",
    `<query xmlns='${NS.mam}' queryid='${qid}'><x xmlns='jabber:x:data' type='submit'>${form}</x>${
      rsm ? `<set xmlns='${NS.rsm}'>${rsm}</set>` : ""
    }${o.flip ? "<flip-page/>" : ""}</query>`,
    o.to,
  );
  const results: MamResult[] = [];
  for (let i = 0; i < c.received.length;) {
    const r = c.received[i].child("result", NS.mam);
    if (!r || r.attrs.queryid !== qid) {
      i++;
      continue;
    }
    c.received.splice(i, 1);
    const fwd = r.child("forwarded", NS.forward)!;
    results.push({
      id: r.attrs.id!,
      stamp: fwd.child("delay", NS.delay)!.attrs.stamp!,
      message: fwd.child("message")!,
    });
  }
  const fin = answer.child("fin", NS.mam);
  const set = fin?.child("set", NS.rsm);
  const count = set?.childText("count");
  return {
    results,
    answer,
    fin,
    first: set?.childText("first"),
    last: set?.childText("last"),
    count: count === undefined ? undefined : Number(count),
    complete: fin?.attrs.complete === "true",
  };
}

/** The bodies of a page's messages, in order. */
export const bodiesOf = (p: MamPage) => p.results.map((r) => r.message.childText("body"));

/** The id `by` stamped on a message (XEP-0359). */
export const stanzaIdOf = (m: Element, by: string) =>
  m.elements("stanza-id").find((s) => s.attrs.xmlns === NS.sid && s.attrs.by === by)?.attrs.id;

/** Waits until the archive holds `n` items (its writes are batched, after delivery). */
export async function archivedCount(c: RawClient, n: number, o: MamOptions = {}, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const count = (await mamQuery(c, { ...o, max: 0 })).count;
    if (count === n) return;
    if (Date.now() > deadline) throw new Error(`the archive holds ${count} items, not ${n}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
