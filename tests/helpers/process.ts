// Runs main.ts as a separate process (the CLI as operators use it), and the slixmpp scripts.
import type { TestServer } from "./server.ts";
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

function parleyCommandLine(args: string[]): string[] {
  return [Deno.execPath(), "run", "-A", "--config", CONFIG, MAIN, ...args];
}

/** `parley ARGS` as a command; `prefix` runs it through another program (e.g. taskset). */
export function parleyCommand(
  args: string[],
  stdin: "piped" | "null" = "null",
  prefix: string[] = [],
): Deno.Command {
  const argv = parleyCommandLine(args);
  return new Deno.Command(prefix.length ? prefix[0] : argv[0], {
    args: [...prefix.slice(1), ...(prefix.length ? argv : argv.slice(1))],
    stdin,
    stdout: "piped",
    stderr: "piped",
  });
}

export async function parley(
  args: string[],
  input?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = parleyCommand(args, input === undefined ? "null" : "piped").spawn();
  if (input !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(input));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

export interface RunningServer {
  child: Deno.ChildProcess;
  ports: number[];
  /** Log lines read so far (JSON objects). */
  logs: Record<string, unknown>[];
  exited: Promise<Deno.CommandStatus>;
  /** Settles when the process's stderr has been read to the end (all logs are in `logs`). */
  logsDone: Promise<void>;
}

/**
 * Starts `parley serve --config FILE ARGS…` (e.g. `--node n2`) and waits for its "started" log
 * line; `prefix` runs it through another program (taskset, a shell setting ulimit).
 */
export async function serveProcess(
  configFile: string,
  prefix: string[] = [],
  args: string[] = [],
): Promise<RunningServer> {
  const child = parleyCommand(["serve", "--config", configFile, ...args], "null", prefix).spawn();
  const logs: Record<string, unknown>[] = [];
  const exited = child.status;
  void child.stdout.cancel();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const started = Promise.withResolvers<number[]>();
  const logsDone = (async () => {
    while (true) {
      const { value, done } = await lines.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const rec = JSON.parse(line);
          logs.push(rec);
          const addrs = rec.properties?.addresses as { port: number }[] | undefined;
          if (addrs) started.resolve(addrs.map((a) => a.port));
        } catch {
          logs.push({ raw: line });
        }
      }
    }
    started.reject(new Error("server exited before starting: " + JSON.stringify(logs)));
  })();
  const timer = setTimeout(() => started.reject(new Error("server did not start in time")), 30_000);
  const ports = await started.promise.finally(() => clearTimeout(timer));
  return { child, ports, logs, exited, logsDone };
}

/** Waits until the server has logged a message matching `pattern`; that log record. */
export async function logged(
  srv: RunningServer,
  pattern: RegExp,
  ms = 10_000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + ms;
  while (true) {
    const found = srv.logs.find((l) => pattern.test(String(l.message)));
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no log message matches ${pattern} in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs a slixmpp script from tests/interop with Debian's Python; returns its last JSON line. */
export async function interop(script: string, args: string[]): Promise<Record<string, unknown>> {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: [new URL(`../interop/${script}`, import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr).slice(-2000);
  if (out.code !== 0) throw new Error(`${script} exited with ${out.code}: ${stdout}\n${stderr}`);
  return JSON.parse(stdout.trim().split("\n").pop()!);
}

/**
 * Creates two accounts (password "secret") and runs a slixmpp script as them, with the arguments
 * PORT JID_A JID_B PASSWORD EXTRA…
 */
export async function interopPair(
  t: TestServer,
  script: string,
  a: string,
  b: string,
  ...extra: string[]
): Promise<Record<string, unknown>> {
  for (const jid of [a, b]) await t.addUser(jid.split("@")[0]);
  return await interop(script, [String(t.port), a, b, "secret", ...extra]);
}

export interface TerminalSession {
  /** Waits until the terminal has shown `text` (fails if the process ends first). */
  expect(text: string): Promise<void>;
  type(text: string): Promise<void>;
  /** Waits for the end; everything the terminal showed, and the exit code. */
  finish(): Promise<{ code: number; output: string }>;
}

/** `parley ARGS` on a pseudo-terminal (through script(1)), for what only terminals do. */
export function parleyOnTerminal(args: string[]): TerminalSession {
  const argv = parleyCommandLine(args).map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
  const child = new Deno.Command("script", {
    args: ["--quiet", "--return", "--command", argv, "/dev/null"],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  const more = async () => {
    const { value, done } = await reader.read();
    output += value ?? "";
    return !done;
  };
  return {
    async expect(text) {
      while (!output.includes(text)) {
        if (!await more()) throw new Error(`ended before "${text}": ${JSON.stringify(output)}`);
      }
    },
    type: (text) => writer.write(new TextEncoder().encode(text)),
    async finish() {
      while (await more());
      await writer.close().catch(() => {});
      return { code: (await child.status).code, output };
    },
  };
}
