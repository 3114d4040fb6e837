// The shared store on PostgreSQL (npm:postgres), for a cluster: every node reads and writes the
// same database, so it is the cluster's durable shared state. This is the SQL driver under the
// shared Store (sql_store.ts): connections, statements, errors, transactions and migrations.
//
// - Nothing is cached here: each read asks the database, so a write that has resolved on one node
//   is seen by the next read on any other.
// - Several nodes may change one account at once. Each read-modify-write is one transaction that
//   first takes a transaction-scoped advisory lock on (what, account) (SqlTx.lock); everything
//   else is a single statement, atomic by itself. Statements are prepared once per connection.
// - The pool connects on demand and reconnects by itself after an outage or a restart; meanwhile
//   every call rejects with StoreBusyError, which callers answer with a `wait` error.
import postgres, { type Sql, type TransactionSql } from "postgres";
import type { Row, SqlDriver, SqlTx, Statement, TxOptions } from "./driver.ts";
import { MIGRATIONS } from "./postgres_migrations.ts";
import { POSTGRES } from "./schema.ts";
import { SqlStore } from "./sql_store.ts";
import { StoreBusyError } from "./store.ts";

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

/** The Store on a PostgreSQL database, possibly shared by the nodes of a cluster. */
export class PostgresStore extends SqlStore {
  /** Connects to `url` with at most `pool` connections and brings the schema up to date. */
  static async open(url: string, pool: number): Promise<PostgresStore> {
    return new PostgresStore(await openPostgres(url, pool));
  }
}

/**
 * A driver on the database at `url` with a pool of its own (at most `pool` connections), the
 * schema brought up to date: the Store's, or another part's that must not wait behind the Store's
 * statements (uploaded files, src/upload/postgres_store.ts).
 */
export async function openPostgres(url: string, pool: number): Promise<SqlDriver> {
  const driver = new PostgresDriver(postgres(url, {
    max: pool,
    connect_timeout: CONNECT_TIMEOUT_S,
    onnotice: () => {},
    transform: { undefined: null },
    connection: { application_name: "parley", statement_timeout: STATEMENT_TIMEOUT_MS },
  }));
  try {
    await driver.migrate();
  } catch (e) {
    await driver.close();
    throw e;
  }
  return driver;
}

class PostgresDriver implements SqlDriver {
  readonly dialect = POSTGRES;
  #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  all(s: Statement): Promise<Row[]> {
    return this.#do((sql) => rows(sql, s));
  }

  run(s: Statement): Promise<number> {
    return this.#do(async (sql) => (await query(sql, s)).count);
  }

  /** A read-only repeatable-read transaction. */
  snapshot(list: Statement[]): Promise<Row[][]> {
    return this.#do((sql) =>
      sql.begin("isolation level repeatable read read only", async (tx) => {
        const results: Row[][] = [];
        for (const s of list) results.push(await rows(tx, s));
        return results;
      }) as Promise<Row[][]>
    );
  }

  transaction<T>(body: (tx: SqlTx) => Promise<T>, options: TxOptions = {}): Promise<T> {
    return this.#do((sql) =>
      sql.begin(async (tx) => {
        // Lazy: the commit returns before the WAL is flushed (within wal_writer_delay).
        if (options.lazy) await tx`SET LOCAL synchronous_commit = off`;
        return await body({
          all: (s) => rows(tx, s),
          run: async (s) => (await query(tx, s)).count,
          lock: (what, user, host) => lock(tx, what, user, host),
        });
      }) as Promise<T>
    );
  }

  /** Applies the migrations not yet recorded, one node at a time. */
  migrate(): Promise<void> {
    return this.#do((sql) =>
      sql.begin(async (tx) => {
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
      }) as Promise<void>
    );
  }

  close(): Promise<void> {
    return this.#do((sql) => sql.end({ timeout: 5 }));
  }

  async #do<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    try {
      return await fn(this.#sql);
    } catch (e) {
      throw storeError(e);
    }
  }
}

/**
 * Runs a statement written with `?` placeholders, numbered for PostgreSQL ($1, $2…), prepared
 * once per connection.
 */
function query(sql: Sql | TransactionSql, s: Statement) {
  let n = 0;
  return sql.unsafe(s.sql.replace(/\?/g, () => `$${++n}`), s.params, { prepare: true });
}

async function rows(sql: Sql | TransactionSql, s: Statement): Promise<Row[]> {
  return [...await query(sql, s)];
}

/**
 * Serializes one kind of read-modify-write on one account across every node until the end of the
 * transaction. Keys are hashed to 64 bits: a collision only makes two accounts wait on each other.
 */
async function lock(tx: TransactionSql, what: string, user: string, host: string): Promise<void> {
  await tx`SELECT pg_advisory_xact_lock(hashtextextended(${`${what}\n${host}\n${user}`}, 0))`;
}
