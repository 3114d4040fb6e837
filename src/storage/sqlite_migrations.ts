// Schema migrations for the SQLite store, applied in order; PRAGMA user_version records how many
// have run. Never edit a released migration: append a new one (described once for both backends in
// schema.ts where it can be).
import { archiveSearch, featuresIntoShapes, itemTable, shapeTables, SQLITE } from "./schema.ts";

/** The tables whose owner column was `user` up to migration 3 (`username` since, as in PostgreSQL). */
const USER_TABLES = [
  "accounts",
  "roster_items",
  "roster_versions",
  "pending_in",
  "offline",
  "vcards",
  "private_storage",
  "blocklist",
];

export const MIGRATIONS: string[] = [
  `CREATE TABLE accounts (
     host TEXT NOT NULL, user TEXT NOT NULL, credentials TEXT NOT NULL,
     created_at INTEGER NOT NULL, PRIMARY KEY (host, user));
   CREATE TABLE roster_items (
     host TEXT NOT NULL, user TEXT NOT NULL, contact TEXT NOT NULL, name TEXT,
     subscription TEXT NOT NULL, ask INTEGER NOT NULL, groups TEXT NOT NULL,
     PRIMARY KEY (host, user, contact));
   CREATE TABLE roster_versions (
     host TEXT NOT NULL, user TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (host, user));
   CREATE TABLE pending_in (
     host TEXT NOT NULL, user TEXT NOT NULL, contact TEXT NOT NULL, stanza TEXT NOT NULL,
     PRIMARY KEY (host, user, contact));
   CREATE TABLE offline (
     id INTEGER PRIMARY KEY AUTOINCREMENT, host TEXT NOT NULL, user TEXT NOT NULL,
     stanza TEXT NOT NULL, stored_at INTEGER NOT NULL);
   CREATE INDEX offline_owner ON offline (host, user, id);
   CREATE TABLE vcards (
     host TEXT NOT NULL, user TEXT NOT NULL, vcard TEXT NOT NULL, PRIMARY KEY (host, user));
   CREATE TABLE private_storage (
     host TEXT NOT NULL, user TEXT NOT NULL, key TEXT NOT NULL, xml TEXT NOT NULL,
     PRIMARY KEY (host, user, key));
   CREATE TABLE blocklist (
     host TEXT NOT NULL, user TEXT NOT NULL, jid TEXT NOT NULL, PRIMARY KEY (host, user, jid));`,
  `CREATE TABLE muc_rooms (
     service TEXT NOT NULL, room TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (service, room));`,
  `CREATE TABLE secrets (name TEXT NOT NULL PRIMARY KEY, value BLOB NOT NULL);`,
  // The same column names as PostgreSQL's; keys and indexes follow the renamed column.
  USER_TABLES.map((t) => `ALTER TABLE ${t} RENAME COLUMN user TO username;`).join("\n"),
  shapeTables({ text: "TEXT", bigint: "INTEGER", serial: "INTEGER PRIMARY KEY AUTOINCREMENT" }),
  featuresIntoShapes(SQLITE),
  archiveSearch(SQLITE),
  itemTable(SQLITE),
];
