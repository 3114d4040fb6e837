// Uploads over nodes: nothing to agree on. A slot is a token any node verifies with the cluster
// secret, and the files are in a store every node reads (the shared PostgreSQL in a cluster), so
// one node alone and a node of a cluster run the same; src/cluster has no part in uploads.
import type { UploadDistribution } from "./service.ts";

export class SharedFiles implements UploadDistribution {
  serve(): void {}
}
