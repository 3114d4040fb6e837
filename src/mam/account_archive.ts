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

export const archiveModule: Module = {
  name: "mam",
  install(host) {
    const { config, store, router, archive: writer } = host.server;
    if (!config.mam.enabled) return;
    const archive = store.archive(STORES.mam);
    const prefs = new PrefsCache(
      host.server.caches,
      host.domain,
      store.keyval<ArchivePrefs>(STORES.mamPrefs),
      config.mam.default,
    );
    const serves = (domain: string) => router.serves(domain);
    /** The id a message got on its way out, for its way in (the same Element, same task). */
    const assigned = new WeakMap<Element, string>();
    /** Messages whose archiving failed to read preferences: routed unarchived. */
    const unarchived = new WeakSet<Element>();

    for (const f of [NS.mam, NS.mamExtended, NS.sid, NS.fulltext]) host.accountFeatures.add(f);

    /** Archives `msg` in `owner`'s archive, with `peer`, under `id`, as prefs say. */
    const add = (
      owner: Jid,
      peer: Jid,
      msg: Element,
      id: string,
      text: string,
      p: ArchivePrefs,
    ) => {
      const verdict = archives(p, peer);
      if (verdict === false) return false;
      writer.add({
        user: owner.local,
        host: owner.domain,
        item: { id, at: Date.now(), with: peer.full, payload: msg.toString(), text },
        keep: verdict === "roster"
          ? async () => (await store.getRosterItem(owner.local, owner.domain, peer.bare)) !== null
          : undefined,
      });
      return true;
    };

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
      assigned.set(msg, id);
      if (add(ev.from, ev.to, msg, id, text, p)) ev.stanzaId = id;
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
        void later(owner, msg, () => host.receive(msg, ev.from, owner));
        return true;
      }
      const id = assigned.get(msg) ?? newStanzaId();
      const out = stamped(msg, owner.bare, id);
      if (add(owner, ev.from, out, id, text, p)) ev.stanza = out;
      return false;
    };
    host.events.on("message/bare", inbound, 20);
    host.events.on("message/full", inbound, 20);
    host.events.on("session/bound", (s) => {
      prefs.load(s.jid.toBare()).catch((e) =>
        logFailure(`archiving preferences of ${s.jid.bare}`, e)
      );
    });

    const own = (iq: IqRequest): Jid | string =>
      iq.self ? iq.to.toBare() : "only the account itself reads its archive";
    host.onIq("account", NS.mam, async (iq) => {
      if (iq.payload.name !== "prefs") {
        return mamHandler(archive, config.mam.max_page, own)(iq);
      }
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
