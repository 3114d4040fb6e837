// The Store written once for every SQL backend: accounts, rosters and their versions, pending
// subscriptions, offline messages and blocklists as tables; MUC rooms and the cluster secret in
// the generic shapes. It runs SQL that SQLite and PostgreSQL both accept through a backend's
// driver (driver.ts: sqlite.ts, postgres.ts), where the little that differs is the driver's
// dialect (schema.ts).
//
// Atomicity: a read-modify-write (a roster change and its version, the offline limit, a map's
// capped set) is one driver transaction that first takes the driver's lock on (what, account), so
// nodes sharing a PostgreSQL never interleave it; anything else is a single statement, atomic by
// itself (upserts, deletes that return what they removed). Hot calls stay one statement each where
// they can (getCredentials, getRoster, takeOffline): one round trip to PostgreSQL.
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import {
  type Dialect,
  type Param,
  type Row,
  type SqlDriver,
  type SqlTx,
  st,
  type Statement,
} from "./driver.ts";
import { ACCOUNT_TABLES } from "./schema.ts";
import {
  Archive,
  type ArchiveStore,
  Items,
  type ItemStore,
  KeyMap,
  KeyVal,
  type KeyValStore,
  type MapStore,
} from "./shapes.ts";
import {
  type AccountRemoval,
  type Credentials,
  type PendingSubscription,
  type Roster,
  type RosterChange,
  type RosterItem,
  SECRET_BYTES,
  type Store,
  STORES,
  type Subscription,
} from "./store.ts";

const OWNER = "host = ? AND username = ?";
/** The most rows one statement writes (blocklists), keeping statements few and parameters bounded. */
const BATCH = 100;
/** The owner of the cluster secret in STORES.secret. */
const CLUSTER_SECRET: [user: string, host: string] = ["cluster", ""];

export class SqlStore implements Store {
  readonly #db: SqlDriver;
  readonly #d: Dialect;

  constructor(db: SqlDriver) {
    this.#db = db;
    this.#d = db.dialect;
  }

  keyval<T = unknown>(name: string): KeyValStore<T> {
    return new KeyVal<T>(this.#db, name);
  }

  map<T = unknown>(name: string): MapStore<T> {
    return new KeyMap<T>(this.#db, name);
  }

  items<T = unknown>(name: string): ItemStore<T> {
    return new Items<T>(this.#db, name);
  }

  archive(name: string): ArchiveStore {
    return new Archive(this.#db, name);
  }

  async createAccount(user: string, host: string, creds: Credentials): Promise<boolean> {
    return await this.#db.run(st(
      `INSERT INTO accounts (host, username, credentials, created_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (host, username) DO NOTHING`,
      host,
      user,
      JSON.stringify(creds),
      Date.now(),
    )) === 1;
  }

  async getCredentials(user: string, host: string): Promise<Credentials | null> {
    const [row] = await this.#db.all(
      st(`SELECT credentials FROM accounts WHERE ${OWNER}`, host, user),
    );
    return row ? JSON.parse(row.credentials as string) : null;
  }

  async setCredentials(user: string, host: string, creds: Credentials): Promise<boolean> {
    return await this.#db.run(
      st(`UPDATE accounts SET credentials = ? WHERE ${OWNER}`, JSON.stringify(creds), host, user),
    ) === 1;
  }

  async deleteAccount(user: string, host: string): Promise<AccountRemoval | null> {
    return await this.#db.transaction(async (tx) => {
      const deleted = await tx.run(st(`DELETE FROM accounts WHERE ${OWNER}`, host, user));
      let archived = 0;
      for (const t of ACCOUNT_TABLES) {
        const n = await tx.run(st(`DELETE FROM ${t} WHERE ${OWNER}`, host, user));
        if (t === "archive_store") archived = n;
      }
      return deleted === 1 ? { archived } : null;
    });
  }

  async listAccounts(host: string): Promise<string[]> {
    const rows = await this.#db.all(st(
      `SELECT username FROM accounts WHERE host = ? ORDER BY username${this.#d.byteOrder}`,
      host,
    ));
    return rows.map((r) => r.username as string);
  }

  async getRoster(user: string, host: string): Promise<Roster> {
    // One statement: the version and the items of one snapshot (a change writes both at once).
    const rows = await this.#db.all(st(
      `SELECT v.version, i.contact, i.name, i.subscription, i.ask, i.groups
       FROM (SELECT CAST(? AS text) AS host, CAST(? AS text) AS username) o
       LEFT JOIN roster_versions v ON v.host = o.host AND v.username = o.username
       LEFT JOIN roster_items i ON i.host = o.host AND i.username = o.username
       ORDER BY i.contact${this.#d.byteOrder}`,
      host,
      user,
    ));
    return {
      version: Number(rows[0]?.version ?? 0),
      items: rows.filter((r) => r.contact !== null).map(toItem),
    };
  }

  async getRosterItem(user: string, host: string, contact: string): Promise<RosterItem | null> {
    const [row] = await this.#db.all(
      st(`SELECT * FROM roster_items WHERE ${OWNER} AND contact = ?`, host, user, contact),
    );
    return row ? toItem(row) : null;
  }

  async updateRosterItem(
    user: string,
    host: string,
    contact: string,
    change: (current: RosterItem | null) => RosterItem | null,
  ): Promise<RosterChange | null> {
    return await this.#db.transaction(async (tx) => {
      await tx.lock("roster", user, host);
      const [row] = await tx.all(
        st(`SELECT * FROM roster_items WHERE ${OWNER} AND contact = ?`, host, user, contact),
      );
      const item = change(row ? toItem(row) : null);
      if (!item) return null;
      await tx.run(st(
        `INSERT INTO roster_items (host, username, contact, name, subscription, ask, groups)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (host, username, contact) DO UPDATE SET
           name = excluded.name, subscription = excluded.subscription,
           ask = excluded.ask, groups = excluded.groups`,
        host,
        user,
        contact,
        item.name ?? null,
        item.subscription,
        this.#d.bool(item.ask),
        JSON.stringify(item.groups),
      ));
      return { item: { ...item, jid: contact }, version: await bump(tx, user, host) };
    });
  }

  async deleteRosterItem(
    user: string,
    host: string,
    contact: string,
  ): Promise<RosterChange | null> {
    return await this.#db.transaction(async (tx) => {
      await tx.lock("roster", user, host);
      const [row] = await tx.all(st(
        `DELETE FROM roster_items WHERE ${OWNER} AND contact = ?
         RETURNING contact, name, subscription, ask, groups`,
        host,
        user,
        contact,
      ));
      return row ? { item: toItem(row), version: await bump(tx, user, host) } : null;
    });
  }

  async addPendingIn(user: string, host: string, contact: string, stanza: string): Promise<void> {
    await this.#db.run(st(
      `INSERT INTO pending_in (host, username, contact, stanza) VALUES (?, ?, ?, ?)
       ON CONFLICT (host, username, contact) DO UPDATE SET stanza = excluded.stanza`,
      host,
      user,
      contact,
      stanza,
    ));
  }

  async removePendingIn(user: string, host: string, contact: string): Promise<boolean> {
    return await this.#db.run(
      st(`DELETE FROM pending_in WHERE ${OWNER} AND contact = ?`, host, user, contact),
    ) === 1;
  }

  async getPendingIn(user: string, host: string): Promise<PendingSubscription[]> {
    const rows = await this.#db.all(st(
      `SELECT contact, stanza FROM pending_in WHERE ${OWNER} ORDER BY contact${this.#d.byteOrder}`,
      host,
      user,
    ));
    return rows.map((r) => ({ contact: r.contact as string, stanza: r.stanza as string }));
  }

  async pushOffline(user: string, host: string, stanza: string, max: number): Promise<boolean> {
    return await this.#db.transaction(async (tx) => {
      await tx.lock("offline", user, host);
      const [{ n }] = await tx.all(
        st(`SELECT CAST(count(*) AS integer) AS n FROM offline WHERE ${OWNER}`, host, user),
      );
      if (Number(n) >= max) return false;
      await tx.run(st(
        "INSERT INTO offline (host, username, stanza, stored_at) VALUES (?, ?, ?, ?)",
        host,
        user,
        stanza,
        Date.now(),
      ));
      return true;
    });
  }

  async takeOffline(user: string, host: string): Promise<string[]> {
    // One statement: two nodes taking at once never both get the same message. RETURNING gives
    // rows in no particular order: the ids order them.
    const rows = await this.#db.all(
      st(`DELETE FROM offline WHERE ${OWNER} RETURNING id, stanza`, host, user),
    );
    return rows.sort((a, b) => Number(a.id) - Number(b.id)).map((r) => r.stanza as string);
  }

  async getBlocklist(user: string, host: string): Promise<string[]> {
    const rows = await this.#db.all(st(
      `SELECT jid FROM blocklist WHERE ${OWNER} ORDER BY jid${this.#d.byteOrder}`,
      host,
      user,
    ));
    return rows.map((r) => r.jid as string);
  }

  async block(user: string, host: string, jids: string[]): Promise<void> {
    await this.#batch(jids, (some) =>
      st(
        `INSERT INTO blocklist (host, username, jid) VALUES ${some.map(() => "(?, ?, ?)")}
         ON CONFLICT (host, username, jid) DO NOTHING`,
        ...some.flatMap((jid) => [host, user, jid]),
      ));
  }

  async unblock(user: string, host: string, jids: string[] | null): Promise<void> {
    if (jids === null) {
      await this.#db.run(st(`DELETE FROM blocklist WHERE ${OWNER}`, host, user));
      return;
    }
    await this.#batch(jids, (some) =>
      st(
        `DELETE FROM blocklist WHERE ${OWNER} AND jid IN (${some.map(() => "?")})`,
        host,
        user,
        ...some,
      ));
  }

  /**
   * Runs the statement made for each batch of distinct `values`: one statement, or a transaction
   * of several when there are more than BATCH values.
   */
  async #batch(values: string[], statement: (some: Param[]) => Statement): Promise<void> {
    const distinct = [...new Set(values)];
    const statements: Statement[] = [];
    for (let i = 0; i < distinct.length; i += BATCH) {
      statements.push(statement(distinct.slice(i, i + BATCH)));
    }
    if (statements.length === 1) await this.#db.run(statements[0]);
    else if (statements.length) {
      await this.#db.transaction(async (tx) => {
        for (const s of statements) await tx.run(s);
      });
    }
  }

  async clusterSecret(): Promise<Uint8Array> {
    // Add, then read in a statement of its own: the read's snapshot is taken after a concurrent
    // add by another node has committed (the add waits for it), so every node reads the winner's.
    const secrets = this.keyval<string>(STORES.secret);
    const candidate = randomBytes(SECRET_BYTES).toString("hex");
    await secrets.add(...CLUSTER_SECRET, candidate);
    const hex = await secrets.get(...CLUSTER_SECRET);
    if (typeof hex !== "string" || !/^([0-9a-f]{2})+$/.test(hex)) {
      throw new Error("the stored cluster secret is not hexadecimal");
    }
    return new Uint8Array(Buffer.from(hex, "hex"));
  }

  close(): Promise<void> {
    return this.#db.close();
  }
}

/** Bumps the account's roster version in a transaction; the new version. */
async function bump(tx: SqlTx, user: string, host: string): Promise<number> {
  const [row] = await tx.all(st(
    `INSERT INTO roster_versions (host, username, version) VALUES (?, ?, 1)
     ON CONFLICT (host, username) DO UPDATE SET version = roster_versions.version + 1
     RETURNING version`,
    host,
    user,
  ));
  return Number(row.version);
}

function toItem(r: Row): RosterItem {
  const item: RosterItem = {
    jid: r.contact as string,
    subscription: r.subscription as Subscription,
    ask: Boolean(r.ask),
    groups: JSON.parse(r.groups as string),
  };
  if (r.name !== null && r.name !== undefined) item.name = r.name as string;
  return item;
}
