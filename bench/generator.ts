// Runs the load generator (bench/load.ts) pinned to its own core, and reads what the measured
// server processes used meanwhile from /proc (CPU time, resident memory).
import { lines } from "../tests/helpers/lines.ts";

export const LOAD_CPU = "1";
export const USERS = 200;
export const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 8);
/** How the generator's clients reach the server: c2s over TCP, or RFC 7395 on the http listener. */
export type Transport = "tcp" | "websocket";
/** Runs a command with a raised descriptor limit (thousands of sessions). */
export const ulimit = ["bash", "-c", 'ulimit -n 20000 2>/dev/null; exec "$@"', "bash"];

const loadScript = new URL("./load.ts", import.meta.url).pathname;
const denoConfig = new URL("../deno.json", import.meta.url).pathname;

/** The generator with `args` (a scenario of load.ts and its parameters). */
export function generatorCommand(args: Record<string, unknown>): Deno.Command {
  return pinnedGenerator(loadScript, { users: USERS, seconds: SECONDS, concurrency: 32, ...args });
}

/**
 * A generator script run with `arg` (as JSON) on LOAD_CPU, with the raised descriptor limit; its
 * result lines on stdout.
 */
export function pinnedGenerator(script: string, arg: unknown): Deno.Command {
  return new Deno.Command("bash", {
    args: [
      ...ulimit.slice(1),
      "taskset",
      "-c",
      LOAD_CPU,
      Deno.execPath(),
      "run",
      "-A",
      "--config",
      denoConfig,
      script,
      JSON.stringify(arg),
    ],
    stdout: "piped",
    stderr: "inherit",
  });
}

/** CPU seconds process `pid` has used so far (user + system). */
export function cpuSeconds(pid: number): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks
}

export function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
}

/**
 * Runs a scenario; `cpu` is what the measured processes used between the generator's
 * {"phase":"start"} line and its result (CPU seconds), `busy` that per second of wall time
 * (1 = one core saturated).
 */
export async function runGenerator(
  args: Record<string, unknown>,
  pids: () => number[],
  /** Called when the measured phase starts and when it ends (to read other counters). */
  at?: (phase: "start" | "end") => Promise<void>,
): Promise<Record<string, number>> {
  const used = () => pids().reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const child = generatorCommand(args).spawn();
  let cpu0 = used();
  let t0 = performance.now();
  let result: Record<string, number> = {};
  let cpu = 0;
  let busy = 0;
  for await (const text of lines(child.stdout)) {
    const line = JSON.parse(text);
    if (line.phase === "start") {
      await at?.("start");
      cpu0 = used();
      t0 = performance.now();
    } else {
      cpu = used() - cpu0;
      busy = cpu / ((performance.now() - t0) / 1000);
      result = line;
      await at?.("end");
    }
  }
  await child.status;
  return { ...result, cpu, busy };
}

/** A generator's output, a JSON line at a time (its stdout: one reader per child). */
export function jsonLines(child: Deno.ChildProcess): () => Promise<Record<string, number>> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  return async () => {
    let nl;
    while ((nl = buf.indexOf("\n")) < 0) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the generator exited early");
      buf += value;
    }
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    return JSON.parse(line);
  };
}

/** Waits for an idle generator's first line: how many sessions it holds logged in. */
export async function idleReady(idle: Deno.ChildProcess): Promise<number> {
  return (await jsonLines(idle)()).ready;
}
