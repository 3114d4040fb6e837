// Push notifications (XEP-0357): a client registers its app server (enable/disable); a message
// for the account while none of its sessions is connected (each detached, waiting for a
// resumption, or none at all: stored offline), or a room message mentioning it for a detached
// session, makes the server publish a summary (urn:xmpp:push:summary) to each registration's
// app server in the account's name. One node pushes for a message: the one storing it offline,
// or the one holding the session it was queued for (for a message to the bare JID, the holder of
// the account's first session by full JID, so several detached sessions give one push).
// Pushes to one registration are coalesced: the first goes at once, what comes within
// `push.min_interval` after it goes in one summary at the interval's end (per node). An app
// server answering with an error (other than of type wait) loses its registration: the iq's id
// carries the registration, signed, so whichever node gets the answer can tell.
import { createHmac, timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";
import type { Module } from "../core/host.ts";
import { logFailure } from "../core/failure.ts";
import { parseDuration } from "../config/duration.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import type { LocalSession, Session } from "../router/sessions.ts";
import { dataForm, formValues } from "../xml/data_form.ts";
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { KEPT_LIMITS, parseStanza } from "../xml/parse_string.ts";
import { messageTargets } from "../im/delivery.ts";
import { stanzaIdBy } from "../mam/stanza_ids.ts";
import { LRUCache } from "lru-cache";
import { type Registration, Registrations } from "./registrations.ts";

/** The publish-options field by which a client lets the summary carry the message's body. */
export const INCLUDE_BODY = "include-body";
/** Longest body sent in a summary. */
const MAX_BODY = 512;

interface Pending {
  /** When the last push to the registration went (ms since the epoch). */
  last: number;
  count: number;
  sender: string;
  body: string | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export const pushModule: Module = {
  name: "push",
  install(host) {
    const { config, router, sessions, secret } = host.server;
    if (!config.push.enabled) return;
    host.accountFeatures.add(NS.push);
    const registrations = new Registrations(host.server, host.domain);
    const interval = parseDuration(config.push.min_interval)!;
    /** Coalescing per account and registration, on this node. */
    const pending = new Map<string, Pending>();

    const sign = (account: string, jid: string, node: string) =>
      createHmac("sha256", secret).update(`${account}\n${jid}\n${node}`).digest("base64url");
    /** The iq id of a push: the registration and its signature. */
    const pushId = (account: string, r: Registration) =>
      `push.${Buffer.from(JSON.stringify([r.jid, r.node])).toString("base64url")}.${
        sign(account, r.jid, r.node)
      }`;

    host.onIq("account", NS.push, async (iq) => {
      if (!iq.self || iq.type !== "set") return iq.error(iq.self ? "bad-request" : "forbidden");
      const jid = parseJid(iq.payload.attrs.jid ?? "");
      const node = iq.payload.attrs.node;
      if (!jid) return iq.error("bad-request", { text: "an app server jid is required" });
      if (iq.payload.name === "disable") {
        await registrations.disable(iq.to, jid.full, node || undefined);
        return iq.reply();
      }
      if (iq.payload.name !== "enable" || !node || node.length > 1024) {
        return iq.error("bad-request");
      }
      const form = iq.payload.child("x", NS.dataForms);
      const options = form ? Object.fromEntries(formValues(form)) : {};
      if (JSON.stringify(options).length > 4096) {
        return iq.error("not-acceptable", { text: "publish options too large" });
      }
      const max = config.push.max_registrations;
      if (!await registrations.enable(iq.to, { jid: jid.full, node, options }, max)) {
        return iq.error("not-acceptable", { text: `more than ${max} push registrations` });
      }
      iq.reply();
    });

    /** Publishes a summary to one registration's app server. */
    const publish = (account: Jid, r: Registration, p: Pending) => {
      const fields = [
        { var: "message-count", values: [String(p.count)] },
        { var: "last-message-sender", values: [p.sender] },
      ];
      if (p.body !== undefined && isTrue(r.options[INCLUDE_BODY]?.[0])) {
        fields.push({
          var: "last-message-body",
          values: [[...p.body].slice(0, MAX_BODY).join("")],
        });
      }
      const options = Object.entries(r.options)
        .filter(([k]) => k !== "FORM_TYPE" && k !== INCLUDE_BODY)
        .map(([k, values]) => ({ var: k, values }));
      const to = parseJid(r.jid);
      if (!to) return;
      router.route(
        x(
          "iq",
          { type: "set", from: account.bare, to: r.jid, id: pushId(account.bare, r) },
          x(
            "pubsub",
            { xmlns: NS.pubsub },
            x(
              "publish",
              { node: r.node },
              x(
                "item",
                {},
                x("notification", { xmlns: NS.push }, dataForm("submit", NS.pushSummary, fields)),
              ),
            ),
            options.length > 0 &&
              x("publish-options", {}, dataForm("submit", NS.pubsubPublishOptions, options)),
          ),
        ),
        account.toBare(),
        to,
      );
      p.last = Date.now();
      p.count = 0;
    };

    /** A message the account's sleeping clients should hear of. */
    const notify = (account: Jid, from: string, body: string | undefined) => {
      registrations.of(account).then((list) => {
        for (const r of list) {
          const k = `${account.bare}\n${r.jid}\n${r.node}`;
          let p = pending.get(k);
          if (!p) pending.set(k, p = { last: 0, count: 0, sender: from, body, timer: undefined });
          p.count++;
          p.sender = from;
          p.body = body;
          if (p.timer) continue; // coalesced: goes when the interval ends
          const wait = p.last + interval - Date.now();
          if (wait <= 0) {
            publish(account, r, p);
            // Kept for the interval: what comes meanwhile waits for its end.
            p.timer = setTimeout(() => flush(k, account, r), interval);
          } else p.timer = setTimeout(() => flush(k, account, r), wait);
        }
      }).catch((e) => logFailure(`push registrations of ${account.bare}`, e));
    };

    /**
     * The interval after a push ended: what came meanwhile goes (to the registration as it is
     * now: changed or gone meanwhile), or the entry is forgotten.
     */
    const flush = (k: string, account: Jid, was: Registration) => {
      const p = pending.get(k);
      if (!p) return;
      p.timer = undefined;
      if (p.count === 0) return void pending.delete(k);
      registrations.of(account).then((list) => {
        const r = list.find((r) => r.jid === was.jid && r.node === was.node);
        if (!r) return void pending.delete(k);
        if (p.timer || p.count === 0) return; // a message meanwhile pushed it already
        publish(account, r, p);
        p.timer = setTimeout(() => flush(k, account, r), interval);
      }).catch((e) => logFailure(`push registrations of ${account.bare}`, e));
    };

    /**
     * Messages pushed lately, per account: one routed again (its session ended unacknowledged,
     * to another detached session or offline storage) is not pushed twice.
     */
    const pushed = new LRUCache<string, true>({
      max: 10_000,
      // As long as a message may wait for its session's resumption before it is routed again.
      ttl: parseDuration(config.stream_management.max_resume_timeout)! + 60_000,
    });
    const once = (account: Jid, msg: Element, body: string) => {
      // The archive's id when it has one (unique), else the sender's id, else what it says.
      const id = stanzaIdBy(msg, account.bare) ?? msg.attrs.id ?? body;
      const key = `${account.bare}\n${msg.attrs.from}\n${id}`;
      if (pushed.has(key)) return false;
      pushed.set(key, true);
      return true;
    };

    // Stored offline: no session available at all.
    host.events.on("message/stored", ({ stanza, to }) => {
      const body = pushable(stanza);
      const account = to.toBare();
      if (body !== undefined && once(account, stanza, body)) {
        notify(account, stanza.attrs.from ?? "", body);
      }
    });

    // Queued for a detached session (or written to its connection before it was found gone).
    host.events.on("message/held", ({ session, stanza }) => {
      const msg = typeof stanza === "string" ? parseStanza(stanza, KEPT_LIMITS) : stanza;
      if (!msg) return;
      const body = pushable(msg);
      if (body === undefined) return;
      const account = session.jid.toBare();
      // Another device is connected: it has it (or the user is at hand).
      const all = [...sessions.resources(account.bare)].filter((s) => s.available);
      if (all.some((s) => !s.detached && s.priority >= 0)) return;
      if (msg.attrs.type === "groupchat") {
        if (!mentions(session, msg, body)) return;
      } else if (
        !msg.attrs.to?.includes("/") && first(messageTargets(sessions, account.bare)) !== session
      ) {
        return; // to the bare JID: each session it went to has it; one of them pushes
      }
      if (once(account, msg, body)) notify(account, msg.attrs.from ?? "", body);
    });

    // An app server's answer: an error from it takes its registration away; one that says it
    // could not be reached (a component reconnecting, a remote server down) does not.
    host.events.on("iq/answer", ({ stanza, to }) => {
      const id = stanza.attrs.id ?? "";
      if (!id.startsWith("push.") || stanza.attrs.type !== "error") return;
      const error = stanza.child("error");
      if (error?.attrs.type === "wait") return;
      if (error?.elements().some((c) => UNREACHED.has(c.name))) return;
      const [, data, mac] = id.split(".");
      let r: [string, string];
      try {
        r = JSON.parse(Buffer.from(data, "base64url").toString());
      } catch {
        return;
      }
      if (!Array.isArray(r) || typeof r[0] !== "string" || typeof r[1] !== "string") return;
      const expected = Buffer.from(sign(to.bare, r[0], r[1]));
      const given = Buffer.from(mac ?? "");
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return;
      if (parseJid(stanza.attrs.from ?? "")?.full !== parseJid(r[0])?.full) return;
      registrations.disable(to.toBare(), r[0], r[1]).catch((e) =>
        logFailure(`push registration of ${to.bare}`, e)
      );
      return true;
    });
  },
};

const isTrue = (v: string | undefined) => v === "1" || v === "true";

/** Error conditions saying the app server was not reached, not that it refused. */
const UNREACHED = new Set([
  "service-unavailable",
  "remote-server-not-found",
  "remote-server-timeout",
  "recipient-unavailable",
]);

/**
 * What a push says of a message worth waking a phone for, or undefined: a body; or, without one,
 * a call (XEP-0353 <propose/>) or an encrypted message (OMEMO), which need the app awake too.
 */
function pushable(msg: Element): string | undefined {
  if (msg.attrs.type === "error") return undefined;
  const body = msg.childText("body");
  if (body !== undefined) return body;
  if (msg.child("propose", "urn:xmpp:jingle-message:0")) return "";
  if (msg.child("encrypted", "eu.siacs.conversations.axolotl")) return "";
  if (msg.child("encrypted", "urn:xmpp:omemo:2")) return "";
  return undefined;
}

/** The account's session that pushes for a message to its bare JID: the first by full JID. */
function first(sessions: Session[]): Session | undefined {
  let best: Session | undefined;
  for (const s of sessions) if (!best || s.jid.full < best.jid.full) best = s;
  return best;
}

/**
 * Whether a room's message mentions the user: its nick in that room (the session's directed
 * presence to the room) or its bare JID in the body, as a word.
 */
function mentions(session: LocalSession, msg: Element, body: string): boolean {
  const room = parseJid(msg.attrs.from ?? "");
  if (!room) return false;
  if (word(body, session.jid.bare)) return true;
  for (const to of session.directed) {
    const occupant = parseJid(to);
    if (occupant?.bare === room.bare && occupant.resource) return word(body, occupant.resource);
  }
  return false;
}

/** Whether `text` has `name`, case aside, not inside a longer word. */
function word(text: string, name: string): boolean {
  const t = text.toLowerCase();
  const n = name.toLowerCase();
  const letter = /[\p{L}\p{N}_]/u;
  for (let i = t.indexOf(n); i >= 0; i = t.indexOf(n, i + 1)) {
    const before = i === 0 ? "" : t[i - 1];
    const after = t[i + n.length] ?? "";
    if (!letter.test(before) && !letter.test(after)) return true;
  }
  return false;
}
