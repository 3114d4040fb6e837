// The storage interface. Both backends (the embedded SQLite one, PostgreSQL shared by a cluster)
// implement it with the same code (sql_store.ts, over a driver of each) and pass
// tests/unit/storage_suite.ts. Stanzas are stored as serialized XML. Every method reports a
// failure by rejecting, never by throwing.
//
// Several nodes may write the same account at once (a shared PostgreSQL): every read-modify-write
// is one atomic store operation (updateRosterItem, pushOffline's limit, a map's capped set), never
// a read followed by a write in the caller. No backend caches what it stores: a write that has
// resolved is seen by the next read from any node.
//
// Relational data has explicit methods here; features store theirs in the generic shapes
// (src/storage/shapes.ts: key-value, map and archive, by store name), which the Store hands out:
// vCards, private XML storage, persistent MUC rooms and the cluster secret among them (STORES).
import type { Shapes } from "./shapes.ts";

export type {
  ArchiveEntry,
  ArchiveItem,
  ArchivePage,
  ArchiveQuery,
  ArchiveStore,
  KeyValStore,
  MapSet,
  MapStore,
  NewArchiveItem,
} from "./shapes.ts";
export { UnknownItemError } from "./shapes.ts";

/** SCRAM keys for one hash (RFC 5802 §3); the password itself is never stored. */
export interface ScramCredential {
  salt: string; // base64
  iterations: number;
  storedKey: string; // base64
  serverKey: string; // base64
}

export interface Credentials {
  "SHA-1": ScramCredential;
  "SHA-256": ScramCredential;
}

export type Subscription = "none" | "to" | "from" | "both";

/** The contact receives the account's presence (RFC 6121: "from" or "both"). */
export const hasFrom = (s: string): boolean => s === "from" || s === "both";
/** The account receives the contact's presence ("to" or "both"). */
export const hasTo = (s: string): boolean => s === "to" || s === "both";

export interface RosterItem {
  jid: string;
  name?: string;
  subscription: Subscription;
  /** Pending-out: a subscription request we sent has not been answered (RFC 6121 "ask"). */
  ask: boolean;
  groups: string[];
}

export interface Roster {
  version: number;
  items: RosterItem[];
}

/** A roster item as written, and the roster version the write made. */
export interface RosterChange {
  item: RosterItem;
  version: number;
}

export interface PendingSubscription {
  contact: string;
  stanza: string;
}

/** What removing an account took with it besides its data: its archived items (every store). */
export interface AccountRemoval {
  archived: number;
}

export interface Store extends Shapes {
  createAccount(user: string, host: string, creds: Credentials): Promise<boolean>;
  getCredentials(user: string, host: string): Promise<Credentials | null>;
  setCredentials(user: string, host: string, creds: Credentials): Promise<boolean>;
  /**
   * Removes the account and everything stored for it, in one transaction: what was removed, or
   * null when there was no such account.
   */
  deleteAccount(user: string, host: string): Promise<AccountRemoval | null>;
  listAccounts(host: string): Promise<string[]>;

  getRoster(user: string, host: string): Promise<Roster>;
  getRosterItem(user: string, host: string, contact: string): Promise<RosterItem | null>;
  /**
   * Atomically replaces the item for `contact` (null when there is none) by what `change` returns
   * for it, and bumps the roster version; null when `change` returned null (nothing written).
   * `change` is synchronous and has no side effects.
   */
  updateRosterItem(
    user: string,
    host: string,
    contact: string,
    change: (current: RosterItem | null) => RosterItem | null,
  ): Promise<RosterChange | null>;
  /** Removes an item: the item as it was and the new roster version, or null when there was none. */
  deleteRosterItem(user: string, host: string, contact: string): Promise<RosterChange | null>;

  /** Inbound subscription requests not yet answered (RFC 6121 §3.1.3), kept across logins. */
  addPendingIn(user: string, host: string, contact: string, stanza: string): Promise<void>;
  removePendingIn(user: string, host: string, contact: string): Promise<boolean>;
  getPendingIn(user: string, host: string): Promise<PendingSubscription[]>;

  /** Stores an offline message unless `max` are already stored; false when full. */
  pushOffline(user: string, host: string, stanza: string, max: number): Promise<boolean>;
  /** Returns and deletes all offline messages, oldest first. */
  takeOffline(user: string, host: string): Promise<string[]>;

  getBlocklist(user: string, host: string): Promise<string[]>;
  block(user: string, host: string, jids: string[]): Promise<void>;
  /** Unblocks the given JIDs, or all of them when `jids` is null. */
  unblock(user: string, host: string, jids: string[] | null): Promise<void>;

  /**
   * The secret behind answers about unknown accounts (fake SCRAM salts): 32 random bytes made at
   * first use, then the same for every node and every restart, so that comparing answers across
   * nodes or over time tells nothing. Kept in the key-value STORES.secret of owner (user
   * "cluster", host ""), as a JSON string of lowercase hexadecimal; the first node to write it wins.
   */
  clusterSecret(): Promise<Uint8Array>;

  close(): Promise<void>;
}

export { ACCOUNT_TABLES } from "./schema.ts";

/**
 * Store names in the shapes of what the server keeps there (the migration into the shapes,
 * schema.ts's featuresIntoShapes, wrote these names).
 */
export const STORES = {
  /** Key-value: an account's vCard (XEP-0054), its XML as a string. */
  vcard: "vcard",
  /** Map: an account's private XML (XEP-0049), key "namespace name", the XML as a string. */
  private: "private",
  /** Map: a service's persistent rooms (owner user "", host the service), by room name. */
  rooms: "muc_rooms",
  /** Key-value: secrets by name (owner user the name, host ""), as lowercase hexadecimal. */
  secret: "secret",
  /** Archive: accounts' and rooms' messages (XEP-0313), an item per message, its stanza as XML. */
  mam: "mam",
  /** Key-value: an account's archiving preferences (XEP-0441), as mam/prefs.ts's ArchivePrefs. */
  mamPrefs: "mam_prefs",
  /** Map: an account's PEP nodes (XEP-0163) by name, as pep/nodes.ts's NodeRecord. */
  pepNodes: "pep_nodes",
  /** Map: an account's PEP subscriptions, key "node\njid", value the subscription state. */
  pepSubscriptions: "pep_subscriptions",
  /** Items: a PEP node's items (store name "pep/" + the node), by item id, pep/nodes.ts's Item. */
  pepItems: "pep/",
  /** Key-value: entity capabilities (XEP-0115), owner user "hash ver", host "": the features. */
  caps: "caps",
  /** Map: an account's push registrations (XEP-0357), key "jid\nnode", push/registrations.ts. */
  push: "push",
} as const;

/** Size of the cluster secret, in bytes. */
export const SECRET_BYTES = 32;

/** The store cannot be used for now (the database is locked or busy): worth retrying later. */
export class StoreBusyError extends Error {}
