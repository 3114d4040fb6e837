import { join } from "node:path";
import { BenchCluster, configure } from "./cluster.ts";
import { sharedPostgres } from "../tests/helpers/postgres.ts";
import { testPki } from "../tests/helpers/cluster_pki.ts";
import { runGenerator } from "./generator.ts";
const dir = await Deno.makeTempDir();
const pki = await testPki(["n1", "n2", "n3"]);
const url = await (await sharedPostgres()).database();
const file = await configure(dir, 2, url, pki.dir, 16);
const wrap = ["bash", "-c", 'exec "$1" "$2" --cpu-prof --cpu-prof-dir=/tmp/prof "${@:3}"', "bash"];
const c = new BenchCluster(dir, file, ["taskset", "-c", "0", ...wrap]);
try {
  await c.start(0); await c.start(1); await c.formed();
  const port = (i: number) => c.node(i).process.ports[0];
  const pids = () => c.nodes.flatMap((n) => n ? [n.process.child.pid] : []);
  await runGenerator({ port: port(0), scenario: "register" }, pids);
  const body = Deno.args[0] ? "x".repeat(Number(Deno.args[0])) : undefined;
  const r = await runGenerator({ port: port(0), scenario: "throughput", concurrency: 50, peerPort: port(Deno.env.get("LOCAL") ? 0 : 1), seconds: 5, body }, pids);
  console.log(JSON.stringify(r), r.cpu / r.messages * 1e6);
} finally { await c.stop(); await pki.remove(); }
