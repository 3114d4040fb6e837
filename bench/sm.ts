// Stream management (XEP-0198) in `deno task bench` (BENCH_ONLY=sm): what enabling it with
// resumption on every session costs, next to the same without it in the same run, and how long a
// resumption takes. The one-node figures run on bench.ts's server (bench.ts calls `smCompare`,
// `resumeRows` and its memory function); `smClusterBench` runs the same comparison over two
// `parley serve` processes pinned to the server core (senders on n1, receivers on n2: every
// session's replica on the other node), then resumption on the same node, on the other node with
// the holder alive, and on n2 after kill -9 of n1 holding the session (n1 restarted each round).
import { parse } from "yaml";
import { sharedPostgres } from "../tests/helpers/postgres.ts";
import { testPki } from "../tests/helpers/cluster_pki.ts";
import { BenchCluster, configure } from "./cluster.ts";
import { runGenerator } from "./generator.ts";

type Row = (what: string, value: string, yardstick: string) => void;
type Load = (args: Record<string, unknown>) => Promise<Record<string, number>>;

/** Rounds of each case, alternately without and with stream management. */
export const SM_ROUNDS = Number(Deno.env.get("BENCH_SM_ROUNDS") ?? 5);
/** Cut-and-resume rounds on one node and between two. */
export const RESUME_ROUNDS = Number(Deno.env.get("BENCH_SM_RESUMES") ?? 50);
/** kill -9 rounds, each restarting the killed node. */
const KILL_ROUNDS = Number(Deno.env.get("BENCH_SM_KILLS") ?? 5);
/** The fixed rate of the latency runs (messages/s), as bench.ts's latency rows. */
const RATE = 2000;
/** The bound on stream management's CPU per message. */
const GOAL = 1.3;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * One-to-one messages at saturation and latency at RATE, rounds alternately without and with
 * stream management (resumable, on every session); `extra` places the users (e.g. `peerPort`).
 * Throughput keeps each case's round of least CPU per message of the measured processes (other
 * work on a shared machine only ever adds to it); latency the median of the rounds' p50 and p99.
 * Returns the ratio SM / no SM of CPU per message.
 */
export async function smCompare(
  load: Load,
  row: Row,
  where: string,
  core: string,
  extra: Record<string, unknown> = {},
): Promise<number> {
  const cases = [false, true];
  const best = cases.map(() => ({ us: Infinity, rate: 0, busy: 0, acks: 0 }));
  const all: string[][] = [[], []];
  const perRound: number[][] = [[], []];
  for (let round = 0; round < SM_ROUNDS; round++) {
    for (const [k, sm] of cases.entries()) {
      const r = await load({ scenario: "throughput", concurrency: 50, sm, ...extra });
      const us = r.cpu / r.messages * 1e6;
      perRound[k].push(us);
      all[k].push(`${r.rate.toFixed(0)}/s ${us.toFixed(2)} µs ${(r.busy * 100).toFixed(0)}%`);
      if (us < best[k].us) best[k] = { us, rate: r.rate, busy: r.busy, acks: r.acks / r.messages };
    }
  }
  console.log(`  rounds ${where}: without SM ${all[0].join(", ")}; with SM ${all[1].join(", ")}`);
  const lat = cases.map(() => ({ p50: [] as number[], p99: [] as number[] }));
  for (let round = 0; round < SM_ROUNDS; round++) {
    for (const [k, sm] of cases.entries()) {
      const r = await load({ scenario: "latency", concurrency: 50, rate: RATE, sm, ...extra });
      lat[k].p50.push(r.p50);
      lat[k].p99.push(r.p99);
    }
  }
  console.log(
    `  latency rounds ${where}: p99 without SM ${lat[0].p99.map((x) => x.toFixed(2))}, with SM ${
      lat[1].p99.map((x) => x.toFixed(2))
    }`,
  );
  const [off, on] = best;
  const busy = (b: { busy: number }) => `${core} ${(b.busy * 100).toFixed(0)}% busy`;
  row(
    `SM: messages/s routed one-to-one at saturation, ${where} (${busy(on)})`,
    on.rate.toFixed(0),
    `without SM, same run: ${off.rate.toFixed(0)} (${busy(off)})`,
  );
  row(
    `  CPU per message (µs; least of ${SM_ROUNDS} runs each, alternately; median)`,
    `${on.us.toFixed(2)}; ${median(perRound[1]).toFixed(2)}`,
    `without SM: ${off.us.toFixed(2)}; ${median(perRound[0]).toFixed(2)}`,
  );
  const ratio = on.us / off.us;
  row(
    "  SM / no SM: CPU per message (least; median); messages/s",
    `${ratio.toFixed(2)}×; ${(median(perRound[1]) / median(perRound[0])).toFixed(2)}×; ${
      (on.rate / off.rate).toFixed(2)
    }×`,
    `goal ≤ ${GOAL}× CPU per message`,
  );
  row(
    "  requests for acknowledgement answered (`<r/>`, `<a/>`) per message, with SM",
    on.acks.toFixed(3),
    "",
  );
  const ms = (l: { p50: number[]; p99: number[] }) =>
    `${median(l.p50).toFixed(3)} / ${median(l.p99).toFixed(3)}`;
  row(
    `SM: latency p50 / p99 at 2,000 messages/s, ${where} (ms; median of ${SM_ROUNDS} runs)`,
    ms(lat[1]),
    `without SM: ${ms(lat[0])}`,
  );
  return ratio;
}

/** The rows of a `resume` run of the generator (bench/load.ts). */
export function resumeRows(row: Row, where: string, r: Record<string, number>): void {
  row(
    `SM: resumption ${where}: new connection (TCP, SCRAM) to \`<resumed/>\`, p50 / p99 (ms; ${r.rounds} rounds)`,
    `${r.resumedP50.toFixed(2)} / ${r.resumedP99.toFixed(2)}`,
    `of which the login, p50: ${r.authedP50.toFixed(2)}`,
  );
  row(
    "  to the last of 10 messages queued while detached, p50 / p99 (ms); rounds with them not once each in order",
    `${r.deliveredP50.toFixed(2)} / ${r.deliveredP99.toFixed(2)}; ${r.anomalies}`,
    "",
  );
}

export async function smClusterBench(row: Row, iterations: number, serverCpu: string) {
  const dir = await Deno.makeTempDir({ prefix: "parley-bench-sm-" });
  const pki = await testPki(["n1", "n2"]);
  const url = await (await sharedPostgres()).database();
  const file = await configure(dir, 2, url, pki.dir, iterations);
  const { dead_after: deadAfter } = parse(await Deno.readTextFile(file)).cluster;
  const two = new BenchCluster(dir, file, serverCpu ? ["taskset", "-c", serverCpu] : []);
  try {
    await two.startAll(2);
    const port = (i: number) => two.port(i);
    const pids = two.pids;
    const load: Load = (args) => runGenerator({ port: port(0), ...args }, pids);
    await load({ scenario: "register" });
    await smCompare(load, row, "two nodes (sender on n1, receiver on n2)", "nodes' core", {
      peerPort: port(1),
    });

    const resumes = { scenario: "resume", rounds: RESUME_ROUNDS, peerPort: port(1), seconds: 10 };
    resumeRows(row, "on n1 of two", await load({ ...resumes, ports: [port(0)], resource: "a" }));
    resumeRows(
      row,
      "on the other node of two, holder alive",
      await load({ ...resumes, ports: [port(0), port(1)], resource: "b" }),
    );

    // kill -9 of the node holding the session: it dies with the client's connection; the client
    // resumes on n2, which holds the replica. A fresh session each round; n1 comes back between.
    const killed: number[] = [];
    const attempts: number[] = [];
    let delivered = 0;
    for (let k = 0; k < KILL_ROUNDS; k++) {
      const holder = two.node(0);
      const r = await runGenerator({
        scenario: "resume",
        port: port(0),
        resumePort: port(1),
        peerPort: port(1),
        killPid: holder.process.child.pid,
        resource: `k${k}`,
        seconds: 20,
      }, () => []);
      await holder.process.exited;
      two.nodes[0] = undefined;
      killed.push(r.resumedP50);
      attempts.push(r.attempts);
      if (r.anomalies === 0) delivered++;
      await two.start(0);
      await two.formed();
    }
    console.log(`  kill -9 rounds: ${killed.map((x) => x.toFixed(0)).join(", ")} ms`);
    row(
      `SM: resumption on n2 after kill -9 of n1 holding the session (dead_after ${deadAfter}): kill to \`<resumed/>\`, median / max (ms; ${killed.length} rounds)`,
      `${median(killed).toFixed(0)} / ${Math.max(...killed).toFixed(0)}`,
      "",
    );
    row(
      "  `<resume/>` sent per round (retried every 20 ms after `<failed/>`), median; rounds where the 10 messages sent just after the kill arrived once each, in order",
      `${median(attempts)}; ${delivered} of ${killed.length}`,
      "",
    );
  } finally {
    await two.stop();
    await pki.remove();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
