// Generic storage shapes for features (as Prosody's storage manager has): a key-value store per
// owner, a map store per owner and key, a list of keyed items per owner kept in the order they
// were written (the newest N of them), and an archive per owner (append, query by time, peer and
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
  /**
   * Only a new key: one stored already is left as it is (false). Of writers racing from any node
   * to add one key, exactly one adds it.
   */
  add?: boolean;
}

/**
 * Values per owner and key, in the order they were last written (a pubsub node's items): writing
 * a key makes it the newest. Keys are unique per owner within the store name.
 */
export interface ItemStore<T = unknown> {
  /**
   * Writes `value` under `key` as the owner's newest item, then, with `keep`, removes all but the
   * newest `keep` items; the keys removed so (not `key`). One transaction.
   */
  put(user: string, host: string, key: string, value: T, options?: { keep?: number }): Promise<
    string[]
  >;
  /**
   * The owner's items, oldest first: all, or only those with `keys`, or (with `last`) the newest
   * `last` of those.
   */
  list(user: string, host: string, options?: { keys?: string[]; last?: number }): Promise<
    [string, T][]
  >;
  /** Removes the items with these keys; the keys that were there. */
  remove(user: string, host: string, keys: string[]): Promise<string[]>;
  /** Removes every item of the owner; how many. */
  clear(user: string, host: string): Promise<number>;
  /** The newest item of each of these users of `host` who has one (one read for many owners). */
  latest(users: string[], host: string): Promise<LatestItem<T>[]>;
}

export interface LatestItem<T> {
  user: string;
  key: string;
  value: T;
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

/**
 * An item to append: without an id, a new unique one is made. `text` is what full-text search
 * finds it by (a message's body), not kept otherwise.
 */
export type NewArchiveItem = Omit<ArchiveItem, "id"> & { id?: string; text?: string };

/** An item of some owner's archive, to append with others in one write. */
export interface ArchiveEntry {
  user: string;
  host: string;
  item: NewArchiveItem & { id: string };
}

/**
 * A page of an owner's archive (XEP-0313 filters, XEP-0059 paging). Items are ordered by time,
 * then by order of appending. `start` and `end` are inclusive times; `after` and `before` are item
 * ids, exclusive: with `before` the page is the last `max` items before it (an empty `before` is
 * the last page), otherwise the first `max` items after `after` (or from the start).
 */
export interface ArchiveQuery {
  start?: number;
  end?: number;
  /** A bare JID matches items with it and with any full JID of it; a full JID only itself. */
  with?: string;
  /** Only the items with these ids (as many as there are of them). */
  ids?: string[];
  /** Only items after, or before, the item with this id (filters, exclusive, like start/end). */
  afterId?: string;
  beforeId?: string;
  /** Only items whose text has every word of this (full-text search). */
  text?: string;
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
  /**
   * Appends items of any owners in one transaction, skipping each whose id its owner's archive
   * has already (a write repeated after a fault adds nothing); how many were new. Committed
   * without waiting for the disk (TxOptions.lazy): a crash of this process or of the database
   * server keeps it, a power loss of the machine right after may take the last ones back.
   */
  appendMany(entries: ArchiveEntry[]): Promise<number>;
  /**
   * Rejects with UnknownItemError when `after`, `before`, `afterId` or `beforeId` is no item's
   * id.
   */
  query(user: string, host: string, query: ArchiveQuery): Promise<ArchivePage>;
  /**
   * Replaces an item's payload (a moderated message's tombstone), which full-text search no
   * longer finds; false when there is no such item.
   */
  replace(user: string, host: string, id: string, payload: string): Promise<boolean>;
  /** Deletes the owner's items older than `before` (all of them without it); how many. */
  delete(user: string, host: string, options?: { before?: number }): Promise<number>;
  /** Deletes everything the owner has in this archive; how many items. */
  deleteOwner(user: string, host: string): Promise<number>;
  /**
   * Deletes every owner's items older than `before` (retention), at most `limit` of them (the
   * oldest) when given; how many.
   */
  expire(before: number, limit?: number): Promise<number>;
}

/** The shapes, as a Store hands them out by store name. */
export interface Shapes {
  keyval<T = unknown>(name: string): KeyValStore<T>;
  map<T = unknown>(name: string): MapStore<T>;
  items<T = unknown>(name: string): ItemStore<T>;
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
    { max, add }: MapSet = {},
  ): Promise<boolean> {
    const owner = ownerOf(user, host, this.name);
    if (value === null) {
      await this.db.run(st(`DELETE FROM map_store WHERE ${OWNER} AND key = ?`, ...owner, key));
      return true;
    }
    const text = json(value);
    const upsert = st(
      `INSERT INTO map_store (host, username, store, key, value) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (host, username, store, key) ${
        add ? "DO NOTHING" : "DO UPDATE SET value = excluded.value"
      }`,
      ...owner,
      key,
      text,
    );
    if (max === undefined) return await this.db.run(upsert) === 1 || !add;
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
      const present = st(`SELECT 1 FROM map_store WHERE ${OWNER} AND key = ?`, ...owner, key);
      if (add ? (await tx.all(present)).length > 0 : await tx.run(replace) === 1) return !add;
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

/** Owners per statement of ItemStore.latest and keys per statement of its other reads. */
const OWNERS_PER_READ = 500;

export class Items<T> extends Shape implements ItemStore<T> {
  async put(
    user: string,
    host: string,
    key: string,
    value: T,
    { keep }: { keep?: number } = {},
  ): Promise<string[]> {
    if (keep !== undefined && (!Number.isSafeInteger(keep) || keep < 1)) {
      throw new RangeError("keep is a positive integer");
    }
    const owner = ownerOf(user, host, this.name);
    const text = json(value);
    return await this.db.transaction(async (tx) => {
      // Writers of one owner's items take turns (two nodes writing one key at once would both
      // find it gone, and one insert would fail).
      await tx.lock(`items ${this.name}`, user, host);
      // Deleted and inserted again: the item takes the next seq, the newest.
      await tx.run(st(`DELETE FROM item_store WHERE ${OWNER} AND key = ?`, ...owner, key));
      await tx.run(st(
        "INSERT INTO item_store (host, username, store, key, value) VALUES (?, ?, ?, ?, ?)",
        ...owner,
        key,
        text,
      ));
      if (keep === undefined) return [];
      const gone = await tx.all(st(
        `DELETE FROM item_store WHERE ${OWNER} AND seq < (
           SELECT min(seq) FROM (SELECT seq FROM item_store WHERE ${OWNER}
                                 ORDER BY seq DESC LIMIT ?) newest)
         RETURNING key`,
        ...owner,
        ...owner,
        keep,
      ));
      return gone.map((r) => r.key as string);
    });
  }

  async list(
    user: string,
    host: string,
    { keys, last }: { keys?: string[]; last?: number } = {},
  ): Promise<[string, T][]> {
    if (last !== undefined && (!Number.isSafeInteger(last) || last < 0)) {
      throw new RangeError("last is a non-negative integer");
    }
    if (keys?.length === 0 || last === 0) return [];
    if (keys && keys.length > OWNERS_PER_READ) throw new RangeError("too many keys in one read");
    const params: Param[] = ownerOf(user, host, this.name);
    let where = OWNER;
    if (keys) {
      where += ` AND key IN (${keys.map(() => "?").join(", ")})`;
      params.push(...keys);
    }
    const limit = last === undefined ? "" : " LIMIT ?";
    if (last !== undefined) params.push(last);
    const rows = await this.db.all(st(
      `SELECT key, value FROM item_store WHERE ${where} ORDER BY seq DESC${limit}`,
      ...params,
    ));
    return rows.reverse().map((r) => [r.key as string, JSON.parse(r.value as string)]);
  }

  async remove(user: string, host: string, keys: string[]): Promise<string[]> {
    if (keys.length === 0) return [];
    if (keys.length > OWNERS_PER_READ) throw new RangeError("too many keys in one write");
    const rows = await this.db.all(st(
      `DELETE FROM item_store WHERE ${OWNER} AND key IN (${
        keys.map(() => "?").join(", ")
      }) RETURNING key`,
      ...ownerOf(user, host, this.name),
      ...keys,
    ));
    return rows.map((r) => r.key as string);
  }

  async clear(user: string, host: string): Promise<number> {
    return await this.db.run(
      st(`DELETE FROM item_store WHERE ${OWNER}`, ...ownerOf(user, host, this.name)),
    );
  }

  async latest(users: string[], host: string): Promise<LatestItem<T>[]> {
    const out: LatestItem<T>[] = [];
    for (let i = 0; i < users.length; i += OWNERS_PER_READ) {
      const chunk = users.slice(i, i + OWNERS_PER_READ);
      const rows = await this.db.all(st(
        `SELECT username, key, value FROM item_store WHERE seq IN (
           SELECT max(seq) FROM item_store
           WHERE host = ? AND store = ? AND username IN (${chunk.map(() => "?").join(", ")})
           GROUP BY username)`,
        host,
        this.name,
        ...chunk,
      ));
      for (const r of rows) {
        out.push({
          user: r.username as string,
          key: r.key as string,
          value: JSON.parse(r.value as string),
        });
      }
    }
    return out;
  }
}

/**
 * Archive entries are many and small: committed without waiting for the disk (TxOptions.lazy;
 * appendMany says what that keeps).
 */
const LAZY = { lazy: true };

/** Rows per INSERT statement: within every backend's limit on parameters. */
const ROWS_PER_INSERT = 500;

export class Archive extends Shape implements ArchiveStore {
  async append(user: string, host: string, item: NewArchiveItem): Promise<string> {
    const id = item.id ?? crypto.randomUUID();
    if (await this.appendMany([{ user, host, item: { ...item, id } }]) === 0) {
      throw new Error(`item ${id} is in archive ${this.name} already`);
    }
    return id;
  }

  async appendMany(entries: ArchiveEntry[]): Promise<number> {
    for (const { item } of entries) {
      if (typeof item.id !== "string" || !item.id) {
        throw new TypeError("an archive id is a non-empty string");
      }
      if (!Number.isSafeInteger(item.at)) throw new TypeError("an archive time is an integer");
    }
    const columns = "host, username, store, id, at, with_jid, payload";
    const values = ({ user, host, item }: ArchiveEntry): Param[] => [
      ...ownerOf(user, host, this.name),
      item.id,
      item.at,
      item.with ?? null,
      item.payload,
    ];
    if (this.db.dialect.textIndex === "table") {
      // SQLite: row by row (its single-row statements are its cheapest), each row's text into the
      // FTS5 table under the row's seq when the row was new.
      return await this.db.transaction(async (tx) => {
        let added = 0;
        for (const e of entries) {
          const n = await tx.run(
            st(
              `INSERT OR IGNORE INTO archive_store (${columns}) VALUES (?, ?, ?, ?, ?, ?, ?)`,
              ...values(e),
            ),
          );
          added += n;
          if (n && e.item.text) {
            await tx.run(st(
              "INSERT INTO archive_text (rowid, body) VALUES (last_insert_rowid(), ?)",
              e.item.text,
            ));
          }
        }
        return added;
      }, LAZY);
    }
    // PostgreSQL: many rows per statement (one round trip), the text indexed in the row.
    return await this.db.transaction(async (tx) => {
      let added = 0;
      for (let i = 0; i < entries.length; i += ROWS_PER_INSERT) {
        const chunk = entries.slice(i, i + ROWS_PER_INSERT);
        const params: Param[] = [];
        for (const e of chunk) params.push(...values(e), e.item.text ?? null);
        const row = "(?, ?, ?, ?, ?, ?, ?, to_tsvector('simple', ?))";
        added += await tx.run(st(
          `INSERT INTO archive_store (${columns}, body_search)
           VALUES ${chunk.map(() => row).join(", ")}
           ON CONFLICT (host, username, store, id) DO NOTHING`,
          ...params,
        ));
      }
      return added;
    }, LAZY);
  }

  async query(user: string, host: string, q: ArchiveQuery): Promise<ArchivePage> {
    if (!Number.isSafeInteger(q.max) || q.max < 0) {
      throw new RangeError("max is a non-negative integer");
    }
    const owner = ownerOf(user, host, this.name);
    // The filters, which the count obeys too.
    let where = OWNER;
    const params: Param[] = [...owner];
    const anchors: Statement[] = [];
    const ids: string[] = [];
    const filter = (sql: string, ...values: (Param | undefined)[]) => {
      if (values[0] === undefined) return;
      where += sql;
      params.push(...values as Param[]);
    };
    /** Items on one side of the item `id` (which must be there). */
    const relative = (op: string, id: string): [string, Param[]] => {
      ids.push(id);
      anchors.push(st(`SELECT 1 FROM archive_store WHERE ${OWNER} AND id = ?`, ...owner, id));
      return [
        ` AND (at, seq) ${op} (SELECT at, seq FROM archive_store WHERE ${OWNER} AND id = ?)`,
        [...owner, id],
      ];
    };
    filter(" AND at >= ?", q.start);
    filter(" AND at <= ?", q.end);
    if (q.with !== undefined) {
      if (q.with.includes("/")) filter(" AND with_jid = ?", q.with);
      // Byte-wise, the full JIDs of bare come right after "bare/" and before "bare0".
      else {filter(
          " AND (with_jid = ? OR (with_jid >= ? AND with_jid < ?))",
          q.with,
          `${q.with}/`,
          `${q.with}0`,
        );}
    }
    if (q.ids !== undefined) {
      where += q.ids.length ? ` AND id IN (${q.ids.map(() => "?").join(", ")})` : " AND 1 = 0";
      params.push(...q.ids);
    }
    const bound = (op: string, id: string) => {
      const [sql, values] = relative(op, id);
      filter(sql, ...values);
    };
    if (q.afterId !== undefined) bound(">", q.afterId);
    if (q.beforeId !== undefined) bound("<", q.beforeId);
    if (q.text !== undefined) {
      filter(` AND ${this.db.dialect.textMatch}`, this.db.dialect.textWords(q.text));
    }
    // The paging, relative to the items named by id.
    let page = where;
    const pageParams = [...params];
    const from = (op: string, id: string) => {
      const [sql, values] = relative(op, id);
      page += sql;
      pageParams.push(...values);
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

  async replace(user: string, host: string, id: string, payload: string): Promise<boolean> {
    const owner = ownerOf(user, host, this.name);
    const d = this.db.dialect;
    return await this.db.transaction(async (tx) => {
      const rows = await tx.all(st(
        `UPDATE archive_store SET payload = ?${
          d.textIndex === "column" ? ", body_search = NULL" : ""
        }
         WHERE ${OWNER} AND id = ? RETURNING seq`,
        payload,
        ...owner,
        id,
      ));
      if (rows.length && d.textIndex === "table") {
        await tx.run(st("DELETE FROM archive_text WHERE rowid = ?", Number(rows[0].seq)));
      }
      return rows.length > 0;
    });
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

  async expire(before: number, limit?: number): Promise<number> {
    if (limit === undefined) {
      return await this.db.run(
        st("DELETE FROM archive_store WHERE store = ? AND at < ?", this.name, before),
      );
    }
    return await this.db.run(st(
      `DELETE FROM archive_store WHERE seq IN (
         SELECT seq FROM archive_store WHERE store = ? AND at < ? ORDER BY at LIMIT ?)`,
      this.name,
      before,
      limit,
    ));
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
