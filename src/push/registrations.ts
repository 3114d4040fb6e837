// An account's push registrations (XEP-0357 §5): app server JID, node, and the publish-options
// its client gave, in the map shape STORES.push of the account (key "jid\nnode"), cached per
// node and dropped on every node before a change is answered (core/account_cache.ts).
import { AccountCache } from "../core/account_cache.ts";
import type { ServerContext } from "../core/context.ts";
import type { Jid } from "../jid/jid.ts";
import { STORES } from "../storage/store.ts";

export interface Registration {
  /** The app server (a JID: a component of this server, or another domain's service). */
  jid: string;
  node: string;
  /** The publish-options form's fields, sent with every notification (the app's secret). */
  options: Record<string, string[]>;
}

const key = (jid: string, node: string) => `${jid}\n${node}`;

export class Registrations {
  readonly #cache: AccountCache<Registration[]>;

  constructor(readonly server: ServerContext, domain: string) {
    this.#cache = new AccountCache(
      server.caches,
      `push ${domain}`,
      async (account) =>
        (await server.store.map<Registration>(STORES.push).entries(account.local, account.domain))
          .map(([, r]) => r),
    );
  }

  of(account: Jid): Promise<Registration[]> {
    return this.#cache.load(account);
  }

  /** Adds or replaces one; false when the account has `max` others already. */
  async enable(account: Jid, r: Registration, max: number): Promise<boolean> {
    const ok = await this.server.store.map<Registration>(STORES.push).set(
      account.local,
      account.domain,
      key(r.jid, r.node),
      r,
      { max },
    );
    if (ok) await this.#changed(account);
    return ok;
  }

  /** Removes the registrations with this app server (and node, when given); how many. */
  async disable(account: Jid, jid: string, node?: string): Promise<number> {
    const gone = (await this.of(account)).filter((r) =>
      r.jid === jid && (node === undefined || r.node === node)
    );
    const map = this.server.store.map(STORES.push);
    for (const r of gone) await map.set(account.local, account.domain, key(r.jid, r.node), null);
    if (gone.length) await this.#changed(account);
    return gone.length;
  }

  async #changed(account: Jid): Promise<void> {
    this.server.caches.clear(this.#cache.name, account.bare);
    await this.#cache.changed(account);
  }
}
