// What every part of the server may reach: shared services, not the server's internals.
import type { Config } from "../config/schema.ts";
import type { Router } from "../router/router.ts";
import type { SessionRegistry } from "../router/sessions.ts";
import type { Store } from "../storage/store.ts";
import type { SerialQueues } from "./serial.ts";
import type { AuthThrottle } from "../sasl/throttle.ts";
import type { DescriptorBudget } from "../stream/descriptor_budget.ts";
import type { SharedCaches } from "./caches.ts";
import type { Counters } from "../metrics/counters.ts";
import type { ArchiveWriter } from "../mam/archive_writer.ts";

export interface ServerContext {
  readonly config: Config;
  readonly router: Router;
  readonly sessions: SessionRegistry;
  readonly store: Store;
  /** Per-account ordering of storage-backed work. */
  readonly serial: SerialQueues;
  /** Persistent server secret (answers about unknown accounts that look like real ones). */
  readonly secret: Uint8Array;
  /** Failed-authentication limits per address and account, shared by every listener. */
  readonly authThrottle: AuthThrottle;
  /** Connections on every listener (XMPP and the proxy) against the descriptor limit. */
  readonly descriptors: DescriptorBudget;
  /** Per-node caches of stored data, invalidated on every node before a write is answered. */
  readonly caches: SharedCaches;
  /** What /metrics counts as it happens (stanzas, authentications, store failures). */
  readonly counters: Counters;
  /** Batched writes to the message archives (XEP-0313) of accounts and rooms. */
  readonly archive: ArchiveWriter;
  /**
   * The base URL (no trailing /) clients reach this node's http listener at for `domain`:
   * `http.public_url`, else the first http listener's address; undefined until it listens, or
   * without one.
   */
  httpUrl(domain: string): string | undefined;
}
