import "reflect-metadata";
import assert from "node:assert/strict";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { caInit, certIssue } from "../../src/cluster/pki.ts";
import { clusterCommand } from "../../src/cli/cluster.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "parley-pki-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a node certificate names its node, serves both TLS roles and chains to the CA", async () => {
  await withDir(async (dir) => {
    const ca = await caInit(join(dir, "ca"));
    const files = await certIssue("n2", join(dir, "ca"), join(dir, "n2"));
    assert.equal(files.cert, join(dir, "n2", "n2.pem"));
    const cert = new x509.X509Certificate(await Deno.readTextFile(files.cert));
    const caCert = new x509.X509Certificate(await Deno.readTextFile(ca.cert));
    assert.equal(cert.subject, "CN=n2");
    assert.deepEqual(
      cert.getExtension(x509.SubjectAlternativeNameExtension)!.names.toJSON(),
      [{ type: "dns", value: "n2" }],
    );
    assert.deepEqual([...cert.getExtension(x509.ExtendedKeyUsageExtension)!.usages], [
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.clientAuth,
    ]);
    assert.equal(cert.getExtension(x509.BasicConstraintsExtension)!.ca, false);
    assert.equal(caCert.getExtension(x509.BasicConstraintsExtension)!.ca, true);
    assert.ok(await cert.verify({ publicKey: caCert.publicKey }));
    assert.equal(cert.publicKey.algorithm.name, "ECDSA");
    for (const key of [ca.key, files.key]) {
      assert.equal((await Deno.stat(key)).mode! & 0o777, 0o600);
    }
  });
});

Deno.test("the CLI makes a CA once, issues certificates, and explains its mistakes", async () => {
  await withDir(async (dir) => {
    const out: string[] = [];
    const err: string[] = [];
    const log = console.log, error = console.error;
    console.log = (s: string) => out.push(s);
    console.error = (s: string) => err.push(s);
    try {
      assert.equal(await clusterCommand(["ca", "init", "--out", dir]), 0);
      assert.match(out.join("\n"), /cluster CA written: .*cluster-ca\.pem/);
      assert.equal(await clusterCommand(["ca", "init", "--out", dir]), 1);
      assert.match(err.pop()!, /cluster-ca\.pem exists: a new CA would lock every node out/);
      assert.equal(await clusterCommand(["cert", "issue", "n1", "--ca", dir, "--out", dir]), 0);
      assert.match(out.pop()!, /certificate of node n1 written: .*n1\.pem and .*n1\.key/);
      // Reissuing a node's certificate (renewal) is allowed.
      assert.equal(await clusterCommand(["cert", "issue", "n1", "--ca", dir, "--out", dir]), 0);
      assert.equal(await clusterCommand(["cert", "issue", "N_1", "--ca", dir, "--out", dir]), 1);
      assert.match(err.pop()!, /"N_1" is not a node name/);
      assert.equal(
        await clusterCommand(["cert", "issue", "n2", "--ca", join(dir, "none"), "--out", dir]),
        1,
      );
      assert.match(err.pop()!, /cannot read the cluster CA \(.*cluster-ca\.pem\): no such file/);
      assert.equal(await clusterCommand(["cert", "issue", "n2", "--out", dir]), 2);
      assert.equal(await clusterCommand(["ca", "init", "--bogus"]), 2);
      assert.match(err.join("\n"), /Usage:/);
    } finally {
      console.log = log;
      console.error = error;
    }
  });
});
