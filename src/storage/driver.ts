// What an SQL backend provides to the code written once above it (the Store in sql_store.ts, the
// shapes in shapes.ts): running statements written with `?` placeholders in SQL both PostgreSQL
// and SQLite accept, its errors already mapped (StoreBusyError when worth retrying later), reads
// on one snapshot, and transactions that serialize a read-modify-write across every writer.

/** A statement parameter; bytes are a PostgreSQL bytea or an SQLite BLOB. */
export type Param = string | number | boolean | null | Uint8Array;
export interface Statement {
  sql: string;
  params: Param[];
}
export type Row = Record<string, unknown>;

/** A statement with its parameters. */
export const st = (sql: string, ...params: Param[]): Statement => ({ sql, params });

/** Runs statements one at a time. */
export interface SqlRunner {
  /** Runs one statement; the rows it returns. */
  all(s: Statement): Promise<Row[]>;
  /** Runs one statement; how many rows it changed. */
  run(s: Statement): Promise<number>;
}

/** The statements of one transaction. */
export interface SqlTx extends SqlRunner {
  /**
   * Serializes one kind of read-modify-write (`what`) on one owner until the transaction ends,
   * across every connection and node: an advisory lock in PostgreSQL; nothing in SQLite, where a
   * transaction holds the database's only write lock from its start (BEGIN IMMEDIATE).
   */
  lock(what: string, user: string, host: string): Promise<void>;
}

export interface SqlDriver extends SqlRunner {
  /** How this backend's SQL differs (schema.ts). */
  readonly dialect: Dialect;
  /** Runs read-only statements on one snapshot of the database; the rows of each. */
  snapshot(s: Statement[]): Promise<Row[][]>;
  /**
   * Runs `body` in one transaction: committed when it resolves, rolled back when it rejects. The
   * body runs its statements on `tx` only (never on the driver, which may wait for it), and may
   * run more than once when the database was busy, so it has no other side effects.
   */
  transaction<T>(body: (tx: SqlTx) => Promise<T>, options?: TxOptions): Promise<T>;
  close(): Promise<void>;
}

export interface TxOptions {
  /**
   * Committed without waiting for the disk (writes that are many and small, such as archive
   * entries): it survives a crash of this process at once (SQLite in WAL mode, synchronous=NORMAL)
   * or of the database server within a fraction of a second (PostgreSQL, synchronous_commit off),
   * but a power loss of the machine right after may take it back (never half of it).
   */
  lazy?: boolean;
}

/** A backend's column types (the shape tables were described with these alone). */
export interface ColumnTypes {
  /** Text compared and sorted byte-wise. */
  text: string;
  bigint: string;
  /** An integer primary key growing with each insert. */
  serial: string;
}

/** Where a backend's SQL differs from the common SQL the rest is written in. */
export interface Dialect extends ColumnTypes {
  /** Follows a text expression in ORDER BY for byte-wise order, whatever the locale. */
  byteOrder: string;
  /** A boolean as a statement parameter. */
  bool(b: boolean): Param;
  /** SQL for the JSON string holding a text expression. */
  jsonString(text: string): string;
  /** SQL for the lowercase hexadecimal text of a bytes expression. */
  hex(bytes: string): string;
  /**
   * Full-text search of archive items: SQLite indexes their text in an FTS5 table beside them
   * ("table", archive_text, by the item's seq), PostgreSQL in a tsvector column of theirs
   * ("column", body_search).
   */
  textIndex: "table" | "column";
  /** SQL matching an archive item against the words of one parameter (`?`). */
  textMatch: string;
  /** The parameter of textMatch for words a user typed: each word must be in the text. */
  textWords(words: string): string;
}
