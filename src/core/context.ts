// What every part of the server may reach: shared services, not the server's internals.
import type { Config } from "../config/schema.ts";
import type { Router } from "../router/router.ts";
import type { SessionRegistry } from "../router/sessions.ts";
import type { Store } from "../storage/store.ts";
import type { SerialQueues } from "./serial.ts";

export interface ServerContext {
  readonly config: Config;
  readonly router: Router;
  readonly sessions: SessionRegistry;
  readonly store: Store;
  /** Per-account ordering of storage-backed work. */
  readonly serial: SerialQueues;
  /** Random per-process secret (SCRAM answers for unknown users, ids). */
  readonly secret: Uint8Array;
}
