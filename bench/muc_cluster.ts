// MUC across three nodes (part of BENCH_ONLY=muc): three `parley serve` processes pinned to the
// server core, with the occupants of one room spread round-robin over them, so the room's node
// sends each message to each other node once and that node fans it out to its own occupants.
// Measured next to the one-node figures of the same run: stanzas out per second at saturation,
// p50/p99 latency at 5,000 stanzas out per second, and the takeover after kill -9 of the room's
// node (from the kill to the first message reaching the surviving occupants again, and to the dead
// node's occupants shown leaving with status 333). A fresh cluster for each measurement.
import { parse } from "yaml";
import { sharedPostgres } from "../tests/helpers/postgres.ts";
import { testPki } from "../tests/helpers/cluster_pki.ts";
import { adminRequest, type RoomLookup } from "../src/admin/socket.ts";
import { BenchCluster, configure } from "./cluster.ts";
import { runGenerator } from "./generator.ts";

type Row = (what: string, value: string, yardstick: string) => void;

/** What one node measured for a room of some size (bench.ts, same run). */
export interface MucFigures {
  stanzasOut: number;
  p50: number;
  p99: number;
}

export const MUC_SIZES = [100, 1000];
/** The paced rate of the latency runs, in stanzas out per second. */
export const MUC_PACE = 5000;
/** Takeover probes sent per second: about 20,000 deliveries a second whatever the room's size. */
const probes = (occupants: number) => 20_000 / occupants;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function mucClusterBench(
  row: Row,
  iterations: number,
  serverCpu: string,
  oneNode: Map<number, MucFigures>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "parley-bench-muc-" });
  const pki = await testPki(["n1", "n2", "n3"]);
  const url = await (await sharedPostgres()).database();
  const file = await configure(dir, 3, url, pki.dir, iterations);
  const { dead_after: deadAfter } = parse(await Deno.readTextFile(file)).cluster;
  const c = new BenchCluster(dir, file, serverCpu ? ["taskset", "-c", serverCpu] : []);
  const fresh = async () => {
    await c.stop();
    await c.startAll(3);
  };
  const ports = () => [0, 1, 2].map((i) => c.port(i));
  const pids = c.pids;
  const load = (args: Record<string, unknown>, measured = pids) =>
    runGenerator({ port: ports()[0], ports: ports(), ...args }, measured);
  try {
    await fresh();
    await load({ scenario: "register" });
    for (const occupants of MUC_SIZES) {
      const one = oneNode.get(occupants);
      await fresh();
      const sat = await load({ scenario: "muc", occupants, room: `sat${occupants}` });
      row(
        `MUC, ${occupants} occupants on three nodes: stanzas out/s at saturation (nodes' core ${
          (sat.busy * 100).toFixed(0)
        }% busy)`,
        sat.stanzasOut.toFixed(0),
        "",
      );
      if (one) {
        row(
          "  three nodes / one node, same run",
          `${(sat.stanzasOut / one.stanzasOut).toFixed(2)}×`,
          "",
        );
      }
      await sleep(2000);
      const lat = await load({
        scenario: "muc",
        occupants,
        room: `lat${occupants}`,
        rate: MUC_PACE / occupants,
      });
      row(
        `  latency p50 / p99 at ${MUC_PACE.toLocaleString("en")} stanzas out/s (ms)${
          one ? `; one node: ${one.p50.toFixed(2)} / ${one.p99.toFixed(2)}` : ""
        }`,
        `${lat.p50.toFixed(2)} / ${lat.p99.toFixed(2)}`,
        "",
      );
    }
    for (const occupants of MUC_SIZES) {
      await fresh();
      const room = `takeover${occupants}`;
      const found = await adminRequest(c.node(0).dataDir, {
        cmd: "rooms",
        room: `${room}@conference.localhost`,
      }) as RoomLookup;
      const owner = Number(found.node!.slice(1)) - 1;
      const killed = c.node(owner);
      const t = await load({
        scenario: "muc-takeover",
        occupants,
        room,
        rate: probes(occupants),
        killPid: killed.process.child.pid,
        killPort: killed.process.ports[0],
        seconds: 30,
      }, () => []);
      await killed.process.exited;
      c.nodes[owner] = undefined;
      const ms = (a: number, b: number) =>
        `${a.toFixed(0)} / ${Number.isNaN(b) ? "—" : b.toFixed(0)}`;
      row(
        `MUC takeover after kill -9 of the room's node, ${occupants} occupants on three nodes (dead_after ${deadAfter}): first message after the kill delivered, to one / to all ${t.survivors} survivors (ms; a probe every ${
          (1000 / probes(occupants)).toFixed(0)
        } ms)`,
        ms(t.messageFirst, t.messageAll),
        `dead_after + 1 s`,
      );
      row(
        `  the dead node's ${t.gone} occupants shown leaving (333), to one / to all survivors (ms)`,
        ms(t.leftFirst, t.leftAll),
        "",
      );
    }
  } finally {
    await c.stop();
    await pki.remove();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
