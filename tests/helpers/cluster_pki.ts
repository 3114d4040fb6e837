// Cluster certificates for tests, made by Parley's own PKI in a temporary directory.
import { join } from "node:path";
import { caInit, certIssue } from "../../src/cluster/pki.ts";
import { type ClusterTls, readClusterTls } from "../../src/cluster/tls.ts";

export interface TestPki {
  dir: string;
  /** File paths of a node's credentials (the CA and NODE.pem/.key). */
  files(node: string): ClusterTls;
  /** PEM texts of a node's credentials. */
  creds(node: string): Promise<ClusterTls>;
  remove(): Promise<void>;
}

/** A new CA and a certificate for each of `nodes`. */
export async function testPki(nodes: string[]): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix: "parley-pki-" });
  await caInit(dir);
  for (const node of nodes) await certIssue(node, dir, dir);
  const files = (node: string) => ({
    ca: join(dir, "cluster-ca.pem"),
    cert: join(dir, `${node}.pem`),
    key: join(dir, `${node}.key`),
  });
  return {
    dir,
    files,
    creds: (node) => readClusterTls(files(node)),
    remove: () => Deno.remove(dir, { recursive: true }),
  };
}
