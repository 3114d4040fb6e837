// The shared store on PostgreSQL (npm:postgres), for a cluster: every node reads and writes the
// same database, so it is the cluster's durable shared state.
//
// - Nothing is cached here: each read asks the database, so a write that has resolved on one node
//   is seen by the next read on any other.
// - Several nodes may change one account at once. Each read-modify-write is one transaction that
//   first takes a transaction-scoped advisory lock on (what, account): a roster change and its
//   version, the offline limit, the private-storage cap. Other writes are single statements that
//   are atomic by themselves (upserts, deletes that report what they removed). The generic shapes
//   (shapes.ts) write with such single statements only; an archive query reads one snapshot.
// - The pool connects on demand and reconnects by itself after an outage or a restart; meanwhile
//   every call rejects with StoreBusyError, which callers answer with a `wait` error.
import postgres, { type Sql, type TransactionSql } from "postgres";
import { randomBytes } from "node:crypto";
import { MIGRATIONS } from "./postgres_migrations.ts";
import {
  Archive,
  type ArchiveStore,
  KeyMap,
  KeyVal,
  type KeyValStore,
  type MapStore,
  type Row as ShapeRow,
  type ShapeDb,
  type Statement,
} from "./shapes.ts";
import {
  ACCOUNT_TABLES,
  type Credentials,
  type PendingSubscription,
  type Roster,
  type RosterChange,
  type RosterItem,
  SECRET_BYTES,
  type Store,
  StoreBusyError,
  type StoredRoom,
  type Subscription,
} from "./store.ts";

type Row = Record<string, unknown>;

/** Held while migrating, so that nodes starting at once migrate one after another. */
const MIGRATION_LOCK = 0x7061726c6579; // "parley"

/** Seconds to wait for a connection; past it the request gets a retry-later error. */
const CONNECT_TIMEOUT_S = 5;
/** Longest a statement may run (waits for locks included) before it is cancelled. */
const STATEMENT_TIMEOUT_MS = 10_000;

/** Errors of the connection (not of the query): the database is down, restarting, overloaded. */
const CONNECTION_ERRORS = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);
/**
 * SQLSTATEs worth retrying later: connection exceptions (class 08), too many connections, the
 * server shutting down or starting, insufficient resources, a statement timeout, a deadlock.
 */
const BUSY_STATE = /^(08|53|57P0[1-3]$|57014$|40001$|40P01$|55P03$)/;

function storeError(e: unknown): unknown {
  const code = (e as { code?: unknown })?.code;
  if (typeof code !== "string") return e;
  if (!CONNECTION_ERRORS.has(code) && !BUSY_STATE.test(code)) return e;
  return new StoreBusyError(`storage unavailable: ${(e as Error).message}`, { cause: e });
}

export class PostgresStore implements Store {
  #sql: Sql;

  private constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Connects to `url` with at most `pool` connections and brings the schema up to date. */
  static async open(url: string, pool: number): Promise<PostgresStore> {
    const store = new PostgresStore(postgres(url, {
      max: pool,
      connect_timeout: CONNECT_TIMEOUT_S,
      onnotice: () => {},
      transform: { undefined: null },
      connection: { application_name: "parley", statement_timeout: STATEMENT_TIMEOUT_MS },
    }));
    try {
      await store.#tx(migrate);
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }

  async #do<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    try {
      return await fn(this.#sql);
    } catch (e) {
      throw storeError(e);
    }
  }

  #tx<T>(fn: (tx: TransactionSql) => Promise<T>): Promise<T> {
    return this.#do((sql) => sql.begin(fn) as Promise<T>);
  }

  /**
   * How the shapes run their statements: `?` placeholders numbered for PostgreSQL; a snapshot is a
   * read-only repeatable-read transaction.
   */
  #shapes: ShapeDb = {
    all: (s) => this.#do(async (sql) => [...await sql.unsafe(...numbered(s))] as ShapeRow[]),
    run: (s) => this.#do(async (sql) => (await sql.unsafe(...numbered(s))).count),
    snapshot: (list) =>
      this.#do((sql) =>
        sql.begin("isolation level repeatable read read only", async (tx) => {
          const results: ShapeRow[][] = [];
          for (const s of list) results.push([...await tx.unsafe(...numbered(s))] as ShapeRow[]);
          return results;
        }) as Promise<ShapeRow[][]>
      ),
  };

  keyval<T = unknown>(name: string): KeyValStore<T> {
    return new KeyVal<T>(this.#shapes, name);
  }

  map<T = unknown>(name: string): MapStore<T> {
    return new KeyMap<T>(this.#shapes, name);
  }

  archive(name: string): ArchiveStore {
    return new Archive(this.#shapes, name);
  }

  async createAccount(user: string, host: string, creds: Credentials): Promise<boolean> {
    const r = await this.#do((sql) =>
      sql`INSERT INTO accounts (host, username, credentials, created_at)
          VALUES (${host}, ${user}, ${JSON.stringify(creds)}, ${Date.now()})
          ON CONFLICT DO NOTHING`
    );
    return r.count === 1;
  }

  async getCredentials(user: string, host: string): Promise<Credentials | null> {
    const [row] = await this.#do((sql) =>
      sql`SELECT credentials FROM accounts WHERE host = ${host} AND username = ${user}`
    );
    return row ? JSON.parse(row.credentials) : null;
  }

  async setCredentials(user: string, host: string, creds: Credentials): Promise<boolean> {
    const r = await this.#do((sql) =>
      sql`UPDATE accounts SET credentials = ${JSON.stringify(creds)}
          WHERE host = ${host} AND username = ${user}`
    );
    return r.count === 1;
  }

  deleteAccount(user: string, host: string): Promise<boolean> {
    return this.#tx(async (tx) => {
      const r = await tx`DELETE FROM accounts WHERE host = ${host} AND username = ${user}`;
      for (const t of ACCOUNT_TABLES) {
        await tx`DELETE FROM ${tx(t)} WHERE host = ${host} AND username = ${user}`;
      }
      return r.count === 1;
    });
  }

  async listAccounts(host: string): Promise<string[]> {
    const rows = await this.#do((sql) =>
      sql`SELECT username FROM accounts WHERE host = ${host} ORDER BY username COLLATE "C"`
    );
    return rows.map((r) => r.username);
  }

  getRoster(user: string, host: string): Promise<Roster> {
    return this.#do(async (sql) => {
      // The version first: the items read after it are at least as new, so a client never keeps
      // a version whose change it has not seen.
      const version = await rosterVersion(sql, user, host);
      const rows = await sql`SELECT * FROM roster_items WHERE host = ${host} AND username = ${user}
                             ORDER BY contact COLLATE "C"`;
      return { version, items: rows.map(toItem) };
    });
  }

  async getRosterItem(user: string, host: string, contact: string): Promise<RosterItem | null> {
    const [row] = await this.#do((sql) =>
      sql`SELECT * FROM roster_items
          WHERE host = ${host} AND username = ${user} AND contact = ${contact}`
    );
    return row ? toItem(row) : null;
  }

  updateRosterItem(
    user: string,
    host: string,
    contact: string,
    change: (current: RosterItem | null) => RosterItem | null,
  ): Promise<RosterChange | null> {
    return this.#tx(async (tx) => {
      await lock(tx, "roster", user, host);
      const [row] = await tx`SELECT * FROM roster_items
                             WHERE host = ${host} AND username = ${user} AND contact = ${contact}`;
      const item = change(row ? toItem(row) : null);
      if (!item) return null;
      const values = {
        host,
        username: user,
        contact,
        name: item.name ?? null,
        subscription: item.subscription,
        ask: item.ask,
        groups: JSON.stringify(item.groups),
      };
      await tx`INSERT INTO roster_items ${tx(values)}
               ON CONFLICT (host, username, contact) DO UPDATE SET
                 name = excluded.name, subscription = excluded.subscription,
                 ask = excluded.ask, groups = excluded.groups`;
      return { item: { ...item, jid: contact }, version: await bump(tx, user, host) };
    });
  }

  deleteRosterItem(user: string, host: string, contact: string): Promise<RosterChange | null> {
    return this.#tx(async (tx) => {
      await lock(tx, "roster", user, host);
      const [row] = await tx`DELETE FROM roster_items
                             WHERE host = ${host} AND username = ${user} AND contact = ${contact}
                             RETURNING *`;
      return row ? { item: toItem(row), version: await bump(tx, user, host) } : null;
    });
  }

  async addPendingIn(user: string, host: string, contact: string, stanza: string): Promise<void> {
    await this.#do((sql) =>
      sql`INSERT INTO pending_in (host, username, contact, stanza)
          VALUES (${host}, ${user}, ${contact}, ${stanza})
          ON CONFLICT (host, username, contact) DO UPDATE SET stanza = excluded.stanza`
    );
  }

  async removePendingIn(user: string, host: string, contact: string): Promise<boolean> {
    const r = await this.#do((sql) =>
      sql`DELETE FROM pending_in
          WHERE host = ${host} AND username = ${user} AND contact = ${contact}`
    );
    return r.count === 1;
  }

  async getPendingIn(user: string, host: string): Promise<PendingSubscription[]> {
    const rows = await this.#do((sql) =>
      sql`SELECT contact, stanza FROM pending_in WHERE host = ${host} AND username = ${user}
          ORDER BY contact COLLATE "C"`
    );
    return rows.map((r) => ({ contact: r.contact, stanza: r.stanza }));
  }

  pushOffline(user: string, host: string, stanza: string, max: number): Promise<boolean> {
    return this.#tx(async (tx) => {
      await lock(tx, "offline", user, host);
      const [{ n }] = await tx`SELECT count(*)::int AS n FROM offline
                               WHERE host = ${host} AND username = ${user}`;
      if (n >= max) return false;
      await tx`INSERT INTO offline (host, username, stanza, stored_at)
               VALUES (${host}, ${user}, ${stanza}, ${Date.now()})`;
      return true;
    });
  }

  async takeOffline(user: string, host: string): Promise<string[]> {
    // One statement: two nodes taking at once never both get the same message.
    const rows = await this.#do((sql) =>
      sql`WITH taken AS (
            DELETE FROM offline WHERE host = ${host} AND username = ${user} RETURNING id, stanza)
          SELECT stanza FROM taken ORDER BY id`
    );
    return rows.map((r) => r.stanza);
  }

  async getVcard(user: string, host: string): Promise<string | null> {
    const [row] = await this.#do((sql) =>
      sql`SELECT vcard FROM vcards WHERE host = ${host} AND username = ${user}`
    );
    return row ? row.vcard : null;
  }

  async setVcard(user: string, host: string, vcard: string): Promise<void> {
    await this.#do((sql) =>
      sql`INSERT INTO vcards (host, username, vcard) VALUES (${host}, ${user}, ${vcard})
          ON CONFLICT (host, username) DO UPDATE SET vcard = excluded.vcard`
    );
  }

  async getPrivate(user: string, host: string, key: string): Promise<string | null> {
    const [row] = await this.#do((sql) =>
      sql`SELECT xml FROM private_storage
          WHERE host = ${host} AND username = ${user} AND key = ${key}`
    );
    return row ? row.xml : null;
  }

  setPrivate(user: string, host: string, key: string, xml: string, max: number): Promise<boolean> {
    return this.#tx(async (tx) => {
      await lock(tx, "private", user, host);
      const replaced = await tx`UPDATE private_storage SET xml = ${xml}
                                WHERE host = ${host} AND username = ${user} AND key = ${key}`;
      if (replaced.count === 1) return true;
      const [{ n }] = await tx`SELECT count(*)::int AS n FROM private_storage
                               WHERE host = ${host} AND username = ${user}`;
      if (n >= max) return false;
      await tx`INSERT INTO private_storage (host, username, key, xml)
               VALUES (${host}, ${user}, ${key}, ${xml})`;
      return true;
    });
  }

  async getBlocklist(user: string, host: string): Promise<string[]> {
    const rows = await this.#do((sql) =>
      sql`SELECT jid FROM blocklist WHERE host = ${host} AND username = ${user}
          ORDER BY jid COLLATE "C"`
    );
    return rows.map((r) => r.jid);
  }

  async block(user: string, host: string, jids: string[]): Promise<void> {
    if (!jids.length) return;
    const rows = jids.map((jid) => ({ host, username: user, jid }));
    await this.#do((sql) => sql`INSERT INTO blocklist ${sql(rows)} ON CONFLICT DO NOTHING`);
  }

  async unblock(user: string, host: string, jids: string[] | null): Promise<void> {
    if (jids?.length === 0) return;
    await this.#do((sql) =>
      jids === null
        ? sql`DELETE FROM blocklist WHERE host = ${host} AND username = ${user}`
        : sql`DELETE FROM blocklist WHERE host = ${host} AND username = ${user}
              AND jid IN ${sql(jids)}`
    );
  }

  async loadRooms(service: string): Promise<StoredRoom[]> {
    const rows = await this.#do((sql) =>
      sql`SELECT room, state FROM muc_rooms WHERE service = ${service} ORDER BY room COLLATE "C"`
    );
    return rows.map((r) => ({ room: r.room, state: r.state }));
  }

  async loadRoom(service: string, room: string): Promise<string | null> {
    const rows = await this.#do((sql) =>
      sql`SELECT state FROM muc_rooms WHERE service = ${service} AND room = ${room}`
    );
    return rows.length ? rows[0].state : null;
  }

  async saveRoom(service: string, room: string, state: string): Promise<void> {
    await this.#do((sql) =>
      sql`INSERT INTO muc_rooms (service, room, state) VALUES (${service}, ${room}, ${state})
          ON CONFLICT (service, room) DO UPDATE SET state = excluded.state`
    );
  }

  async deleteRoom(service: string, room: string): Promise<void> {
    await this.#do((sql) =>
      sql`DELETE FROM muc_rooms WHERE service = ${service} AND room = ${room}`
    );
  }

  clusterSecret(): Promise<Uint8Array> {
    // Two statements, not one: the read needs a snapshot taken after a concurrent insert by
    // another node has committed (the insert waits for it), so every node gets the winner's.
    return this.#do(async (sql) => {
      const candidate = new Uint8Array(randomBytes(SECRET_BYTES));
      await sql`INSERT INTO secrets (name, value) VALUES ('cluster', ${candidate})
                ON CONFLICT DO NOTHING`;
      const [row] = await sql`SELECT value FROM secrets WHERE name = 'cluster'`;
      return new Uint8Array(row.value);
    });
  }

  close(): Promise<void> {
    return this.#do((sql) => sql.end({ timeout: 5 }));
  }
}

/** A statement written with `?` placeholders, as npm:postgres's unsafe() takes it ($1, $2…). */
function numbered(s: Statement): [string, Statement["params"]] {
  let n = 0;
  return [s.sql.replace(/\?/g, () => `$${++n}`), s.params];
}

/** Applies the migrations not yet recorded, one node at a time. */
async function migrate(tx: TransactionSql): Promise<void> {
  await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK}::bigint)`;
  await tx`CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)`;
  const [row] = await tx`SELECT version FROM schema_version`;
  const from: number = row?.version ?? 0;
  if (from > MIGRATIONS.length) {
    throw new Error(
      `the database schema (version ${from}) is newer than this Parley's (${MIGRATIONS.length})`,
    );
  }
  for (let v = from; v < MIGRATIONS.length; v++) await tx.unsafe(MIGRATIONS[v]);
  if (!row) await tx`INSERT INTO schema_version (version) VALUES (${MIGRATIONS.length})`;
  else if (from < MIGRATIONS.length) {
    await tx`UPDATE schema_version SET version = ${MIGRATIONS.length}`;
  }
}

/**
 * Serializes one kind of read-modify-write on one account across every node until the end of the
 * transaction. Keys are hashed to 64 bits: a collision only makes two accounts wait on each other.
 */
async function lock(tx: TransactionSql, what: string, user: string, host: string): Promise<void> {
  await tx`SELECT pg_advisory_xact_lock(hashtextextended(${`${what}\n${host}\n${user}`}, 0))`;
}

async function rosterVersion(sql: Sql, user: string, host: string): Promise<number> {
  const [row] = await sql`SELECT version FROM roster_versions
                          WHERE host = ${host} AND username = ${user}`;
  return row ? row.version : 0;
}

async function bump(tx: TransactionSql, user: string, host: string): Promise<number> {
  const [row] = await tx`INSERT INTO roster_versions (host, username, version)
                         VALUES (${host}, ${user}, 1)
                         ON CONFLICT (host, username)
                         DO UPDATE SET version = roster_versions.version + 1
                         RETURNING version`;
  return row.version;
}

function toItem(r: Row): RosterItem {
  return {
    jid: r.contact as string,
    name: (r.name as string | null) ?? undefined,
    subscription: r.subscription as Subscription,
    ask: r.ask as boolean,
    groups: JSON.parse(r.groups as string),
  };
}
