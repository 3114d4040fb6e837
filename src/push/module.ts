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
import { parseStanza } from "../xml/parse_string.ts";
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
        fields.push({ var: "last-message-body", values: [p.body.slice(0, MAX_BODY)] });
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
      }, (e) => logFailure(`push registrations of ${account.bare}`, e));
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
      }, (e) => logFailure(`push registrations of ${account.bare}`, e));
    };

    // Stored offline: no session available at all.
    host.events.on("message/stored", ({ stanza, to }) => {
      const body = stanza.childText("body");
      if (body !== undefined) notify(to.toBare(), stanza.attrs.from ?? "", body);
    });

    // Queued for a detached session.
    host.events.on("message/held", ({ session, stanza }) => {
      const msg = typeof stanza === "string" ? parseStanza(stanza) : stanza;
      if (!msg) return;
      const body = msg.childText("body");
      if (body === undefined || msg.attrs.type === "error") return;
      const account = session.jid.toBare();
      const all = [...sessions.resources(account.bare)].filter((s) => s.available);
      // Another device is connected: it has it (or the user is at hand).
      if (all.some((s) => !s.detached)) return;
      if (msg.attrs.type === "groupchat") {
        if (!mentions(session, msg, body)) return;
      } else if (!msg.attrs.to?.includes("/") && first(all) !== session) {
        return; // to the bare JID: every detached session has it; one of them pushes
      }
      notify(account, msg.attrs.from ?? "", body);
    });

    // An app server's answer: an error takes its registration away.
    host.events.on("iq/answer", ({ stanza, to }) => {
      const id = stanza.attrs.id ?? "";
      if (!id.startsWith("push.") || stanza.attrs.type !== "error") return;
      const error = stanza.child("error");
      if (error?.attrs.type === "wait") return;
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
      registrations.disable(to.toBare(), r[0], r[1]).catch((e) =>
        logFailure(`push registration of ${to.bare}`, e)
      );
      return true;
    });
  },
};

const isTrue = (v: string | undefined) => v === "1" || v === "true";

/** The account's session that pushes for a message to its bare JID: the first by full JID. */
function first(sessions: Session[]): Session | undefined {
  let best: Session | undefined;
  for (const s of sessions) if (!best || s.jid.full < best.jid.full) best = s;
  return best;
}

/**
 * Whether a room's message mentions the user: its nick in that room (the session's directed
 * presence to the room) or its bare JID in the body.
 */
function mentions(session: LocalSession, msg: Element, body: string): boolean {
  const room = parseJid(msg.attrs.from ?? "");
  if (!room) return false;
  const text = body.toLowerCase();
  if (text.includes(session.jid.bare.toLowerCase())) return true;
  for (const to of session.directed) {
    const occupant = parseJid(to);
    if (occupant?.bare === room.bare && occupant.resource) {
      return text.includes(occupant.resource.toLowerCase());
    }
  }
  return false;
}
