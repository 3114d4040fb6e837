// Schema migrations for the PostgreSQL store, applied in order at start; the schema_version table
// records how many have run. Never edit a released migration: append a new one. Names are sorted
// byte-wise (COLLATE "C") where order is returned, as SQLite does, whatever the database's locale.
// Migrations after the first are described once for both backends in schema.ts where they can be.
import { archiveSearch, featuresIntoShapes, itemTable, POSTGRES, shapeTables } from "./schema.ts";

export const MIGRATIONS: string[] = [
  `CREATE TABLE accounts (
     host text NOT NULL, username text NOT NULL, credentials text NOT NULL,
     created_at bigint NOT NULL, PRIMARY KEY (host, username));
   CREATE TABLE roster_items (
     host text NOT NULL, username text NOT NULL, contact text NOT NULL, name text,
     subscription text NOT NULL, ask boolean NOT NULL, groups text NOT NULL,
     PRIMARY KEY (host, username, contact));
   CREATE TABLE roster_versions (
     host text NOT NULL, username text NOT NULL, version integer NOT NULL,
     PRIMARY KEY (host, username));
   CREATE TABLE pending_in (
     host text NOT NULL, username text NOT NULL, contact text NOT NULL, stanza text NOT NULL,
     PRIMARY KEY (host, username, contact));
   CREATE TABLE offline (
     id bigserial PRIMARY KEY, host text NOT NULL, username text NOT NULL,
     stanza text NOT NULL, stored_at bigint NOT NULL);
   CREATE INDEX offline_owner ON offline (host, username, id);
   CREATE TABLE vcards (
     host text NOT NULL, username text NOT NULL, vcard text NOT NULL,
     PRIMARY KEY (host, username));
   CREATE TABLE private_storage (
     host text NOT NULL, username text NOT NULL, key text NOT NULL, xml text NOT NULL,
     PRIMARY KEY (host, username, key));
   CREATE TABLE blocklist (
     host text NOT NULL, username text NOT NULL, jid text NOT NULL,
     PRIMARY KEY (host, username, jid));
   CREATE TABLE muc_rooms (
     service text NOT NULL, room text NOT NULL, state text NOT NULL, PRIMARY KEY (service, room));
   CREATE TABLE secrets (name text PRIMARY KEY, value bytea NOT NULL);`,
  shapeTables({ text: 'text COLLATE "C"', bigint: "bigint", serial: "bigserial PRIMARY KEY" }),
  featuresIntoShapes(POSTGRES),
  archiveSearch(POSTGRES),
  itemTable(POSTGRES),
  // Uploaded files (XEP-0363, src/upload/postgres_store.ts), PostgreSQL only: a single node on
  // SQLite keeps them on disk. A file is a row, its bytes rows of at most 128 KiB going with it;
  // stored uncompressed out of line (STORAGE EXTERNAL): uploads are mostly compressed media,
  // which compressing again would cost CPU for nothing. `complete` is false while the bytes
  // arrive (the row already counts against the owner's quota).
  `CREATE TABLE upload_files (
     id text COLLATE "C" PRIMARY KEY, host text COLLATE "C" NOT NULL,
     username text COLLATE "C" NOT NULL, filename text NOT NULL, content_type text NOT NULL,
     size bigint NOT NULL, stored_at bigint NOT NULL, complete boolean NOT NULL);
   CREATE INDEX upload_files_owner ON upload_files (host, username, stored_at);
   CREATE INDEX upload_files_age ON upload_files (stored_at);
   CREATE TABLE upload_chunks (
     file_id text COLLATE "C" NOT NULL REFERENCES upload_files (id) ON DELETE CASCADE,
     seq integer NOT NULL, data bytea NOT NULL, PRIMARY KEY (file_id, seq));
   ALTER TABLE upload_chunks ALTER COLUMN data SET STORAGE EXTERNAL;`,
];
