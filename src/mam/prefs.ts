// Archiving preferences (XEP-0441): what an account's archive keeps by default (always, never,
// with roster contacts), and JIDs always or never kept whatever the default. Stored per account,
// cached on each node (AccountCache: never stale in a cluster), read per message from the cache.
import { x } from "../xml/element.ts";
import type { Element } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import { AccountCache } from "../core/account_cache.ts";
import type { SharedCaches } from "../core/caches.ts";
import type { KeyValStore } from "../storage/store.ts";
import { ARCHIVE_DEFAULTS } from "../config/schema.ts";

export type ArchiveDefault = (typeof ARCHIVE_DEFAULTS)[number];

export interface ArchivePrefs {
  default: ArchiveDefault;
  always: string[];
  never: string[];
}

/** Whether a message with `peer` is archived: yes, no, or if `peer` is in the roster. */
export function archives(prefs: ArchivePrefs, peer: Jid): boolean | "roster" {
  const listed = (list: string[]) => list.includes(peer.bare) || list.includes(peer.full);
  if (prefs.never.length && listed(prefs.never)) return false;
  if (prefs.always.length && listed(prefs.always)) return true;
  return prefs.default === "roster" ? "roster" : prefs.default === "always";
}

/** The preferences of a host's accounts, cached. */
export class PrefsCache extends AccountCache<ArchivePrefs> {
  constructor(
    caches: SharedCaches,
    domain: string,
    readonly store: KeyValStore<ArchivePrefs>,
    readonly fallback: ArchiveDefault,
  ) {
    super(caches, `mam prefs ${domain}`, async (account) => {
      const stored = await store.get(account.local, account.domain);
      return stored ?? { default: fallback, always: [], never: [] };
    });
  }

  /** Stores an account's preferences; resolves once every node sees them. */
  async save(account: Jid, prefs: ArchivePrefs): Promise<void> {
    await this.store.set(account.local, account.domain, prefs);
    this.set(account.bare, prefs);
    await this.changed(account);
  }
}

/** The <prefs/> element (XEP-0441 §2.2). */
export function prefsElement(p: ArchivePrefs): Element {
  const list = (name: string, jids: string[]) => x(name, {}, ...jids.map((j) => x("jid", {}, j)));
  return x(
    "prefs",
    { xmlns: NS.mam, default: p.default },
    list("always", p.always),
    list("never", p.never),
  );
}

/** Preferences from a client's <prefs/>, or why they are a bad request. */
export function readPrefs(el: Element): ArchivePrefs | string {
  const def = el.attrs.default as ArchiveDefault;
  if (!ARCHIVE_DEFAULTS.includes(def)) return "default is always, never or roster";
  const jids = (name: string): string[] | string => {
    const out: string[] = [];
    for (const j of el.child(name)?.elements("jid") ?? []) {
      const jid = parseJid(j.text().trim());
      if (!jid) return `${name}: ${j.text()} is not a JID`;
      out.push(jid.full);
    }
    return out;
  };
  const always = jids("always");
  const never = jids("never");
  if (typeof always === "string") return always;
  if (typeof never === "string") return never;
  if (always.length + never.length > MAX_LISTED) return `at most ${MAX_LISTED} JIDs`;
  return { default: def, always, never };
}

/** JIDs an account may list in its preferences (they are checked per message). */
const MAX_LISTED = 1000;
