// Generic storage shapes for features (as Prosody's storage manager has): a key-value store per
// owner, a map store per owner and key, and an archive per owner (append, query by time, peer and
// id with RSM paging, delete by age or owner). A feature asks the Store for a shape by a store name
// of its own (`store.keyval("vcard")`, `store.archive("mam")`) instead of widening the Store.
//
// Owners are (user, host) as everywhere in the Store: a bare JID user@host, or a room and its
// service. Values of the key-value and map shapes are anything JSON can hold (strings included).
//
// Everything below is written once: the SQL text (with `?` placeholders) is the same for both
// backends, which only supply how to run a statement (SqlDriver, driver.ts): the driver, their
// error mapping (StoreBusyError) and their transactions. The tables are described in schema.ts.
import { type Param, type Row, type SqlDriver, st, type Statement } from "./driver.ts";

/** A value per owner under one store name. */
export interface KeyValStore<T = unknown> {
  /** The value stored for the owner, or null. */
  get(user: string, host: string): Promise<T | null>;
  /** Replaces the owner's value; null removes it. */
  set(user: string, host: string, value: T | null): Promise<void>;
  /**
   * Stores `value` unless the owner has one: true when stored. Of writers racing from any node,
   * exactly one stores; the others keep what it stored.
   */
  add(user: string, host: string, value: T): Promise<boolean>;
}

/** Values per owner and key under one store name. */
export interface MapStore<T = unknown> {
  get(user: string, host: string, key: string): Promise<T | null>;
  /**
   * Replaces the value under `key`; null removes it. With `max`, a new key is refused (false,
   * nothing written) when the owner has `max` keys already in this store; replacing a stored key
   * is always allowed. The cap holds across nodes writing at once, among writes that give it.
   */
  set(user: string, host: string, key: string, value: T | null, options?: MapSet): Promise<boolean>;
  /** The owner's keys, sorted byte-wise. */
  keys(user: string, host: string): Promise<string[]>;
  /** The owner's keys and their values, sorted byte-wise by key. */
  entries(user: string, host: string): Promise<[string, T][]>;
}

export interface MapSet {
  max?: number;
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

const OWNER = "host = ? AND username = ? AND store = ?";

/** One shape of one store name, over a backend's driver. */
abstract class Shape {
  protected db: SqlDriver;
  protected name: string;
  constructor(db: SqlDriver, name: string) {
    this.db = db;
    this.name = name;
  }
}

/** The parameters of OWNER. */
const ownerOf = (user: string, host: string, name: string): Param[] => [host, user, name];

export class KeyVal<T> extends Shape implements KeyValStore<T> {
  async get(user: string, host: string): Promise<T | null> {
    const [row] = await this.db.all(
      st(`SELECT value FROM keyval_store WHERE ${OWNER}`, ...ownerOf(user, host, this.name)),
    );
    return row ? JSON.parse(row.value as string) : null;
  }

  async set(user: string, host: string, value: T | null): Promise<void> {
    if (value === null) {
      await this.db.run(
        st(`DELETE FROM keyval_store WHERE ${OWNER}`, ...ownerOf(user, host, this.name)),
      );
      return;
    }
    await this.db.run(this.#insert(user, host, value, "DO UPDATE SET value = excluded.value"));
  }

  async add(user: string, host: string, value: T): Promise<boolean> {
    return await this.db.run(this.#insert(user, host, value, "DO NOTHING")) === 1;
  }

  #insert(user: string, host: string, value: T, onConflict: string): Statement {
    return st(
      `INSERT INTO keyval_store (host, username, store, value) VALUES (?, ?, ?, ?)
       ON CONFLICT (host, username, store) ${onConflict}`,
      ...ownerOf(user, host, this.name),
      json(value),
    );
  }
}

export class KeyMap<T> extends Shape implements MapStore<T> {
  async get(user: string, host: string, key: string): Promise<T | null> {
    const [row] = await this.db.all(
      st(
        `SELECT value FROM map_store WHERE ${OWNER} AND key = ?`,
        ...ownerOf(user, host, this.name),
        key,
      ),
    );
    return row ? JSON.parse(row.value as string) : null;
  }

  async set(
    user: string,
    host: string,
    key: string,
    value: T | null,
    { max }: MapSet = {},
  ): Promise<boolean> {
    const owner = ownerOf(user, host, this.name);
    if (value === null) {
      await this.db.run(st(`DELETE FROM map_store WHERE ${OWNER} AND key = ?`, ...owner, key));
      return true;
    }
    const text = json(value);
    const upsert = st(
      `INSERT INTO map_store (host, username, store, key, value) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (host, username, store, key) DO UPDATE SET value = excluded.value`,
      ...owner,
      key,
      text,
    );
    if (max === undefined) {
      await this.db.run(upsert);
      return true;
    }
    if (!Number.isSafeInteger(max) || max < 0) {
      throw new RangeError("max is a non-negative integer");
    }
    // Counting and adding is one transaction, serialized per owner and store name across nodes.
    return await this.db.transaction(async (tx) => {
      await tx.lock(`map ${this.name}`, user, host);
      const replace = st(
        `UPDATE map_store SET value = ? WHERE ${OWNER} AND key = ?`,
        text,
        ...owner,
        key,
      );
      if (await tx.run(replace) === 1) return true;
      const [{ n }] = await tx.all(
        st(`SELECT CAST(count(*) AS integer) AS n FROM map_store WHERE ${OWNER}`, ...owner),
      );
      if (Number(n) >= max) return false;
      await tx.run(upsert);
      return true;
    });
  }

  async keys(user: string, host: string): Promise<string[]> {
    const rows = await this.db.all(
      st(
        `SELECT key FROM map_store WHERE ${OWNER} ORDER BY key`,
        ...ownerOf(user, host, this.name),
      ),
    );
    return rows.map((r) => r.key as string);
  }

  async entries(user: string, host: string): Promise<[string, T][]> {
    const rows = await this.db.all(
      st(
        `SELECT key, value FROM map_store WHERE ${OWNER} ORDER BY key`,
        ...ownerOf(user, host, this.name),
      ),
    );
    return rows.map((r) => [r.key as string, JSON.parse(r.value as string)]);
  }
}

export class Archive extends Shape implements ArchiveStore {
  async append(user: string, host: string, item: NewArchiveItem): Promise<string> {
    const id = item.id ?? crypto.randomUUID();
    if (typeof id !== "string" || !id) throw new TypeError("an archive id is a non-empty string");
    if (!Number.isSafeInteger(item.at)) throw new TypeError("an archive time is an integer");
    await this.db.run(st(
      `INSERT INTO archive_store (host, username, store, id, at, with_jid, payload)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ...ownerOf(user, host, this.name),
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
    const owner = ownerOf(user, host, this.name);
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
      ...ownerOf(user, host, this.name),
      options.before,
    ));
  }

  async deleteOwner(user: string, host: string): Promise<number> {
    return await this.db.run(
      st(`DELETE FROM archive_store WHERE ${OWNER}`, ...ownerOf(user, host, this.name)),
    );
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
