// The message archive of accounts (XEP-0313) and the stanza ids it gives (XEP-0359). A message
// between two accounts is archived where it is routed — on the sender's node, in the sender's
// archive on its way out and in the recipient's on its way in — with one id for both, stamped on
// the recipient's live copy, its carbons and its offline copy, so it is found whichever device
// or node asks. Writes are batched (ArchiveWriter) and never hold routing up; a client's message
// counts as handled for stream management only once stored (OutboundEvent.stored), so a node
// that dies before writing it has not acknowledged it, and the client sends it again to the node
// where it resumes, where it gets the same id (derived from its session and its own id) and lands
// on the entry already there if the first write made it after all.
import type { Module, OutboundEvent, StanzaEvent } from "../core/host.ts";
import type { Element } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import type { Jid } from "../jid/jid.ts";
import type { IqRequest } from "../core/iq.ts";
import { logFailure } from "../core/failure.ts";
import { STORES } from "../storage/store.ts";
import { archivedText } from "./archivable.ts";
import { derivedStanzaId, newStanzaId, stamped, stanzaIdBy, withoutOurIds } from "./stanza_ids.ts";
import { type ArchivePrefs, archives, PrefsCache, prefsElement, readPrefs } from "./prefs.ts";
import { mamHandler } from "./query.ts";
import type { PendingEntry } from "./archive_writer.ts";
import { messageTargets } from "../im/delivery.ts";

export const archiveModule: Module = {
  name: "mam",
  install(host) {
    const { config, store, router, sessions, archive: writer } = host.server;
    if (!config.mam.enabled) return;
    const archive = store.archive(STORES.mam);
    const prefs = new PrefsCache(
      host.server.caches,
      host.domain,
      store.keyval<ArchivePrefs>(STORES.mamPrefs),
      config.mam.default,
    );
    const serves = (domain: string) => router.serves(domain);
    /**
     * A local sender's message on its way in (the same Element, same task): the id it got on its
     * way out, and that way out (whose stored promise may wait for the way in).
     */
    const outbound = new WeakMap<Element, { ev: OutboundEvent; id: string }>();
    /** Messages whose archiving failed to read preferences: routed unarchived. */
    const unarchived = new WeakSet<Element>();

    for (const f of [NS.mam, NS.mamExtended, NS.sid, NS.fulltext]) host.accountFeatures.add(f);

    /** An entry of `owner`'s archive for `msg` with `peer` under `id`; none if prefs say not. */
    const entry = (
      owner: Jid,
      peer: Jid,
      msg: Element,
      id: string,
      text: string,
      p: ArchivePrefs,
    ): PendingEntry | undefined => {
      const verdict = archives(p, peer);
      if (verdict === false) return undefined;
      return {
        user: owner.local,
        host: owner.domain,
        item: { id, at: Date.now(), with: peer.full, payload: msg.toString(), text },
        keep: verdict === "roster"
          ? async () => (await store.getRosterItem(owner.local, owner.domain, peer.bare)) !== null
          : undefined,
      };
    };
    /**
     * Entries of messages for accounts with no available resource: written once the message is
     * stored offline (a message refused, to a full store or an unknown account, is not kept).
     */
    const whenStored = new WeakMap<Element, PendingEntry>();

    /** Preferences not cached yet: the stanza waits for them, then goes through again. */
    const later = (account: Jid, msg: Element, again: () => unknown) =>
      prefs.load(account.toBare()).then(
        () => again(),
        (e) => {
          logFailure(`archiving preferences of ${account.bare}`, e);
          unarchived.add(msg);
          return again();
        },
      );

    // Outgoing: forged ids removed, the sender's archive written.
    host.events.on("stanza/out", (ev: OutboundEvent) => {
      if (ev.stanza.name !== "message") return false;
      const msg = ev.stanza = withoutOurIds(ev.stanza, serves);
      const text = archivedText(msg);
      if (text === undefined || unarchived.has(msg)) return false;
      const p = prefs.cached(ev.from.bare);
      if (!p) {
        ev.stored = later(ev.from, msg, () => host.dispatchOutbound(ev)) as Promise<void>;
        return true;
      }
      const id = ev.replayKey !== undefined ? derivedStanzaId(ev.replayKey) : newStanzaId();
      outbound.set(msg, { ev, id });
      const sent = entry(ev.from, ev.to, msg, id, text, p);
      if (sent) {
        writer.add(sent);
        ev.stanzaId = id;
      }
      // The recipient's entry, written in this same task, is in the same batch.
      ev.stored = writer.stored();
      return false;
    }, 50);

    // Incoming: the recipient's archive written, its id stamped on what is delivered.
    const inbound = (ev: StanzaEvent) => {
      const msg = ev.stanza;
      const owner = ev.to;
      if (unarchived.has(msg) || stanzaIdBy(msg, owner.bare) !== undefined) return false;
      const text = archivedText(msg);
      if (text === undefined) return false;
      const p = prefs.cached(owner.bare);
      if (!p) {
        const received = later(owner, msg, () => host.receive(msg, ev.from, owner))
          .then(() => writer.stored());
        // A local sender's message counts as handled once the recipient's entry is written too.
        const out = outbound.get(msg)?.ev;
        if (out) out.stored = Promise.all([out.stored, received]).then(() => {});
        return true;
      }
      const id = outbound.get(msg)?.id ?? newStanzaId();
      const out = stamped(msg, owner.bare, id);
      const received = entry(owner, ev.from, out, id, text, p);
      if (!received) return false;
      ev.stanza = out;
      const deliverable = (!owner.isBare && sessions.get(owner) !== undefined) ||
        messageTargets(sessions, owner.bare).length > 0;
      if (deliverable) writer.add(received);
      else whenStored.set(out, received);
      return false;
    };
    // Resent to this node after its session's node died, which had routed it: its entries are
    // written (again: the same id adds nothing), the message is not delivered again.
    host.events.on("stanza/replayed", (ev: OutboundEvent) => {
      if (ev.stanza.name !== "message" || ev.replayKey === undefined) return false;
      const msg = withoutOurIds(ev.stanza, serves);
      const text = archivedText(msg);
      if (text === undefined) return false;
      const id = derivedStanzaId(ev.replayKey);
      const { from, to } = ev;
      const write = async () => {
        const sent = entry(from, to, msg, id, text, await prefs.load(from.toBare()));
        if (sent) writer.add(sent);
        const local = to.domain === host.domain && !to.isDomain;
        if (local && await store.getCredentials(to.local, to.domain)) {
          const p = await prefs.load(to.toBare());
          const received = entry(to, from, stamped(msg, to.bare, id), id, text, p);
          if (received) writer.add(received);
        }
        await writer.stored();
      };
      ev.stored = write().catch((e) => logFailure(`archiving a message of ${from.bare} again`, e));
      return true;
    });
    host.events.on("message/stored", (ev) => {
      const received = whenStored.get(ev.stanza);
      if (received) writer.add(received);
    });
    host.events.on("message/bare", inbound, 20);
    host.events.on("message/full", inbound, 20);
    host.events.on("session/bound", (s) => {
      prefs.load(s.jid.toBare()).catch((e) =>
        logFailure(`archiving preferences of ${s.jid.bare}`, e)
      );
    });

    const own = (iq: IqRequest): Jid | string =>
      iq.self ? iq.to.toBare() : "only the account itself reads its archive";
    const queries = mamHandler(archive, config.mam.max_page, own);
    host.onIq("account", NS.mam, async (iq) => {
      if (iq.payload.name !== "prefs") return queries(iq);
      if (!iq.self) return iq.error("forbidden");
      const account = iq.to.toBare();
      if (iq.type === "get") return iq.reply(prefsElement(await prefs.load(account)));
      const next = readPrefs(iq.payload);
      if (typeof next === "string") return iq.error("bad-request", { text: next });
      await prefs.save(account, next);
      iq.reply(prefsElement(next));
    });
  },
};
