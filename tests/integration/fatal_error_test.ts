// A fatal error in `parley serve` (an uncaught exception, an unhandled rejection) is one JSON log
// line of level fatal on stderr, then the process exits non-zero. The error is raised from outside
// the server's code, with nothing added to it: Deno's --preload runs a test module in the same
// process, which throws when the test signals it (SIGUSR2) once the server has started.
import assert from "node:assert/strict";
import { join } from "node:path";
import { FATAL_EXIT_CODE } from "../../src/log/fatal.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

/** What the preloaded module does on SIGUSR2, from a timer (not from the signal's callback). */
const RAISE = {
  exception: `setTimeout(() => { throw new TypeError("boom from a timer"); });`,
  rejection: `setTimeout(() => { Promise.reject(new RangeError("boom from a promise")); });`,
  string: `setTimeout(() => { throw "a bare string"; });`,
};

interface FatalRecord {
  level: string;
  message: string;
  logger: string;
  properties: { origin: string; error: { name: string; message: string; stack?: string } };
}

interface Run {
  code: number;
  stdout: string;
  /** stderr, line by line. */
  lines: string[];
}

/** Runs `parley serve` with a preloaded module that raises `what` once the server listens. */
async function serveAndRaise(what: keyof typeof RAISE): Promise<Run> {
  const dir = await Deno.makeTempDir({ prefix: "parley-fatal-" });
  try {
    const config = join(dir, "parley.yaml");
    await Deno.writeTextFile(
      config,
      `data_dir: ${dir}
log: { level: info }
listeners:
  - { type: c2s, bind: 127.0.0.1, port: 0 }
`,
    );
    const preload = join(dir, "raise.ts");
    await Deno.writeTextFile(
      preload,
      `Deno.addSignalListener("SIGUSR2", () => { ${RAISE[what]} });\n`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--config",
        CONFIG,
        "--preload",
        preload,
        MAIN,
        "serve",
        "--config",
        config,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdout = new Response(child.stdout).text();
    const lines: string[] = [];
    let signalled = false;
    let buf = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    try {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          lines.push(line);
          // The PID file is written last: the server is up, its handler installed.
          if (!signalled && line.includes("process id")) {
            signalled = true;
            child.kill("SIGUSR2");
          }
        }
      }
      if (buf) lines.push(buf);
      const { code } = await child.status;
      assert.ok(signalled, `the server did not start: ${lines.join("\n")}`);
      return { code, stdout: await stdout, lines };
    } finally {
      clearTimeout(timer);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every stderr line is a JSON log record; exactly one is fatal, the last one. */
function theFatalLine(run: Run): FatalRecord {
  const records: FatalRecord[] = run.lines.map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      assert.fail(`a line outside the JSON log: ${JSON.stringify(line)}`);
    }
  });
  const fatal = records.filter((r) => r.level === "FATAL");
  assert.equal(fatal.length, 1, run.lines.join("\n"));
  assert.equal(records.at(-1), fatal[0], "the fatal line is the last one");
  return fatal[0];
}

Deno.test("an uncaught exception in parley serve: one fatal JSON line, exit non-zero", async () => {
  const run = await serveAndRaise("exception");
  assert.equal(run.code, FATAL_EXIT_CODE);
  assert.notEqual(run.code, 0);
  assert.equal(run.stdout, "");
  const fatal = theFatalLine(run);
  assert.equal(
    fatal.message,
    "fatal error (uncaught exception), exiting: TypeError: boom from a timer",
  );
  assert.equal(fatal.logger, "parley.server");
  const { origin, error } = fatal.properties;
  assert.equal(origin, "uncaught exception");
  assert.equal(error.name, "TypeError");
  assert.equal(error.message, "boom from a timer");
  assert.match(error.stack ?? "", /^TypeError: boom from a timer\n\s+at /);
  assert.match(error.stack ?? "", /raise\.ts/);
});

Deno.test("an unhandled rejection in parley serve: one fatal JSON line, exit non-zero", async () => {
  const run = await serveAndRaise("rejection");
  assert.equal(run.code, FATAL_EXIT_CODE);
  assert.equal(run.stdout, "");
  const fatal = theFatalLine(run);
  assert.equal(
    fatal.message,
    "fatal error (unhandled rejection), exiting: RangeError: boom from a promise",
  );
  const { origin, error } = fatal.properties;
  assert.equal(origin, "unhandled rejection");
  assert.equal(error.name, "RangeError");
  assert.equal(error.message, "boom from a promise");
  assert.match(error.stack ?? "", /^RangeError: boom from a promise\n\s+at /);
});

Deno.test("a thrown value that is no Error is fatal too, named by its type", async () => {
  const run = await serveAndRaise("string");
  assert.equal(run.code, FATAL_EXIT_CODE);
  const fatal = theFatalLine(run);
  assert.equal(fatal.message, "fatal error (uncaught exception), exiting: string: a bare string");
  assert.deepEqual(fatal.properties.error, { name: "string", message: "a bare string" });
});
