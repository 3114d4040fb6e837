import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { ANY_NODE, meshOptions, parseAddress } from "../../src/cluster/config.ts";
import { parseDuration } from "../../src/config/duration.ts";
import type { Config } from "../../src/config/schema.ts";
import { testPki } from "../helpers/cluster_pki.ts";

/** A cluster's shared store, appended to every configuration below unless `local` is set. */
const SHARED_STORE =
  `storage: { type: postgres, url: "postgres://parley@db.example.org/parley" }\n`;

/** Parses `text` as `parley serve` would: the configuration, or problems as line:column: path: text. */
function check(text: string, node?: string, local = false): { cfg: Config; problems: string[] } {
  try {
    return {
      cfg: parseConfig(local ? text : text + SHARED_STORE, "parley.yaml", node),
      problems: [],
    };
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return { cfg: undefined!, problems: e.problems.map((p) => p.replace(/^parley\.yaml:/, "")) };
  }
}

const pki = await testPki(["n1", "n2", "n3"]);
const TLS =
  `  tls: { ca: ${pki.dir}/cluster-ca.pem, cert: "${pki.dir}/{node}.pem", key: "${pki.dir}/{node}.key" }\n`;
const PEERS = `  peers:
    - { node: n1, address: 127.0.0.1:7370 }
    - { node: n2, address: 127.0.0.2:7370 }
    - { node: n3, address: "[::1]:7370" }
`;

Deno.test("one file serves every node: {node}, {node_host}, --node and the listen default", () => {
  const text = `data_dir: data/{node}
listeners:
  - { type: c2s, bind: "{node_host}", port: 5222 }
cluster:
${PEERS}${TLS}`;
  const { cfg, problems } = check(text, "n2");
  assert.deepEqual(problems, []);
  assert.equal(cfg.data_dir, "data/n2");
  assert.equal(cfg.listeners[0].bind, "127.0.0.2");
  assert.equal(cfg.cluster!.listen, "127.0.0.2:7370");
  assert.equal(cfg.cluster!.tls.cert, `${pki.dir}/n2.pem`);
  const options = meshOptions(cfg.cluster!, { ca: "", cert: "", key: "" });
  assert.deepEqual(options.listen, { host: "127.0.0.2", port: 7370 });
  assert.deepEqual(options.peers[2], { node: "n3", host: "::1", port: 7370 });
  assert.equal(options.heartbeatMs, 1000);
  assert.equal(options.deadAfterMs, 5000);
  assert.equal(check(text, "n3").cfg.listeners[0].bind, "::1");
});

Deno.test("commands that use only the shared store read the file as its first peer", () => {
  const text = `data_dir: data/{node}\ncluster:\n${PEERS}${TLS}`;
  assert.equal(check(text, ANY_NODE).cfg.data_dir, "data/n1");
  assert.equal(
    check(text.replace("cluster:\n", "cluster:\n  node: n3\n"), ANY_NODE).cfg.data_dir,
    "data/n3",
  );
});

Deno.test("the cluster section's mistakes are reported where they are", () => {
  assert.deepEqual(check(`cluster:\n${PEERS}${TLS}`).problems, [
    "2:3: cluster.node: is required (or give --node)",
  ]);
  assert.deepEqual(check(`cluster:\n  node: n4\n${PEERS}${TLS}`).problems, [
    "4:5: cluster.peers: has no entry for this node (n4)",
  ]);
  assert.deepEqual(check(`cluster:\n  node: N1\n${PEERS}${TLS}`).problems, [
    `2:9: cluster.node: "N1" is not a node name`,
  ]);
  assert.deepEqual(
    check(`cluster:
  node: n1
  peers:
    - { node: n1, address: 127.0.0.1:7370 }
    - { node: n1, address: 127.0.0.2:7370 }
    - { node: n3, address: 127.0.0.1:7370 }
    - { node: n4, address: nowhere }
  heartbeat: 1 s
  dead_after: 1s
  tls: { cert: "/nonexistent/{node}.pem", ca: ${pki.dir}/cluster-ca.pem, key: ${pki.dir}/n1.key }
`).problems,
    [
      "5:15: cluster.peers[1].node: n1 is listed twice",
      "6:28: cluster.peers[2].address: 127.0.0.1:7370 is listed twice",
      "7:28: cluster.peers[3].address: expected host:port",
      "8:14: cluster.heartbeat: expected a duration such as 1s or 500ms",
      "10:16: cluster.tls.cert: /nonexistent/n1.pem: no such file",
    ],
  );
  assert.deepEqual(check(`cluster:\n  node: n1\n  dead_after: 1500ms\n${PEERS}${TLS}`).problems, [
    "3:15: cluster.dead_after: must be at least twice the heartbeat",
  ]);
  assert.deepEqual(check(`data_dir: data/{node}\n`).problems, [
    "1:11: data_dir: {node} needs a cluster section",
  ]);
});

Deno.test("a store local to one node in a cluster is an error where it is said", () => {
  const section = `cluster:\n  node: n1\n${PEERS}${TLS}`;
  assert.deepEqual(check(`${section}storage:\n  type: sqlite\n`, undefined, true).problems, [
    "9:9: storage.type: sqlite is local to one node: a cluster needs a shared store (type: postgres)",
  ]);
  // Left to its default, the error points at the cluster section.
  assert.deepEqual(check(section, undefined, true).problems, [
    "2:3: storage.type: sqlite is local to one node: a cluster needs a shared store (type: postgres)",
  ]);
  assert.deepEqual(check(section).problems, []);
});

Deno.test("durations and addresses", () => {
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("2m"), 120_000);
  assert.equal(parseDuration("1.5s"), undefined);
  assert.deepEqual(parseAddress("[fe80::1]:7370"), { host: "fe80::1", port: 7370 });
  assert.deepEqual(parseAddress("node1.example.org:1"), { host: "node1.example.org", port: 1 });
  assert.equal(parseAddress("::1:7370"), undefined);
  assert.equal(parseAddress("h:70000"), undefined);
});

Deno.test("remove the test PKI", async () => {
  await pki.remove();
});
