// The embedded store on node:sqlite. WAL journal with synchronous=FULL: a committed transaction
// survives a crash of the process or the machine, and readers (the `parley user` CLI) never block
// the server. node:sqlite is synchronous: every method turns a failure into a rejection, never a
// throw, so callers handle store errors in one way. A write never waits for another connection's
// lock inside SQLite (that wait would block the event loop): it is retried later instead.
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { dirname } from "node:path";
import { mkdirSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { MIGRATIONS } from "./sqlite_migrations.ts";
import {
  Archive,
  type ArchiveStore,
  KeyMap,
  KeyVal,
  type KeyValStore,
  type MapStore,
  type Row as ShapeRow,
  type ShapeDb,
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

type Row = Record<string, SQLInputValue>;

/**
 * How long a call may wait for another connection's lock (the CLI's, whose transactions take
 * milliseconds), retried with a growing pause between tries, the event loop free meanwhile; past
 * it the request gets a retry-later error (StoreBusyError).
 */
const BUSY_WAIT_MS = 1000;
const FIRST_RETRY_MS = 2;
const MAX_RETRY_MS = 50;
/** At start, before serving, waiting inside SQLite for the lock blocks no one. */
const OPEN_BUSY_TIMEOUT_MS = 5000;
const BUSY = /database is (locked|busy)|SQLITE_(BUSY|LOCKED)/;
const busy = (e: unknown) => BUSY.test(String((e as Error)?.message ?? e));

export class SqliteStore implements Store {
  #db: DatabaseSync;
  #stmts = new Map<string, StatementSync>();
  /** Set while calls wait for another connection's lock: later calls queue behind them. */
  #waiting: Promise<unknown> | undefined;

  constructor(path: string) {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    this.#db = new DatabaseSync(path);
    this.#db.exec(
      `PRAGMA busy_timeout=${OPEN_BUSY_TIMEOUT_MS}; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;`,
    );
    this.#migrate();
    this.#db.exec("PRAGMA busy_timeout=0");
  }

  #migrate(): void {
    const row = this.#db.prepare("PRAGMA user_version").get() as { user_version: number };
    for (let v = row.user_version; v < MIGRATIONS.length; v++) {
      this.#tx(() => {
        this.#db.exec(MIGRATIONS[v]);
        this.#db.exec(`PRAGMA user_version = ${v + 1}`);
      });
    }
  }

  /**
   * Runs a synchronous database call as a promise: what it throws rejects. When another
   * connection holds the lock, the call is tried again after a pause (later calls wait behind it,
   * so calls keep their order) until BUSY_WAIT_MS have passed, then rejects with StoreBusyError.
   */
  #do<T>(fn: () => T): Promise<T> {
    const deadline = performance.now() + BUSY_WAIT_MS;
    if (!this.#waiting) {
      try {
        return Promise.resolve(fn());
      } catch (e) {
        if (!busy(e)) return Promise.reject(e);
      }
    }
    const run = (this.#waiting ?? Promise.resolve()).then(() => retry(fn, deadline));
    const settled = run.catch(() => {});
    this.#waiting = settled;
    settled.then(() => {
      if (this.#waiting === settled) this.#waiting = undefined;
    });
    return run;
  }

  #q(sql: string): StatementSync {
    let s = this.#stmts.get(sql);
    if (!s) this.#stmts.set(sql, s = this.#db.prepare(sql));
    return s;
  }

  /** Reads on one snapshot of the database (a deferred transaction). */
  #read<T>(fn: () => T): T {
    this.#db.exec("BEGIN");
    try {
      return fn();
    } finally {
      if (this.#db.isTransaction) this.#db.exec("COMMIT");
    }
  }

  /** How the shapes run their statements: as every other call, busy errors retried or mapped. */
  #shapes: ShapeDb = {
    all: (s) => this.#do(() => this.#q(s.sql).all(...s.params) as ShapeRow[]),
    run: (s) => this.#do(() => Number(this.#q(s.sql).run(...s.params).changes)),
    snapshot: (list) =>
      this.#do(() =>
        this.#read(() => list.map((s) => this.#q(s.sql).all(...s.params) as ShapeRow[]))
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

  #tx<T>(fn: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const r = fn();
      this.#db.exec("COMMIT");
      return r;
    } catch (e) {
      // A failed COMMIT may already have ended the transaction; the first error is the one to report.
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  createAccount(user: string, host: string, creds: Credentials): Promise<boolean> {
    return this.#do(() =>
      this.#q(
        "INSERT OR IGNORE INTO accounts (host, username, credentials, created_at) VALUES (?, ?, ?, ?)",
      ).run(host, user, JSON.stringify(creds), Date.now()).changes === 1
    );
  }

  getCredentials(user: string, host: string): Promise<Credentials | null> {
    return this.#do(() => {
      const row = this.#q("SELECT credentials FROM accounts WHERE host = ? AND username = ?")
        .get(host, user) as Row | undefined;
      return row ? JSON.parse(row.credentials as string) : null;
    });
  }

  setCredentials(user: string, host: string, creds: Credentials): Promise<boolean> {
    return this.#do(() =>
      this.#q("UPDATE accounts SET credentials = ? WHERE host = ? AND username = ?")
        .run(JSON.stringify(creds), host, user).changes === 1
    );
  }

  deleteAccount(user: string, host: string): Promise<boolean> {
    return this.#do(() =>
      this.#tx(() => {
        const r = this.#q("DELETE FROM accounts WHERE host = ? AND username = ?").run(host, user);
        for (const t of ACCOUNT_TABLES) {
          this.#q(`DELETE FROM ${t} WHERE host = ? AND username = ?`).run(host, user);
        }
        return r.changes === 1;
      })
    );
  }

  listAccounts(host: string): Promise<string[]> {
    return this.#do(() =>
      (this.#q("SELECT username FROM accounts WHERE host = ? ORDER BY username").all(host) as Row[])
        .map((r) => r.username as string)
    );
  }

  getRoster(user: string, host: string): Promise<Roster> {
    return this.#do(() => {
      const rows = this.#q(
        "SELECT * FROM roster_items WHERE host = ? AND username = ? ORDER BY contact",
      ).all(host, user) as Row[];
      return { version: this.#version(user, host), items: rows.map(toItem) };
    });
  }

  #version(user: string, host: string): number {
    const row = this.#q("SELECT version FROM roster_versions WHERE host = ? AND username = ?")
      .get(host, user) as Row | undefined;
    return row ? row.version as number : 0;
  }

  #bump(user: string, host: string): number {
    const row = this.#q(
      `INSERT INTO roster_versions (host, username, version) VALUES (?, ?, 1)
       ON CONFLICT (host, username) DO UPDATE SET version = version + 1 RETURNING version`,
    ).get(host, user) as Row;
    return row.version as number;
  }

  getRosterItem(user: string, host: string, contact: string): Promise<RosterItem | null> {
    return this.#do(() => {
      const row = this.#q(
        "SELECT * FROM roster_items WHERE host = ? AND username = ? AND contact = ?",
      )
        .get(host, user, contact) as Row | undefined;
      return row ? toItem(row) : null;
    });
  }

  updateRosterItem(
    user: string,
    host: string,
    contact: string,
    change: (current: RosterItem | null) => RosterItem | null,
  ): Promise<RosterChange | null> {
    return this.#do(() =>
      this.#tx(() => {
        const row = this.#q(
          "SELECT * FROM roster_items WHERE host = ? AND username = ? AND contact = ?",
        )
          .get(host, user, contact) as Row | undefined;
        const item = change(row ? toItem(row) : null);
        if (!item) return null;
        this.#q(
          `INSERT OR REPLACE INTO roster_items (host, username, contact, name, subscription, ask, groups)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
        ).run(
          host,
          user,
          contact,
          item.name ?? null,
          item.subscription,
          item.ask ? 1 : 0,
          JSON.stringify(item.groups),
        );
        return { item: { ...item, jid: contact }, version: this.#bump(user, host) };
      })
    );
  }

  deleteRosterItem(user: string, host: string, contact: string): Promise<RosterChange | null> {
    return this.#do(() =>
      this.#tx(() => {
        const row = this.#q(
          "DELETE FROM roster_items WHERE host = ? AND username = ? AND contact = ? RETURNING *",
        ).get(host, user, contact) as Row | undefined;
        return row ? { item: toItem(row), version: this.#bump(user, host) } : null;
      })
    );
  }

  addPendingIn(user: string, host: string, contact: string, stanza: string): Promise<void> {
    return this.#do(() => {
      this.#q(
        "INSERT OR REPLACE INTO pending_in (host, username, contact, stanza) VALUES (?, ?, ?, ?)",
      ).run(host, user, contact, stanza);
    });
  }

  removePendingIn(user: string, host: string, contact: string): Promise<boolean> {
    return this.#do(() =>
      this.#q("DELETE FROM pending_in WHERE host = ? AND username = ? AND contact = ?")
        .run(host, user, contact).changes === 1
    );
  }

  getPendingIn(user: string, host: string): Promise<PendingSubscription[]> {
    return this.#do(() =>
      (this.#q("SELECT contact, stanza FROM pending_in WHERE host = ? AND username = ?")
        .all(host, user) as Row[]).map((r) => ({
          contact: r.contact as string,
          stanza: r.stanza as string,
        }))
    );
  }

  pushOffline(user: string, host: string, stanza: string, max: number): Promise<boolean> {
    return this.#do(() =>
      this.#tx(() => {
        const row = this.#q("SELECT count(*) AS n FROM offline WHERE host = ? AND username = ?")
          .get(host, user) as Row;
        if ((row.n as number) >= max) return false;
        this.#q("INSERT INTO offline (host, username, stanza, stored_at) VALUES (?, ?, ?, ?)")
          .run(host, user, stanza, Date.now());
        return true;
      })
    );
  }

  takeOffline(user: string, host: string): Promise<string[]> {
    return this.#do(() =>
      this.#tx(() => {
        const rows = this.#q(
          "SELECT stanza FROM offline WHERE host = ? AND username = ? ORDER BY id",
        )
          .all(host, user) as Row[];
        if (rows.length) {
          this.#q("DELETE FROM offline WHERE host = ? AND username = ?").run(host, user);
        }
        return rows.map((r) => r.stanza as string);
      })
    );
  }

  getVcard(user: string, host: string): Promise<string | null> {
    return this.#do(() => {
      const row = this.#q("SELECT vcard FROM vcards WHERE host = ? AND username = ?")
        .get(host, user) as Row | undefined;
      return row ? row.vcard as string : null;
    });
  }

  setVcard(user: string, host: string, vcard: string): Promise<void> {
    return this.#do(() => {
      this.#q("INSERT OR REPLACE INTO vcards (host, username, vcard) VALUES (?, ?, ?)")
        .run(host, user, vcard);
    });
  }

  getPrivate(user: string, host: string, key: string): Promise<string | null> {
    return this.#do(() => {
      const row = this.#q(
        "SELECT xml FROM private_storage WHERE host = ? AND username = ? AND key = ?",
      )
        .get(host, user, key) as Row | undefined;
      return row ? row.xml as string : null;
    });
  }

  setPrivate(user: string, host: string, key: string, xml: string, max: number): Promise<boolean> {
    return this.#do(() =>
      this.#tx(() => {
        const replaced = this.#q(
          "UPDATE private_storage SET xml = ? WHERE host = ? AND username = ? AND key = ?",
        ).run(xml, host, user, key).changes === 1;
        if (replaced) return true;
        const row = this.#q(
          "SELECT count(*) AS n FROM private_storage WHERE host = ? AND username = ?",
        )
          .get(host, user) as Row;
        if ((row.n as number) >= max) return false;
        this.#q("INSERT INTO private_storage (host, username, key, xml) VALUES (?, ?, ?, ?)")
          .run(host, user, key, xml);
        return true;
      })
    );
  }

  getBlocklist(user: string, host: string): Promise<string[]> {
    return this.#do(() =>
      (this.#q("SELECT jid FROM blocklist WHERE host = ? AND username = ? ORDER BY jid")
        .all(host, user) as Row[]).map((r) => r.jid as string)
    );
  }

  block(user: string, host: string, jids: string[]): Promise<void> {
    return this.#do(() =>
      this.#tx(() => {
        const s = this.#q("INSERT OR IGNORE INTO blocklist (host, username, jid) VALUES (?, ?, ?)");
        for (const j of jids) s.run(host, user, j);
      })
    );
  }

  unblock(user: string, host: string, jids: string[] | null): Promise<void> {
    return this.#do(() =>
      this.#tx(() => {
        if (jids === null) {
          this.#q("DELETE FROM blocklist WHERE host = ? AND username = ?").run(host, user);
          return;
        }
        const s = this.#q("DELETE FROM blocklist WHERE host = ? AND username = ? AND jid = ?");
        for (const j of jids) s.run(host, user, j);
      })
    );
  }

  loadRooms(service: string): Promise<StoredRoom[]> {
    return this.#do(() =>
      (this.#q("SELECT room, state FROM muc_rooms WHERE service = ? ORDER BY room")
        .all(service) as Row[]).map((r) => ({ room: r.room as string, state: r.state as string }))
    );
  }

  loadRoom(service: string, room: string): Promise<string | null> {
    return this.#do(() => {
      const row = this.#q("SELECT state FROM muc_rooms WHERE service = ? AND room = ?")
        .get(service, room) as Row | undefined;
      return row ? row.state as string : null;
    });
  }

  saveRoom(service: string, room: string, state: string): Promise<void> {
    return this.#do(() => {
      this.#q("INSERT OR REPLACE INTO muc_rooms (service, room, state) VALUES (?, ?, ?)")
        .run(service, room, state);
    });
  }

  deleteRoom(service: string, room: string): Promise<void> {
    return this.#do(() => {
      this.#q("DELETE FROM muc_rooms WHERE service = ? AND room = ?").run(service, room);
    });
  }

  clusterSecret(): Promise<Uint8Array> {
    return this.#do(() => {
      this.#q("INSERT OR IGNORE INTO secrets (name, value) VALUES ('cluster', ?)")
        .run(new Uint8Array(randomBytes(SECRET_BYTES)));
      const row = this.#q("SELECT value FROM secrets WHERE name = 'cluster'").get() as Row;
      return new Uint8Array(row.value as Uint8Array);
    });
  }

  close(): Promise<void> {
    return this.#do(() => {
      if (!this.#db.isOpen) return;
      try {
        this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      } finally {
        this.#db.close();
      }
    });
  }
}

/** Tries `fn` until it is not refused for another connection's lock, or until `deadline`. */
async function retry<T>(fn: () => T, deadline: number): Promise<T> {
  for (let pause = FIRST_RETRY_MS;; pause = Math.min(2 * pause, MAX_RETRY_MS)) {
    try {
      return fn();
    } catch (e) {
      if (!busy(e)) throw e;
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new StoreBusyError(String((e as Error)?.message ?? e), { cause: e });
      }
      await new Promise((r) => setTimeout(r, Math.min(pause, left)));
    }
  }
}

function toItem(r: Row): RosterItem {
  return {
    jid: r.contact as string,
    name: (r.name as string | null) ?? undefined,
    subscription: r.subscription as Subscription,
    ask: r.ask === 1,
    groups: JSON.parse(r.groups as string),
  };
}
