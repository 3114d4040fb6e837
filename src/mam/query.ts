// Archive queries (XEP-0313 §4, with #extended): the query's form and result set (XEP-0059) read
// into an archive query, the page sent back as one message per item, each the archived stanza
// forwarded with its time (XEP-0297, XEP-0203), then the <fin/> that ends it; and the metadata
// query (the archive's first and last items). Written once for accounts' and rooms' archives.
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { formValues } from "../xml/data_form.ts";
import { parseJid } from "../jid/jid.ts";
import { KEPT_LIMITS, parseStanza } from "../xml/parse_string.ts";
import type { IqRequest } from "../core/iq.ts";
import type { Router } from "../router/router.ts";
import type { Jid } from "../jid/jid.ts";
import type { ArchiveItem, ArchiveQuery, ArchiveStore } from "../storage/store.ts";
import { UnknownItemError } from "../storage/store.ts";

/** The full-text field (ejabberd's `withtext` is taken too). */
const FULLTEXT = `{${NS.fulltext}}fulltext`;
const FIELDS = new Set([
  "FORM_TYPE",
  "with",
  "start",
  "end",
  "before-id",
  "after-id",
  "ids",
  FULLTEXT,
  "withtext",
]);
/** Full-text search: words, and characters per word, a query may hold. */
const MAX_WORDS = 10;
const MAX_WORD = 64;

export interface MamRequest {
  query: ArchiveQuery;
  queryId?: string;
  flip: boolean;
}

/** The request in a <query/>, or why it is a bad request. */
export function readQuery(payload: Element, maxPage: number): MamRequest | string {
  const query: ArchiveQuery = { max: maxPage };
  const form = payload.child("x", NS.dataForms);
  if (form) {
    const values = formValues(form);
    const formType = values.get("FORM_TYPE")?.[0];
    if (formType !== undefined && formType !== NS.mam) return `unknown FORM_TYPE ${formType}`;
    for (const name of values.keys()) if (!FIELDS.has(name)) return `unknown field ${name}`;
    const one = (name: string) => values.get(name)?.[0] || undefined;
    const w = one("with");
    if (w !== undefined) {
      const jid = parseJid(w);
      if (!jid) return "with is not a JID";
      query.with = jid.full;
    }
    for (const name of ["start", "end"] as const) {
      const v = one(name);
      if (v === undefined) continue;
      const t = Date.parse(v);
      // XEP-0082: a date, a time and a time zone (never the server's own).
      const form = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/;
      if (Number.isNaN(t) || !form.test(v)) return `${name} is not a date and time (XEP-0082)`;
      query[name] = t;
    }
    query.afterId = one("after-id");
    query.beforeId = one("before-id");
    const ids = values.get("ids");
    if (ids !== undefined) {
      // At most a page of them: each is a parameter of the query.
      if (ids.length > maxPage) return `at most ${maxPage} ids`;
      query.ids = ids.filter((id) => id);
    }
    // Words only: control characters (which no body holds) are no query syntax either.
    // deno-lint-ignore no-control-regex
    const text = (one(FULLTEXT) ?? one("withtext"))?.replace(/[\u0000-\u001f]/g, " ").trim();
    if (text) {
      // Its cost grows with its words (each is looked up in the whole server's index).
      const words = [...new Set(text.split(/\s+/u))];
      if (words.length > MAX_WORDS || words.some((w) => w.length > MAX_WORD)) {
        return `full-text search takes at most ${MAX_WORDS} words of ${MAX_WORD} characters`;
      }
      query.text = words.join(" ");
    }
  }
  const set = payload.child("set", NS.rsm);
  if (set) {
    const max = set.childText("max");
    if (max !== undefined) {
      if (!/^\d{1,9}$/.test(max.trim())) return "max is not a number";
      query.max = Math.min(Number(max), maxPage);
    }
    const after = set.childText("after");
    if (after) query.after = after;
    const before = set.child("before");
    if (before) query.before = before.text();
  }
  return {
    query,
    queryId: payload.attrs.queryid,
    flip: payload.child("flip-page") !== undefined,
  };
}

/**
 * Answers an archive query on `archive` (of `owner`, addressed as `archiveJid`): the page's
 * messages to the requester, then the iq result with <fin/>. An unknown id is item-not-found.
 */
export async function answerQuery(
  iq: IqRequest,
  archive: ArchiveStore,
  owner: Jid,
  maxPage: number,
): Promise<void> {
  const req = readQuery(iq.payload, maxPage);
  if (typeof req === "string") return iq.error("bad-request", { text: req });
  let page;
  try {
    page = await archive.query(owner.local, owner.domain, req.query);
  } catch (e) {
    if (e instanceof UnknownItemError) return iq.error("item-not-found", { text: e.message });
    throw e;
  }
  const items = req.flip ? [...page.items].reverse() : page.items;
  for (const item of items) sendResult(iq.router, iq.to, iq.from, item, req.queryId);
  const complete = page.complete || req.query.ids !== undefined;
  iq.reply(x(
    "fin",
    { xmlns: NS.mam, complete: complete ? "true" : undefined },
    x(
      "set",
      { xmlns: NS.rsm },
      page.first !== undefined && x("first", {}, page.first),
      page.last !== undefined && x("last", {}, page.last),
      x("count", {}, String(page.count)),
    ),
  ));
}

/** One archived item, forwarded to the requester. */
function sendResult(router: Router, from: Jid, to: Jid, item: ArchiveItem, queryId?: string) {
  const stanza = parseStanza(item.payload, KEPT_LIMITS);
  if (!stanza) return;
  stanza.attrs.xmlns = NS.client;
  router.route(
    x(
      "message",
      { from: from.full, to: to.full },
      // For the asking session: never stored offline if it is gone meanwhile.
      x("no-store", { xmlns: NS.hints }),
      x(
        "result",
        { xmlns: NS.mam, queryid: queryId, id: item.id },
        x(
          "forwarded",
          { xmlns: NS.forward },
          x("delay", { xmlns: NS.delay, stamp: new Date(item.at).toISOString() }),
          stanza,
        ),
      ),
    ),
    from,
    to,
  );
}

/** The metadata query (XEP-0313 §6.1): the archive's first and last items. */
export async function answerMetadata(iq: IqRequest, archive: ArchiveStore, owner: Jid) {
  const [first, last] = await Promise.all([
    archive.query(owner.local, owner.domain, { max: 1 }),
    archive.query(owner.local, owner.domain, { max: 1, before: "" }),
  ]);
  const bound = (name: string, item: ArchiveItem | undefined) =>
    item && x(name, { id: item.id, timestamp: new Date(item.at).toISOString() });
  iq.reply(
    x("metadata", { xmlns: NS.mam }, bound("start", first.items[0]), bound("end", last.items[0])),
  );
}

/** The form a client fills in (XEP-0313 §4.1.1): the fields this server understands. */
export function queryForm(fulltext: boolean): Element {
  const field = (v: string, type = "text-single") => x("field", { var: v, type });
  return x(
    "query",
    { xmlns: NS.mam },
    x(
      "x",
      { xmlns: NS.dataForms, type: "form" },
      x("field", { var: "FORM_TYPE", type: "hidden" }, x("value", {}, NS.mam)),
      field("with", "jid-single"),
      field("start"),
      field("end"),
      field("before-id"),
      field("after-id"),
      field("ids", "list-multi"),
      fulltext && field(FULLTEXT),
    ),
  );
}

/** Registers the archive's queries on an iq handler table (an account's or a room's). */
export function mamHandler(
  archive: ArchiveStore,
  maxPage: number,
  allowed: (iq: IqRequest) => Jid | string,
): (iq: IqRequest) => Promise<void> | void {
  return (iq) => {
    const owner = allowed(iq);
    if (typeof owner === "string") return iq.error("forbidden", { text: owner });
    const name = iq.payload.name;
    if (name === "metadata" && iq.type === "get") return answerMetadata(iq, archive, owner);
    if (name !== "query") return iq.error("bad-request");
    if (iq.type === "get") return iq.reply(queryForm(true));
    return answerQuery(iq, archive, owner, maxPage);
  };
}
