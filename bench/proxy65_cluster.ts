// proxy65 across two nodes (part of BENCH_ONLY=proxy65): two `parley serve` processes pinned to
// the server core, each running the proxy; streams whose target connects to n1 and requester to
// n2 (relayed over a native TLS link of their own between the nodes), measured in the same
// generator run as the same streams through n1 alone and as plain TCP copies.
import { parse, stringify } from "yaml";
import { sharedPostgres } from "../tests/helpers/postgres.ts";
import { testPki } from "../tests/helpers/cluster_pki.ts";
import { BenchCluster, configure } from "./cluster.ts";
import { runGenerator } from "./generator.ts";

type Row = (what: string, value: string, yardstick: string) => void;

const RUNS = [
  { streams: 1, mib: 1024, what: "one 1 GiB transfer" },
  { streams: 20, mib: 64, what: "20 concurrent 64 MiB transfers, total" },
];

export async function proxy65ClusterBench(row: Row, iterations: number, serverCpu: string) {
  const dir = await Deno.makeTempDir({ prefix: "parley-bench-proxy65-" });
  const pki = await testPki(["n1", "n2"]);
  const url = await (await sharedPostgres()).database();
  const file = await configure(dir, 2, url, pki.dir, iterations);
  const config = parse(await Deno.readTextFile(file));
  config.hosts[0].proxy65 = {
    domain: "proxy.localhost",
    bind: "127.0.0.1",
    port: 0,
    max_streams_per_user: 100,
  };
  await Deno.writeTextFile(file, stringify(config));
  const two = new BenchCluster(dir, file, serverCpu ? ["taskset", "-c", serverCpu] : []);
  try {
    await two.startAll(2);
    const port = (i: number) => two.port(i);
    const pids = two.pids;
    await runGenerator({ port: port(0), scenario: "register" }, pids);
    for (const { streams, mib, what } of RUNS) {
      const r = await runGenerator(
        { port: port(0), peerPort: port(1), scenario: "proxy", streams, bytes: mib << 20 },
        pids,
      );
      row(`proxy65 across two nodes: ${what} (MiB/s)`, r.across.toFixed(0), "");
      row("  the same through one node, same run (MiB/s)", r.proxy.toFixed(0), "");
      row("  plain TCP copies, same endpoints (MiB/s)", r.direct.toFixed(0), "");
      row("  two nodes / one node", `${(r.across / r.proxy * 100).toFixed(0)} %`, "");
      row("  two nodes / direct", `${(r.across / r.direct * 100).toFixed(0)} %`, "");
    }
  } finally {
    await two.stop();
    await pki.remove();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
