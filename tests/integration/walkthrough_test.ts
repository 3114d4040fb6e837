// The three-node walkthrough of docs/clustering.md ("## Three nodes on one machine"), run as
// written: its shell commands and its parley.yaml are read from the document at test time (no
// copy here), so the test fails when a command there stops working. Each command line is run on
// its own with `bash -e -o pipefail -c LINE` in a fresh directory, in the document's order, and a
// failure names the document's line.
//
// What must differ in a test, and only that, is substituted:
// - `parley` (the binary `deno task compile` builds) is a script named `parley` first on PATH that
//   runs `deno run <the permissions of deno.json's "parley" task> --config deno.json main.ts`
//   from this checkout (exec'd, so a background `parley serve` has the server's own PID). The
//   command lines themselves keep the word `parley`.
// - `sudo -u postgres` becomes `runuser -u postgres --` (the test runs as root, without sudo), and
//   those lines get PGHOST/PGPORT naming the test's PostgreSQL (its own socket directory and
//   port, in place of the system cluster's defaults).
// - That PostgreSQL (tests/helpers/postgres.ts startPasswordPostgres) authenticates as Debian's
//   does: peer on the socket, `host all all 127.0.0.1/32 scram-sha-256` on TCP.
// - In parley.yaml: the storage URL's host and port become the test's PostgreSQL (127.0.0.1 and
//   its free port; user, password and database as written), and each port (the c2s listener's
//   5222, the peers' 7370) becomes a port free on every peer's host; the expected
//   `parley cluster status` addresses follow the same mapping.
// - `parley user add` reads its password from standard input (the operator types it).
// - The line that starts the nodes in the background (`… parley serve … & done`) has its output
//   sent to serve.log and is followed by `jobs -p`, which records the servers' PIDs.
// - `parley cluster status` is asked again until every node shows (a person types it after the
//   nodes have started; a test must wait for that), at most STATUS_WAIT_MS.
// Then the document's stop command (`for n in n1 n2 n3; do kill $(cat data/$n/parley.pid); done`)
// ends the nodes; whatever is left of the processes this test started (by their PIDs) is killed
// afterwards, and the PostgreSQL is stopped.
import assert from "node:assert/strict";
import { join } from "node:path";
import { isMap, isScalar, isSeq, parseDocument, type Scalar } from "yaml";
import { startPasswordPostgres } from "../helpers/postgres.ts";

const DOC = "docs/clustering.md";
const ROOT = new URL("../../", import.meta.url);
const MAIN = new URL("main.ts", ROOT).pathname;
const DENO_JSON = new URL("deno.json", ROOT).pathname;
const HEADING = /^## Three nodes on one machine\s*$/;
const STATUS_WAIT_MS = 20_000;
const PASSWORD = "alice's password";

interface DocLine {
  /** Line in the document (1-based). */
  line: number;
  text: string;
}

interface Fence {
  lang: string;
  /** Line of the block's first content line in the document. */
  line: number;
  lines: string[];
}

interface Walkthrough {
  /** The first shell block: role, database, cluster CA, node certificates. */
  setup: DocLine[];
  config: Fence;
  /** The second shell block: config check, user add, the nodes, cluster status. */
  run: DocLine[];
  /** The block showing `parley cluster status`'s output. */
  status: Fence;
  /** Inline commands in the prose: `chmod 600 parley.yaml`, the stop loop. */
  chmod: DocLine;
  stop: DocLine;
}

/** The fenced blocks of the section, and its inline code, with their lines. */
function readWalkthrough(markdown: string): Walkthrough {
  const lines = markdown.split("\n");
  const start = lines.findIndex((l) => HEADING.test(l));
  assert.ok(start >= 0, `${DOC}: no section "## Three nodes on one machine"`);
  let end = lines.findIndex((l, i) => i > start && /^## /.test(l));
  if (end < 0) end = lines.length;
  const fences: Fence[] = [];
  const prose: DocLine[] = [];
  for (let i = start + 1; i < end; i++) {
    const open = /^(`{3,}|~{3,})\s*([\w-]*)\s*$/.exec(lines[i]);
    if (!open) {
      prose.push({ line: i + 1, text: lines[i] });
      continue;
    }
    const close = new RegExp(`^${open[1][0]}{${open[1].length},}\\s*$`);
    let j = i + 1;
    while (j < end && !close.test(lines[j])) j++;
    fences.push({ lang: open[2], line: i + 2, lines: lines.slice(i + 1, j) });
    i = j;
  }
  const shell = fences.filter((f) => f.lang === "sh" || f.lang === "bash");
  const yaml = fences.filter((f) => /^ya?ml$/.test(f.lang));
  const plain = fences.filter((f) => f.lang === "");
  assert.equal(shell.length, 2, `${DOC}: the walkthrough should have two shell blocks`);
  assert.equal(yaml.length, 1, `${DOC}: the walkthrough should have one yaml block`);
  assert.equal(plain.length, 1, `${DOC}: the walkthrough should show one status output`);
  const commands = (f: Fence) =>
    f.lines.map((text, k) => ({ line: f.line + k, text }))
      .filter((l) => l.text.trim() && !/^\s*#/.test(l.text));
  const inline = (pattern: RegExp, what: string): DocLine => {
    for (const p of prose) {
      for (const [, code] of p.text.matchAll(/`([^`]+)`/g)) {
        if (pattern.test(code)) return { line: p.line, text: code };
      }
    }
    throw new Error(`${DOC}: the walkthrough's text gives no ${what}`);
  };
  return {
    setup: commands(shell[0]),
    config: yaml[0],
    run: commands(shell[1]),
    status: plain[0],
    chmod: inline(/^chmod\b.*parley\.yaml$/, "chmod command for parley.yaml"),
    stop: inline(/\bkill\b.*parley\.pid/, "command that stops the nodes"),
  };
}

/** A port nobody listens on at any of `hosts` (all loopback addresses). */
function freePortOn(hosts: string[]): number {
  for (let attempt = 0; attempt < 100; attempt++) {
    const first = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (first.addr as Deno.NetAddr).port;
    const held: Deno.Listener[] = [first];
    try {
      for (const hostname of hosts.filter((h) => h !== "127.0.0.1")) {
        held.push(Deno.listen({ hostname, port }));
      }
      return port;
    } catch {
      // taken on another address: try another
    } finally {
      for (const l of held) l.close();
    }
  }
  throw new Error(`no port free on all of ${hosts.join(", ")}`);
}

/**
 * The configuration with the substitutions above: each port number of a listener or a peer
 * address mapped to a free one (the same doc port to the same free port), the storage URL
 * pointed at the test's PostgreSQL. Also returns the port mapping.
 */
function testConfig(
  text: string,
  docLine: number,
  pgPort: number,
): { text: string; ports: Map<number, number>; role: string; database: string } {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length) {
    const [e] = doc.errors;
    const at = e.linePos ? `${docLine + e.linePos[0].line - 1}:${e.linePos[0].col}` : docLine;
    throw new Error(`${DOC}:${at}: parley.yaml is not valid YAML: ${e.message.split("\n")[0]}`);
  }
  const edits: { node: Scalar; value: string }[] = [];
  const peers = doc.getIn(["cluster", "peers"], true);
  assert.ok(isSeq(peers), `${DOC}: parley.yaml has no cluster.peers list`);
  const addresses = peers.items.map((p) => {
    const a = isMap(p) ? p.get("address", true) : undefined;
    assert.ok(isScalar(a) && typeof a.value === "string", `${DOC}: a peer without an address`);
    const m = /^(.+):(\d+)$/.exec(a.value);
    assert.ok(m, `${DOC}: peer address ${a.value} is not host:port`);
    return { node: a, host: m[1], port: Number(m[2]) };
  });
  const hosts = [...new Set(["127.0.0.1", ...addresses.map((a) => a.host)])];
  const ports = new Map<number, number>();
  const mapped = (port: number) => {
    if (!ports.has(port)) {
      let free;
      do free = freePortOn(hosts); while ([...ports.values()].includes(free));
      ports.set(port, free);
    }
    return ports.get(port)!;
  };
  for (const a of addresses) edits.push({ node: a.node, value: `${a.host}:${mapped(a.port)}` });
  const listeners = doc.get("listeners", true);
  assert.ok(isSeq(listeners), `${DOC}: parley.yaml has no listeners list`);
  for (const l of listeners.items) {
    const port = isMap(l) ? l.get("port", true) : undefined;
    if (isScalar(port) && typeof port.value === "number" && port.value > 0) {
      edits.push({ node: port, value: String(mapped(port.value)) });
    }
  }
  const url = doc.getIn(["storage", "url"], true);
  assert.ok(
    isScalar(url) && typeof url.value === "string",
    `${DOC}: parley.yaml has no storage.url`,
  );
  const parsed = new URL(url.value);
  assert.equal(parsed.protocol, "postgres:", `${DOC}: the storage URL is not postgres://`);
  parsed.hostname = "127.0.0.1";
  parsed.port = String(pgPort);
  edits.push({ node: url, value: JSON.stringify(parsed.href) });
  for (const e of edits.sort((a, b) => b.node.range![0] - a.node.range![0])) {
    const [from, to] = e.node.range!;
    text = text.slice(0, from) + e.value + text.slice(to);
  }
  return {
    text,
    ports,
    role: decodeURIComponent(parsed.username),
    database: decodeURIComponent(parsed.pathname.slice(1)),
  };
}

/** The `parley` on PATH: this checkout's main.ts with the permissions of the `parley` task. */
async function parleyWrapper(binDir: string): Promise<void> {
  const task = JSON.parse(await Deno.readTextFile(DENO_JSON)).tasks.parley as string;
  const m = /^deno run ((?:--[\w-]+(?:=\S+)? )*)main\.ts$/.exec(task);
  assert.ok(m, `deno.json's parley task is not "deno run <flags> main.ts": ${task}`);
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const argv = [Deno.execPath(), "run", ...m[1].trim().split(" "), "--config", DENO_JSON, MAIN];
  const path = join(binDir, "parley");
  await Deno.writeTextFile(path, `#!/bin/sh\nexec ${argv.map(quote).join(" ")} "$@"\n`);
  await Deno.chmod(path, 0o755);
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** A process that exists and has not ended (a zombie has ended). */
function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** A process that is one of this test's servers: main.ts running in `dir`. */
function ours(pid: number, dir: string): boolean {
  try {
    return Deno.readLinkSync(`/proc/${pid}/cwd`) === dir &&
      Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").includes(MAIN);
  } catch {
    return false;
  }
}

Deno.test({
  name: `${DOC}: the three-node walkthrough runs as written, against a PostgreSQL asking for a ` +
    "password",
  fn: async () => {
    const started = Date.now();
    const walk = readWalkthrough(await Deno.readTextFile(new URL(DOC, ROOT)));
    const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "parley-walkthrough-" }));
    const bin = join(dir, ".bin");
    await Deno.mkdir(bin);
    await parleyWrapper(bin);
    const pg = await startPasswordPostgres();
    const pids = new Set<number>();
    const env = { PATH: `${bin}:${Deno.env.get("PATH")}` };
    const pgEnv = { ...env, PGHOST: pg.socketDir, PGPORT: String(pg.port) };
    const serveLog = join(dir, "serve.log");
    const serveLogTail = async () =>
      (await Deno.readTextFile(serveLog).catch(() => "")).split("\n").slice(-30).join("\n");

    /** Runs one command line of the document; throws naming its line unless it succeeds. */
    const sh = async (
      step: DocLine,
      opts: { script?: string; input?: string; check?: boolean } = {},
    ): Promise<Result> => {
      const asRoot = step.text.replaceAll("sudo -u postgres", "runuser -u postgres --");
      const child = new Deno.Command("bash", {
        args: ["-e", "-o", "pipefail", "-c", opts.script ?? asRoot],
        cwd: dir,
        env: step.text.includes("sudo -u postgres") ? pgEnv : env,
        stdin: opts.input === undefined ? "null" : "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      if (opts.input !== undefined) {
        const w = child.stdin.getWriter();
        await w.write(new TextEncoder().encode(opts.input));
        await w.close();
      }
      const out = await child.output();
      const dec = new TextDecoder();
      const result = {
        code: out.code,
        stdout: dec.decode(out.stdout),
        stderr: dec.decode(out.stderr),
      };
      if (opts.check !== false && result.code !== 0) {
        const message =
          `${DOC}:${step.line}: \`${step.text.trim()}\` failed (exit ${result.code})` +
          `\n${result.stdout}${result.stderr}`;
        console.error(message);
        throw new Error(message);
      }
      return result;
    };
    const fail = async (step: DocLine, why: string): Promise<never> => {
      const message = `${DOC}:${step.line}: \`${step.text.trim()}\`: ${why}\n` +
        `last lines of the nodes' output:\n${await serveLogTail()}`;
      console.error(message);
      throw new Error(message);
    };

    try {
      // The role and database, the cluster CA, the node certificates.
      for (const step of walk.setup) await sh(step);

      // parley.yaml as the document gives it, with its ports and PostgreSQL substituted.
      const config = testConfig(walk.config.lines.join("\n") + "\n", walk.config.line, pg.port);
      await Deno.writeTextFile(join(dir, "parley.yaml"), config.text);
      await sh(walk.chmod);

      // The server asks for a password: the role the document made is refused over TCP without
      // one (psql -w: never prompt).
      const refused = await new Deno.Command("psql", {
        args: [
          "-w",
          "-h",
          "127.0.0.1",
          "-p",
          String(pg.port),
          "-U",
          config.role,
          "-d",
          config.database,
          "-c",
          "SELECT 1",
        ],
        env: { PGPASSWORD: "" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const said = new TextDecoder().decode(refused.stderr);
      assert.ok(!refused.success, "PostgreSQL let the role in without a password");
      assert.match(said, /no password supplied|password authentication failed/, said);

      // What `parley cluster status` shows in the document: a header, then NODE STATE ADDRESS ….
      const shown = walk.status.lines.filter((l) => l.trim()).map((l) => l.trim().split(/\s+/));
      assert.ok(shown.length > 1, `${DOC}:${walk.status.line}: the status output shows no node`);
      let statusOut = "";
      for (const step of walk.run) {
        if (/\bparley serve\b/.test(step.text)) {
          // The nodes: started in the background, their PIDs recorded.
          const script = `exec >>${serveLog} 2>&1\n${step.text}\njobs -p > .serve-pids\n`;
          await sh(step, { script });
          for (const p of (await Deno.readTextFile(join(dir, ".serve-pids"))).split(/\s+/)) {
            if (p) pids.add(Number(p));
          }
          assert.ok(pids.size > 0, `${DOC}:${step.line}: started no process`);
        } else if (/\bparley cluster status\b/.test(step.text)) {
          const deadline = Date.now() + STATUS_WAIT_MS;
          let last: Result | undefined;
          while (true) {
            last = await sh(step, { check: false });
            const rows = last.stdout.split("\n").slice(1).map((l) => l.trim().split(/\s+/));
            const state = (n: string) => rows.find((r) => r[0] === n)?.[1];
            if (last.code === 0 && shown.slice(1).every(([n, st]) => state(n) === st)) break;
            if (![...pids].some(alive)) {
              await fail(step, `every node has exited:\n${last.stdout}${last.stderr}`);
            }
            if (Date.now() > deadline) {
              await fail(
                step,
                `not every node up after ${STATUS_WAIT_MS} ms (exit ${last.code}):\n` +
                  last.stdout + last.stderr,
              );
            }
            await new Promise((r) => setTimeout(r, 300));
          }
          statusOut = last.stdout;
        } else if (/\bparley user add\b/.test(step.text) && !/--password\b/.test(step.text)) {
          await sh(step, { input: `${PASSWORD}\n` });
        } else {
          await sh(step);
        }
      }
      assert.ok(pids.size, `${DOC}: the walkthrough's second shell block starts no node`);
      assert.ok(statusOut, `${DOC}: the walkthrough's second shell block asks no cluster status`);

      // The status reads as the document shows it: its columns, each node's state and address.
      const got = statusOut.split("\n").filter((l) => l.trim()).map((l) => l.trim().split(/\s+/));
      assert.deepEqual(got[0], shown[0], `${DOC}:${walk.status.line}: the status columns differ`);
      const address = (a: string) =>
        a.replace(/:(\d+)$/, (_, p) => `:${config.ports.get(+p) ?? p}`);
      assert.deepEqual(
        got.slice(1).map((r) => r.slice(0, 3)).sort(),
        shown.slice(1).map((r) => [r[0], r[1], address(r[2])]).sort(),
        `${DOC}:${walk.status.line}: the nodes' states or addresses differ from the document's`,
      );

      // The pid files name the processes started, and the document's stop command ends them.
      for (const n of ["n1", "n2", "n3"]) {
        const pid = Number((await Deno.readTextFile(join(dir, "data", n, "parley.pid"))).trim());
        assert.ok(pids.has(pid), `data/${n}/parley.pid names ${pid}, not a process started`);
      }
      await sh(walk.stop);
      const deadline = Date.now() + 10_000;
      while ([...pids].some(alive)) {
        if (Date.now() > deadline) await fail(walk.stop, "the nodes did not stop in 10 s");
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(Date.now() - started < 60_000, "the walkthrough took a minute or more");
    } finally {
      // Whatever this test started and is still running: by PID (jobs -p and the pid files),
      // only processes running main.ts in the test's directory.
      for (const n of ["n1", "n2", "n3"]) {
        const text = await Deno.readTextFile(join(dir, "data", n, "parley.pid")).catch(() => "");
        if (text.trim()) pids.add(Number(text.trim()));
      }
      for (const pid of pids) {
        if (alive(pid) && ours(pid, dir)) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch { /* gone meanwhile */ }
        }
      }
      await pg.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
