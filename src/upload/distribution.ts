// Uploads over nodes: nothing to agree on. A slot is a token any node verifies with the cluster
// secret, and the files are in a store every node reads (the shared PostgreSQL in a cluster), so
// one node alone and a node of a cluster run the same; src/cluster has no part in uploads. The
// node's upload services (one per host) share one file store: one pool of connections.
import type { Config } from "../config/schema.ts";
import type { FileStore } from "./file_store.ts";
import { openFileStore } from "./open.ts";
import type { UploadDistribution } from "./service.ts";

export class SharedFiles implements UploadDistribution {
  #store: Promise<FileStore> | undefined;
  #users = 0;

  serve(): void {}

  /** The node's file store, opened by the first service that starts. */
  open(config: Config): Promise<FileStore> {
    this.#users++;
    return this.#store ??= openFileStore(config);
  }

  /** A service stopped: the store closes with the last one. */
  async release(): Promise<void> {
    if (--this.#users > 0 || !this.#store) return;
    const store = this.#store;
    this.#store = undefined;
    await (await store).close();
  }
}
