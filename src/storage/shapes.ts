// Generic storage shapes for features (as Prosody's storage manager has): a key-value store per
// owner, a map store per owner and key, and an archive per owner (append, query by time, peer and
// id with RSM paging, delete by age or owner). A feature asks the Store for a shape by a store name
// of its own (`store.keyval("vcard")`, `store.archive("mam")`) instead of widening the Store.
//
// Owners are (user, host) as everywhere in the Store: a bare JID user@host, or a room and its
// service. Values of the key-value and map shapes are anything JSON can hold (strings included).
//
// Everything below is written once: the SQL text (with `?` placeholders) is the same for both
// backends, which only supply how to run a statement (ShapeDb): the driver, their error mapping
// (StoreBusyError) and their transactions. The tables are described once too (shapeTables).

/** A value per owner under one store name. */
export interface KeyValStore<T = unknown> {
  /** The value stored for the owner, or null. */
  get(user: string, host: string): Promise<T | null>;
  /** Replaces the owner's value; null removes it. */
  set(user: string, host: string, value: T | null): Promise<void>;
}

/** Values per owner and key under one store name. */
export interface MapStore<T = unknown> {
  get(user: string, host: string, key: string): Promise<T | null>;
  /** Replaces the value under `key`; null removes it. */
  set(user: string, host: string, key: string, value: T | null): Promise<void>;
  /** The owner's keys, sorted byte-wise. */
  keys(user: string, host: string): Promise<string[]>;
}

export interface ArchiveItem {
  /** Unique within the owner's archive of this store name. */
  id: string;
  /** The item's time, in milliseconds since the epoch. */
  at: number;
  /** The peer the item is with (a JID), when there is one. */
  with?: string;
  /** The item itself, e.g. a serialized stanza. */
  payload: string;
}

/** An item to append: without an id, a new unique one is made. */
export type NewArchiveItem = Omit<ArchiveItem, "id"> & { id?: string };

/**
 * A page of an owner's archive (XEP-0313 filters, XEP-0059 paging). Items are ordered by time,
 * then by order of appending. `start` and `end` are inclusive times; `after` and `before` are item
 * ids, exclusive: with `before` the page is the last `max` items before it (an empty `before` is
 * the last page), otherwise the first `max` items after `after` (or from the start).
 */
export interface ArchiveQuery {
  start?: number;
  end?: number;
  with?: string;
  after?: string;
  before?: string;
  /** Page size; 0 asks only for the count. */
  max: number;
}

export interface ArchivePage {
  /** The page's items, oldest first. */
  items: ArchiveItem[];
  /** How many items match the filters (start, end, with), whatever the paging. */
  count: number;
  /** Ids of the page's first and last items (absent on an empty page). */
  first?: string;
  last?: string;
  /**
   * No page is left in the direction of paging: after this one going forward, before it going
   * backward (with `before`).
   */
  complete: boolean;
}

export interface ArchiveStore {
  /** Appends an item; its id. Rejects when `item.id` is already in this archive. */
  append(user: string, host: string, item: NewArchiveItem): Promise<string>;
  /** Rejects with UnknownItemError when `after` or `before` is no item's id. */
  query(user: string, host: string, query: ArchiveQuery): Promise<ArchivePage>;
  /** Deletes the owner's items older than `before` (all of them without it); how many. */
  delete(user: string, host: string, options?: { before?: number }): Promise<number>;
  /** Deletes everything the owner has in this archive; how many items. */
  deleteOwner(user: string, host: string): Promise<number>;
  /** Deletes every owner's items older than `before` (retention); how many. */
  expire(before: number): Promise<number>;
}

/** The shapes, as a Store hands them out by store name. */
export interface Shapes {
  keyval<T = unknown>(name: string): KeyValStore<T>;
  map<T = unknown>(name: string): MapStore<T>;
  archive(name: string): ArchiveStore;
}

/** An archive query named an item id (`after`, `before`) that is not in the archive. */
export class UnknownItemError extends Error {}

/** The tables of the shapes, whose owner columns are (host, username) as in account tables. */
export const SHAPE_TABLES = ["keyval_store", "map_store", "archive_store"] as const;

export type Param = string | number | null;
export interface Statement {
  sql: string;
  params: Param[];
}
export type Row = Record<string, unknown>;

/** What a backend provides: running statements, its errors already mapped (StoreBusyError). */
export interface ShapeDb {
  /** Runs one statement; the rows it returns. */
  all(s: Statement): Promise<Row[]>;
  /** Runs one statement; how many rows it changed. */
  run(s: Statement): Promise<number>;
  /** Runs read-only statements on one snapshot of the database; the rows of each. */
  snapshot(s: Statement[]): Promise<Row[][]>;
}

/** A backend's column types for the shape tables. */
export interface Dialect {
  /** Text compared and sorted byte-wise. */
  text: string;
  bigint: string;
  /** An integer primary key growing with each insert. */
  serial: string;
}

/**
 * The shape tables, described once for every backend (a released migration: never edit it, add a
 * new one).
 */
export function shapeTables(d: Dialect): string {
  const owner = `host ${d.text} NOT NULL, username ${d.text} NOT NULL, store ${d.text} NOT NULL`;
  return `CREATE TABLE keyval_store (
     ${owner}, value ${d.text} NOT NULL, PRIMARY KEY (host, username, store));
   CREATE TABLE map_store (
     ${owner}, key ${d.text} NOT NULL, value ${d.text} NOT NULL,
     PRIMARY KEY (host, username, store, key));
   CREATE TABLE archive_store (
     seq ${d.serial}, ${owner}, id ${d.text} NOT NULL, at ${d.bigint} NOT NULL,
     with_jid ${d.text}, payload ${d.text} NOT NULL);
   CREATE UNIQUE INDEX archive_store_id ON archive_store (host, username, store, id);
   CREATE INDEX archive_store_time ON archive_store (host, username, store, at, seq);
   CREATE INDEX archive_store_age ON archive_store (store, at);`;
}

const st = (sql: string, ...params: Param[]): Statement => ({ sql, params });

const OWNER = "host = ? AND username = ? AND store = ?";

export class KeyVal<T> implements KeyValStore<T> {
  private db: ShapeDb;
  private name: string;
  constructor(db: ShapeDb, name: string) {
    this.db = db;
    this.name = name;
  }

  async get(user: string, host: string): Promise<T | null> {
    const [row] = await this.db.all(
      st(`SELECT value FROM keyval_store WHERE ${OWNER}`, host, user, this.name),
    );
    return row ? JSON.parse(row.value as string) : null;
  }

  async set(user: string, host: string, value: T | null): Promise<void> {
    if (value === null) {
      await this.db.run(st(`DELETE FROM keyval_store WHERE ${OWNER}`, host, user, this.name));
      return;
    }
    await this.db.run(st(
      `INSERT INTO keyval_store (host, username, store, value) VALUES (?, ?, ?, ?)
       ON CONFLICT (host, username, store) DO UPDATE SET value = excluded.value`,
      host,
      user,
      this.name,
      json(value),
    ));
  }
}

export class KeyMap<T> implements MapStore<T> {
  private db: ShapeDb;
  private name: string;
  constructor(db: ShapeDb, name: string) {
    this.db = db;
    this.name = name;
  }

  async get(user: string, host: string, key: string): Promise<T | null> {
    const [row] = await this.db.all(
      st(`SELECT value FROM map_store WHERE ${OWNER} AND key = ?`, host, user, this.name, key),
    );
    return row ? JSON.parse(row.value as string) : null;
  }

  async set(user: string, host: string, key: string, value: T | null): Promise<void> {
    if (value === null) {
      await this.db.run(
        st(`DELETE FROM map_store WHERE ${OWNER} AND key = ?`, host, user, this.name, key),
      );
      return;
    }
    await this.db.run(st(
      `INSERT INTO map_store (host, username, store, key, value) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (host, username, store, key) DO UPDATE SET value = excluded.value`,
      host,
      user,
      this.name,
      key,
      json(value),
    ));
  }

  async keys(user: string, host: string): Promise<string[]> {
    const rows = await this.db.all(
      st(`SELECT key FROM map_store WHERE ${OWNER} ORDER BY key`, host, user, this.name),
    );
    return rows.map((r) => r.key as string);
  }
}

export class Archive implements ArchiveStore {
  private db: ShapeDb;
  private name: string;
  constructor(db: ShapeDb, name: string) {
    this.db = db;
    this.name = name;
  }

  async append(user: string, host: string, item: NewArchiveItem): Promise<string> {
    const id = item.id ?? crypto.randomUUID();
    if (typeof id !== "string" || !id) throw new TypeError("an archive id is a non-empty string");
    if (!Number.isSafeInteger(item.at)) throw new TypeError("an archive time is an integer");
    await this.db.run(st(
      `INSERT INTO archive_store (host, username, store, id, at, with_jid, payload)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
      host,
      user,
      this.name,
      id,
      item.at,
      item.with ?? null,
      item.payload,
    ));
    return id;
  }

  async query(user: string, host: string, q: ArchiveQuery): Promise<ArchivePage> {
    if (!Number.isSafeInteger(q.max) || q.max < 0) {
      throw new RangeError("max is a non-negative integer");
    }
    const owner = [host, user, this.name];
    // The filters, which the count obeys too.
    let where = OWNER;
    const params: Param[] = [...owner];
    const filter = (sql: string, value: Param | undefined) => {
      if (value === undefined) return;
      where += sql;
      params.push(value);
    };
    filter(" AND at >= ?", q.start);
    filter(" AND at <= ?", q.end);
    filter(" AND with_jid = ?", q.with);
    // The paging, relative to the items named by id.
    let page = where;
    const pageParams = [...params];
    const anchors: Statement[] = [];
    const ids: string[] = [];
    const from = (op: string, id: string) => {
      ids.push(id);
      page += ` AND (at, seq) ${op} (SELECT at, seq FROM archive_store WHERE ${OWNER} AND id = ?)`;
      pageParams.push(...owner, id);
      anchors.push(st(`SELECT 1 FROM archive_store WHERE ${OWNER} AND id = ?`, ...owner, id));
    };
    if (q.after !== undefined) from(">", q.after);
    if (q.before) from("<", q.before);
    const backward = q.before !== undefined;
    const order = backward ? "at DESC, seq DESC" : "at, seq";
    const results = await this.db.snapshot([
      ...anchors,
      st(`SELECT count(*) AS n FROM archive_store WHERE ${where}`, ...params),
      st(
        `SELECT id, at, with_jid, payload FROM archive_store WHERE ${page}
         ORDER BY ${order} LIMIT ?`,
        ...pageParams,
        q.max + 1,
      ),
    ]);
    const missing = ids.find((_, i) => results[i].length === 0);
    if (missing !== undefined) {
      throw new UnknownItemError(`no item ${missing} in archive ${this.name}`);
    }
    const [[{ n }], rows] = results.slice(anchors.length);
    const items = rows.slice(0, q.max).map(toArchiveItem);
    if (backward) items.reverse();
    return {
      items,
      count: Number(n),
      ...(items.length ? { first: items[0].id, last: items.at(-1)!.id } : {}),
      complete: rows.length <= q.max,
    };
  }

  async delete(user: string, host: string, options: { before?: number } = {}): Promise<number> {
    if (options.before === undefined) return await this.deleteOwner(user, host);
    return await this.db.run(st(
      `DELETE FROM archive_store WHERE ${OWNER} AND at < ?`,
      host,
      user,
      this.name,
      options.before,
    ));
  }

  async deleteOwner(user: string, host: string): Promise<number> {
    return await this.db.run(st(`DELETE FROM archive_store WHERE ${OWNER}`, host, user, this.name));
  }

  async expire(before: number): Promise<number> {
    return await this.db.run(
      st("DELETE FROM archive_store WHERE store = ? AND at < ?", this.name, before),
    );
  }
}

function json(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError("the value cannot be stored as JSON");
  return text;
}

function toArchiveItem(r: Row): ArchiveItem {
  const item: ArchiveItem = { id: r.id as string, at: Number(r.at), payload: r.payload as string };
  if (r.with_jid !== null && r.with_jid !== undefined) item.with = r.with_jid as string;
  return item;
}
