// The SQL schema described once for both backends: the two dialects side by side (all that
// differs between SQLite and PostgreSQL in what the store runs), the tables by kind, and the
// migrations written for both (each backend's list in sqlite_migrations.ts and
// postgres_migrations.ts, whose released entries are never edited: add a new one).
import type { ColumnTypes, Dialect } from "./driver.ts";

export const SQLITE: Dialect = {
  text: "TEXT",
  bigint: "INTEGER",
  serial: "INTEGER PRIMARY KEY AUTOINCREMENT",
  byteOrder: "", // SQLite's default collation (BINARY) is byte-wise
  bool: (b) => b ? 1 : 0,
  jsonString: (text) => `json_quote(${text})`,
  hex: (bytes) => `lower(hex(${bytes}))`,
  textIndex: "table",
  textMatch: "seq IN (SELECT rowid FROM archive_text WHERE archive_text MATCH ?)",
  // Each word quoted (quotes doubled): the user's text is never FTS5 query syntax.
  textWords: (words) =>
    words.split(/\s+/u).filter((w) => w).map((w) => `"${w.replaceAll('"', '""')}"`).join(" "),
};

export const POSTGRES: Dialect = {
  text: 'text COLLATE "C"',
  bigint: "bigint",
  serial: "bigserial PRIMARY KEY",
  byteOrder: ' COLLATE "C"',
  bool: (b) => b,
  jsonString: (text) => `CAST(to_json(${text}) AS text)`,
  hex: (bytes) => `encode(${bytes}, 'hex')`,
  textIndex: "column",
  textMatch: "body_search @@ plainto_tsquery('simple', ?)",
  textWords: (words) => words,
};

/** The tables of the shapes, whose owner columns are (host, username) as in account tables. */
export const SHAPE_TABLES = ["keyval_store", "map_store", "archive_store", "item_store"] as const;

/**
 * The tables holding an account's data besides its credentials, named alike in every backend, with
 * the owner in (host, username).
 */
export const ACCOUNT_TABLES = [
  "roster_items",
  "roster_versions",
  "pending_in",
  "offline",
  "blocklist",
  ...SHAPE_TABLES,
] as const;

/**
 * The shape tables, described once for every backend (a released migration: never edit it, add a
 * new one).
 */
export function shapeTables(d: ColumnTypes): string {
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

/**
 * vCards, private XML, persistent MUC rooms and secrets move into the shapes, as JSON the shapes
 * read, and their tables go (a released migration once shipped: never edit it, add a new one).
 * The store names are written out: they are those of store.ts's STORES when this was written.
 * - vCard: key-value "vcard" of the account, the XML as a JSON string;
 * - private XML: map "private" of the account, key as it was, the XML as a JSON string;
 * - a room: map "muc_rooms" of owner (user "", host the service), key the room, its state (JSON
 *   already);
 * - a secret: key-value "secret" of owner (user its name, host ""), its bytes as a JSON string of
 *   lowercase hexadecimal.
 */
export function featuresIntoShapes(d: Dialect): string {
  return `INSERT INTO keyval_store (host, username, store, value)
     SELECT host, username, 'vcard', ${d.jsonString("vcard")} FROM vcards;
   INSERT INTO map_store (host, username, store, key, value)
     SELECT host, username, 'private', key, ${d.jsonString("xml")} FROM private_storage;
   INSERT INTO map_store (host, username, store, key, value)
     SELECT service, '', 'muc_rooms', room, state FROM muc_rooms;
   INSERT INTO keyval_store (host, username, store, value)
     SELECT '', name, 'secret', ${d.jsonString(d.hex("value"))} FROM secrets;
   DROP TABLE vcards;
   DROP TABLE private_storage;
   DROP TABLE muc_rooms;
   DROP TABLE secrets;`;
}

/**
 * Archive search (a released migration: never edit it, add a new one): the full-text index of
 * items' text, made by each backend its own way (Dialect.textIndex). A peer filter reads the
 * owner's items in time order (archive_store_time): one index fewer to keep up per message.
 * Words are matched whole, case- and (SQLite) accent-insensitively, without stemming, in any
 * language: the "simple" configuration of PostgreSQL, FTS5's unicode61 tokenizer.
 */
export function archiveSearch(d: Pick<Dialect, "textIndex">): string {
  if (d.textIndex === "table") {
    return `CREATE VIRTUAL TABLE archive_text USING fts5(
       body, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2');
     CREATE TRIGGER archive_text_gone AFTER DELETE ON archive_store
       BEGIN DELETE FROM archive_text WHERE rowid = old.seq; END;`;
  }
  return `ALTER TABLE archive_store ADD COLUMN body_search tsvector;
   CREATE INDEX archive_store_search ON archive_store USING GIN (body_search);`;
}

/**
 * The items shape (a released migration once shipped: never edit it, add a new one): an owner's
 * items of a store name in the order of their seq, the newest last.
 */
export function itemTable(d: ColumnTypes): string {
  return `CREATE TABLE item_store (
     seq ${d.serial}, host ${d.text} NOT NULL, username ${d.text} NOT NULL,
     store ${d.text} NOT NULL, key ${d.text} NOT NULL, value ${d.text} NOT NULL);
   CREATE UNIQUE INDEX item_store_key ON item_store (host, username, store, key);
   CREATE INDEX item_store_order ON item_store (host, store, username, seq);`;
}
