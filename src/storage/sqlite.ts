// The embedded store on node:sqlite: the SQL driver under the shared Store (sql_store.ts). WAL
// journal with synchronous=FULL: a committed transaction survives a crash of the process or the
// machine, and readers (the `parley user` CLI) never block the server. node:sqlite is synchronous
// and this is one connection: every call turns a failure into a rejection, never a throw, so
// callers handle store errors in one way. A write never waits for another connection's lock
// inside SQLite (that wait would block the event loop): it is retried later instead. While a
// transaction is open (its body may await between statements), every other call waits its turn,
// so no statement of another call ever runs inside it.
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { dirname } from "node:path";
import { mkdirSync } from "node:fs";
import type { Row, SqlDriver, SqlTx, Statement, TxOptions } from "./driver.ts";
import { MIGRATIONS } from "./sqlite_migrations.ts";
import { SQLITE } from "./schema.ts";
import { SqlStore } from "./sql_store.ts";
import { StoreBusyError } from "./store.ts";
import type { CheckpointerMessage, CheckpointerReport } from "./sqlite_checkpointer.ts";
import { logger } from "../log/logger.ts";

const log = logger("store");

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

/** The Store on an SQLite file (created with its directory when missing), or ":memory:". */
export class SqliteStore extends SqlStore {
  constructor(path: string) {
    super(new SqliteDriver(path));
  }
}

class SqliteDriver implements SqlDriver {
  readonly dialect = SQLITE;
  #db: DatabaseSync;
  #stmts = new Map<string, StatementSync>();
  /**
   * Set while a call holds the connection (an open transaction) or waits for another
   * connection's lock: later calls queue behind it, in order.
   */
  #tail: Promise<unknown> | undefined;
  /** Checkpoints the log on another thread (sqlite_checkpointer.ts); none in memory. */
  #checkpointer: Worker | undefined;

  constructor(path: string) {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    this.#db = new DatabaseSync(path);
    this.#db.exec(
      `PRAGMA busy_timeout=${OPEN_BUSY_TIMEOUT_MS}; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;`,
    );
    this.#migrate();
    this.#db.exec("PRAGMA busy_timeout=0");
    if (path !== ":memory:") this.#checkpointer = startCheckpointer(path, this.#db);
  }

  #migrate(): void {
    const row = this.#db.prepare("PRAGMA user_version").get() as { user_version: number };
    for (let v = row.user_version; v < MIGRATIONS.length; v++) {
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        this.#db.exec(MIGRATIONS[v]);
        this.#db.exec(`PRAGMA user_version = ${v + 1}`);
        this.#db.exec("COMMIT");
      } catch (e) {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
        throw e;
      }
    }
  }

  all(s: Statement): Promise<Row[]> {
    return this.#do(() => this.#all(s));
  }

  run(s: Statement): Promise<number> {
    return this.#do(() => this.#run(s));
  }

  /** Reads on one snapshot of the database (a deferred transaction). */
  snapshot(list: Statement[]): Promise<Row[][]> {
    return this.#do(() => {
      this.#db.exec("BEGIN");
      try {
        return list.map((s) => this.#all(s));
      } finally {
        if (this.#db.isTransaction) this.#db.exec("COMMIT");
      }
    });
  }

  /**
   * A transaction holding the write lock from its start (BEGIN IMMEDIATE), which serializes it
   * with every other connection's writes; other calls on this connection wait until it ends.
   * Refused for another connection's lock, it is tried again as any call is (#do).
   */
  transaction<T>(body: (tx: SqlTx) => Promise<T>, options: TxOptions = {}): Promise<T> {
    const deadline = performance.now() + BUSY_WAIT_MS;
    return this.#queue(() => retry(() => this.#transaction(body, options), deadline));
  }

  async #transaction<T>(body: (tx: SqlTx) => Promise<T>, options: TxOptions): Promise<T> {
    // Lazy: no fsync at COMMIT; the WAL is written, so a crash of the process loses nothing, and
    // the next commit that waits for the disk makes it durable with its own. Every other one
    // waits for it (set again each time: nothing left behind decides it).
    this.#db.exec(options.lazy ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL");
    try {
      return await this.#transactionBody(body);
    } finally {
      // Not inside a transaction left open by a failed ROLLBACK (SQLite refuses it there).
      if (options.lazy && this.#db.isOpen && !this.#db.isTransaction) {
        this.#db.exec("PRAGMA synchronous=FULL");
      }
    }
  }

  async #transactionBody<T>(body: (tx: SqlTx) => Promise<T>): Promise<T> {
    this.#db.exec("BEGIN IMMEDIATE");
    let open = true;
    const inside = <R>(fn: () => R) =>
      open ? now(fn) : Promise.reject(new Error("the transaction has ended"));
    const tx: SqlTx = {
      all: (s) => inside(() => this.#all(s)),
      run: (s) => inside(() => this.#run(s)),
      lock: () => inside(() => {}),
    };
    try {
      const result = await body(tx);
      this.#db.exec("COMMIT");
      return result;
    } catch (e) {
      // A failed COMMIT may already have ended the transaction; the first error is the one to report.
      if (this.#db.isOpen && this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw e;
    } finally {
      open = false;
    }
  }

  close(): Promise<void> {
    this.#checkpointer?.postMessage({ stop: true } satisfies CheckpointerMessage);
    this.#checkpointer = undefined;
    return this.#do(() => {
      if (!this.#db.isOpen) return;
      try {
        this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      } finally {
        this.#stmts.clear();
        this.#db.close();
      }
    });
  }

  #all(s: Statement): Row[] {
    return this.#q(s.sql).all(...s.params as SQLInputValue[]);
  }

  #run(s: Statement): number {
    return Number(this.#q(s.sql).run(...s.params as SQLInputValue[]).changes);
  }

  /** The statement prepared once for `sql`. */
  #q(sql: string): StatementSync {
    let s = this.#stmts.get(sql);
    if (!s) this.#stmts.set(sql, s = this.#db.prepare(sql));
    return s;
  }

  /**
   * Runs a synchronous database call as a promise: at once when no call holds or waits for the
   * connection, else in turn behind them. When another connection holds the lock, the call is tried
   * again after a pause (later calls wait behind it, so calls keep their order) until BUSY_WAIT_MS
   * have passed, then rejects with StoreBusyError.
   */
  #do<T>(fn: () => T): Promise<T> {
    const deadline = performance.now() + BUSY_WAIT_MS;
    if (!this.#tail) {
      try {
        return Promise.resolve(fn());
      } catch (e) {
        if (!busy(e)) return Promise.reject(e);
      }
    }
    return this.#queue(() => retry(fn, deadline));
  }

  /** Runs `task` once every call queued before it has settled; later calls queue behind it. */
  #queue<T>(task: () => Promise<T>): Promise<T> {
    const run = (this.#tail ?? Promise.resolve()).then(task);
    const settled = run.then(() => {}, () => {});
    this.#tail = settled;
    settled.then(() => {
      if (this.#tail === settled) this.#tail = undefined;
    });
    return run;
  }
}

/**
 * Hands the log's checkpoints to a worker thread: the fsync of copying the log into the database
 * file no longer happens on the event loop, inside whichever commit crossed the threshold.
 */
function startCheckpointer(path: string, db: DatabaseSync): Worker {
  db.exec("PRAGMA wal_autocheckpoint=0");
  const worker = new Worker(new URL("./sqlite_checkpointer.ts", import.meta.url), {
    type: "module",
  });
  worker.onmessage = (e: MessageEvent<CheckpointerReport>) => {
    log.warn("checkpointing {path} failed: {error}", { path, error: e.data.error });
  };
  // A worker that cannot run leaves the checkpoints to the connection's commits, as SQLite's
  // default does.
  worker.onerror = (e) => {
    e.preventDefault();
    log.error("the checkpointer of {path} failed: {error}", { path, error: e.message });
    if (db.isOpen) db.exec("PRAGMA wal_autocheckpoint=1000");
  };
  worker.postMessage({ path } satisfies CheckpointerMessage);
  return worker;
}

/** What `fn` returns as a promise, or what it throws as a rejection. */
function now<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Tries `fn` until it is not refused for another connection's lock, or until `deadline`. */
async function retry<T>(fn: () => T | Promise<T>, deadline: number): Promise<T> {
  for (let pause = FIRST_RETRY_MS;; pause = Math.min(2 * pause, MAX_RETRY_MS)) {
    try {
      return await fn();
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
