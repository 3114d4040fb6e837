// PEP (XEP-0163) from raw clients: the pubsub namespaces, publish/items/retract and owner
// requests, publish-options forms, pubsub errors (the defined condition and the pubsub#errors
// one), notifications, entity capabilities (XEP-0115: the verification string, a presence with
// <c/>, answering the server's disco#info query), and the mutual presence subscription the
// presence access model needs.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { Element } from "../../src/xml/element.ts";
import { NS } from "../../src/xml/ns.ts";
import type { RawClient } from "./raw_client.ts";
import { eventually } from "./until.ts";

export const PUBSUB = "http://jabber.org/protocol/pubsub";
export const PUBSUB_OWNER = `${PUBSUB}#owner`;
export const PUBSUB_EVENT = `${PUBSUB}#event`;
export const PUBSUB_ERRORS = `${PUBSUB}#errors`;
export const PUBLISH_OPTIONS = `${PUBSUB}#publish-options`;
export const NODE_CONFIG = `${PUBSUB}#node_config`;
export const CAPS = "http://jabber.org/protocol/caps";
export const NICK = "http://jabber.org/protocol/nick";

/** Escapes text and attribute values written into stanzas by hand. */
export const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/'/g, "&apos;");

/** A form's fields: `pubsub#access_model` → "open"; a list gives a multi-valued field. */
export type Fields = Record<string, string | string[]>;

export function fields(values: Fields): string {
  return Object.entries(values).map(([k, v]) =>
    `<field var='${esc(k)}'>${
      (Array.isArray(v) ? v : [v]).map((s) => `<value>${esc(s)}</value>`).join("")
    }</field>`
  ).join("");
}

/** A submitted data form (XEP-0004) with its FORM_TYPE. */
export function form(formType: string, values: Fields): string {
  return `<x xmlns='${NS.dataForms}' type='submit'><field var='FORM_TYPE' type='hidden'>` +
    `<value>${formType}</value></field>${fields(values)}</x>`;
}

export const publishOptions = (values: Fields) =>
  `<publish-options>${form(PUBLISH_OPTIONS, values)}</publish-options>`;

export interface PublishOpts {
  id?: string;
  options?: Fields;
  /** The service: the account's bare JID; none means the sender's own (no `to`). */
  to?: string;
}

/** Publishes one item and returns the answer. */
export function publish(
  c: RawClient,
  node: string,
  payload: string,
  opts: PublishOpts = {},
): Promise<Element> {
  return c.iq("set", publishXml(node, payload, opts), opts.to);
}

export function publishXml(node: string, payload: string, opts: PublishOpts = {}): string {
  const id = opts.id === undefined ? "" : ` id='${esc(opts.id)}'`;
  return `<pubsub xmlns='${PUBSUB}'><publish node='${esc(node)}'><item${id}>${payload}</item>` +
    `</publish>${opts.options ? publishOptions(opts.options) : ""}</pubsub>`;
}

/** Publishes and fails unless the answer is a result; returns the item's id from the answer. */
export async function published(
  c: RawClient,
  node: string,
  payload: string,
  opts: PublishOpts = {},
): Promise<string> {
  const r = await publish(c, node, payload, opts);
  assert.equal(r.attrs.type, "result", `publish to ${node}: ${r}`);
  const item = r.child("pubsub", PUBSUB)?.child("publish")?.child("item");
  assert.ok(item?.attrs.id, `no item id in the publish answer ${r}`);
  assert.equal(r.child("pubsub")!.child("publish")!.attrs.node, node);
  return item.attrs.id;
}

/** Requests a node's items (all, the newest `max`, or those with `ids`); returns the answer. */
export function items(
  c: RawClient,
  node: string,
  opts: { to?: string; max?: number; ids?: string[] } = {},
): Promise<Element> {
  const max = opts.max === undefined ? "" : ` max_items='${opts.max}'`;
  const ids = (opts.ids ?? []).map((i) => `<item id='${esc(i)}'/>`).join("");
  return c.iq(
    "get",
    `<pubsub xmlns='${PUBSUB}'><items node='${esc(node)}'${max}>${ids}</items></pubsub>`,
    opts.to,
  );
}

/** The <item/> elements of an items answer (fails on an error answer). */
export function itemsOf(answer: Element): Element[] {
  assert.equal(answer.attrs.type, "result", `items: ${answer}`);
  const list = answer.child("pubsub", PUBSUB)?.child("items");
  assert.ok(list, `no <items/> in ${answer}`);
  return list.elements("item");
}

export const idsOf = (answer: Element) => itemsOf(answer).map((i) => i.attrs.id);

/** The single payload element of an item. */
export function payloadOf(item: Element): Element {
  const els = item.elements();
  assert.equal(els.length, 1, `one payload expected in ${item}`);
  return els[0];
}

/** The items' payload texts, oldest first. */
export const textsOf = (answer: Element) => itemsOf(answer).map((i) => payloadOf(i).text());

/** Sends a request in the pubsub#owner namespace. */
export function ownerIq(
  c: RawClient,
  type: "get" | "set",
  inner: string,
  to?: string,
): Promise<Element> {
  return c.iq(type, `<pubsub xmlns='${PUBSUB_OWNER}'>${inner}</pubsub>`, to);
}

/** Retracts one item; returns the answer. */
export function retract(
  c: RawClient,
  node: string,
  id: string,
  opts: { notify?: boolean; to?: string } = {},
): Promise<Element> {
  const notify = opts.notify ? " notify='true'" : "";
  return c.iq(
    "set",
    `<pubsub xmlns='${PUBSUB}'><retract node='${esc(node)}'${notify}><item id='${
      esc(id)
    }'/></retract></pubsub>`,
    opts.to,
  );
}

/** An error answer as assertions compare it: the defined condition and the pubsub#errors one. */
export function pubsubError(e: Element) {
  const err = e.child("error");
  return {
    type: e.attrs.type,
    errorType: err?.attrs.type,
    condition: err?.elements().find((c) => c.attrs.xmlns === NS.stanzaErrors)?.name,
    pubsub: err?.elements().find((c) => c.attrs.xmlns === PUBSUB_ERRORS)?.name,
  };
}

/** The pubsub#event element of a message, if it is a notification. */
export const eventOf = (e: Element) =>
  e.name === "message" ? e.child("event", PUBSUB_EVENT) : undefined;

/** A notification of items (published or retracted) of `node`, from `from` when given. */
export const isItemsEvent = (node: string, from?: string) => (e: Element) =>
  eventOf(e)?.child("items")?.attrs.node === node &&
  (from === undefined || e.attrs.from === from);

/** A notification carrying a published item of `node` whose payload text is `text`. */
export const isPublished = (node: string, text: string, from?: string) => (e: Element) =>
  isItemsEvent(node, from)(e) &&
  eventOf(e)!.child("items")!.elements("item").some((i) => i.elements()[0]?.text() === text);

/** A notification of `node` publishing (`item`) or retracting (`retract`) the item `id`. */
export const isEventOn = (node: string, what: "item" | "retract", id: string) => (e: Element) =>
  isItemsEvent(node)(e) &&
  eventOf(e)!.child("items")!.elements(what).some((i) => i.attrs.id === id);

/** The notifications of `node` still unconsumed in `c.received`. */
export const pendingEvents = (c: RawClient, node: string) => c.received.filter(isItemsEvent(node));

/**
 * Sends `c` a chat message from `from` and waits for it: everything the server sent `c` before
 * it, it has by then (one stream, in order), which proves the absence of earlier notifications.
 */
export async function marker(from: RawClient, c: RawClient): Promise<void> {
  const id = crypto.randomUUID();
  from.send(`<message to='${c.jid}' type='chat' id='${id}'><body>marker</body></message>`);
  await c.waitFor((e) => e.name === "message" && e.attrs.id === id, 5000, `marker ${id}`);
}

export interface Identity {
  category: string;
  type: string;
  lang?: string;
  name?: string;
}

/** XEP-0115 §5.1 verification string (no extended forms), SHA-1, base64. */
export function capsVer(identities: Identity[], features: string[]): string {
  let s = "";
  const ids = identities.map((i) => `${i.category}/${i.type}/${i.lang ?? ""}/${i.name ?? ""}`);
  for (const i of ids.sort()) s += i + "<";
  for (const f of [...features].sort()) s += f + "<";
  return createHash("sha1").update(s, "utf8").digest("base64");
}

/** A client's capabilities: what it answers to disco#info and the ver it advertises. */
export class Caps {
  readonly ver: string;
  constructor(
    readonly identities: Identity[],
    readonly features: string[],
    readonly node = "https://parley.test/caps",
    ver?: string,
  ) {
    this.ver = ver ?? capsVer(identities, features);
  }

  /** A client with these features (disco#info and caps added) and one pc identity. */
  static of(features: string[], name = "Parley test client", ver?: string): Caps {
    return new Caps(
      [{ category: "client", type: "pc", name }],
      [NS.discoInfo, CAPS, ...features],
      undefined,
      ver,
    );
  }

  get c(): string {
    return `<c xmlns='${CAPS}' hash='sha-1' node='${this.node}' ver='${this.ver}'/>`;
  }

  presence(extra = ""): string {
    return `<presence>${this.c}${extra}</presence>`;
  }

  isQuery = (e: Element) =>
    e.name === "iq" && e.attrs.type === "get" &&
    e.child("query", NS.discoInfo)?.attrs.node === `${this.node}#${this.ver}`;

  /** Waits for the server's disco#info query for this ver (checked as specified) and answers it. */
  async answer(c: RawClient, ms = 5000): Promise<Element> {
    const q = await c.waitFor(this.isQuery, ms, `disco#info query for ${this.ver}`);
    assert.equal(q.attrs.from, "localhost", `the query comes from the domain: ${q}`);
    assert.equal(q.attrs.to, c.jid, `the query goes to the resource: ${q}`);
    const ids = this.identities.map((i) =>
      `<identity category='${i.category}' type='${i.type}'${i.lang ? ` xml:lang='${i.lang}'` : ""}${
        i.name ? ` name='${esc(i.name)}'` : ""
      }/>`
    ).join("");
    const feats = this.features.map((f) => `<feature var='${esc(f)}'/>`).join("");
    c.send(
      `<iq type='result' id='${esc(q.attrs.id!)}'${q.attrs.from ? ` to='${q.attrs.from}'` : ""}>` +
        `<query xmlns='${NS.discoInfo}' node='${this.node}#${this.ver}'>${ids}${feats}</query></iq>`,
    );
    return q;
  }
}

export const bareOf = (jid: string) => jid.split("/")[0];

const isPresence = (type: string, from: string) => (e: Element) =>
  e.name === "presence" && e.attrs.type === type && bareOf(e.attrs.from ?? "") === from;

async function subscription(c: RawClient, contact: string): Promise<string | undefined> {
  const r = await c.iq("get", `<query xmlns='${NS.roster}'/>`);
  return r.child("query")?.elements("item").find((i) => i.attrs.jid === contact)?.attrs
    .subscription;
}

/** `a` subscribes to `b`'s presence and `b` approves (RFC 6121 §3): a has "to", b "from". */
export async function subscribeTo(a: RawClient, b: RawClient): Promise<void> {
  const [aj, bj] = [bareOf(a.jid), bareOf(b.jid)];
  a.send(`<presence to='${bj}' type='subscribe'/>`);
  await b.waitFor(isPresence("subscribe", aj), 5000, `${aj} asking ${bj}`);
  b.send(`<presence to='${aj}' type='subscribed'/>`);
  await a.waitFor(isPresence("subscribed", bj), 5000, `${bj} approving ${aj}`);
}

/** Waits until `c`'s roster has `contact` with this subscription. */
export function rosterHas(c: RawClient, contact: string, sub: string): Promise<void> {
  return eventually(
    async () => await subscription(c, contact) === sub,
    `${c.jid}: ${contact} ${sub}`,
  );
}

/**
 * A mutual presence subscription (both) between two logged-in clients that have sent their
 * initial presence: a asks, b approves, b asks, a approves.
 */
export async function befriend(a: RawClient, b: RawClient): Promise<void> {
  for (const c of [a, b]) await c.iq("get", `<query xmlns='${NS.roster}'/>`);
  await subscribeTo(a, b);
  await subscribeTo(b, a);
  await rosterHas(a, bareOf(b.jid), "both");
  await rosterHas(b, bareOf(a.jid), "both");
}
