// The storage interface. Every backend (the embedded SQLite one now, PostgreSQL for clusters)
// implements it and passes tests/unit/storage_suite.ts. Stanzas are stored as serialized XML.
// Every method reports a failure by rejecting, never by throwing.

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

export interface PendingSubscription {
  contact: string;
  stanza: string;
}

export interface Store {
  createAccount(user: string, host: string, creds: Credentials): Promise<boolean>;
  getCredentials(user: string, host: string): Promise<Credentials | null>;
  setCredentials(user: string, host: string, creds: Credentials): Promise<boolean>;
  /** Removes the account and everything stored for it, in one transaction. */
  deleteAccount(user: string, host: string): Promise<boolean>;
  listAccounts(host: string): Promise<string[]>;

  getRoster(user: string, host: string): Promise<Roster>;
  getRosterItem(user: string, host: string, contact: string): Promise<RosterItem | null>;
  /** Inserts or replaces an item; returns the new roster version. */
  putRosterItem(user: string, host: string, item: RosterItem): Promise<number>;
  /** Returns the new roster version, or null when there was no such item. */
  deleteRosterItem(user: string, host: string, contact: string): Promise<number | null>;

  /** Inbound subscription requests not yet answered (RFC 6121 §3.1.3), kept across logins. */
  addPendingIn(user: string, host: string, contact: string, stanza: string): Promise<void>;
  removePendingIn(user: string, host: string, contact: string): Promise<boolean>;
  getPendingIn(user: string, host: string): Promise<PendingSubscription[]>;

  /** Stores an offline message unless `max` are already stored; false when full. */
  pushOffline(user: string, host: string, stanza: string, max: number): Promise<boolean>;
  /** Returns and deletes all offline messages, oldest first. */
  takeOffline(user: string, host: string): Promise<string[]>;

  getVcard(user: string, host: string): Promise<string | null>;
  setVcard(user: string, host: string, vcard: string): Promise<void>;

  getPrivate(user: string, host: string, key: string): Promise<string | null>;
  /** Stores `xml` under `key`; false when the key is new and `max` keys are already stored. */
  setPrivate(user: string, host: string, key: string, xml: string, max: number): Promise<boolean>;

  getBlocklist(user: string, host: string): Promise<string[]>;
  block(user: string, host: string, jids: string[]): Promise<void>;
  /** Unblocks the given JIDs, or all of them when `jids` is null. */
  unblock(user: string, host: string, jids: string[] | null): Promise<void>;

  /** Persistent MUC rooms of one service: each room's state as saved (JSON). */
  loadRooms(service: string): Promise<StoredRoom[]>;
  saveRoom(service: string, room: string, state: string): Promise<void>;
  deleteRoom(service: string, room: string): Promise<void>;

  close(): Promise<void>;
}

export interface StoredRoom {
  room: string;
  state: string;
}

/** The store cannot be used for now (the database is locked or busy): worth retrying later. */
export class StoreBusyError extends Error {}
