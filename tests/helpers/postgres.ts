// A throwaway PostgreSQL for tests: Debian's `postgresql` package (installed by .ci/run), one
// instance per test file in a temporary directory, created with initdb and run with pg_ctl as the
// `postgres` user (the server refuses to run as root), listening on a free loopback port with
// trust authentication. Each test takes a fresh database of its own. Durability is switched off:
// these databases are thrown away, and fsync would only slow the tests down.
import { join } from "node:path";

export interface Postgres {
  port: number;
  /** A new, empty database; its connection URL. */
  database(): Promise<string>;
  /** Stops the server (fast shutdown: every connection is cut). */
  stop(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
}

function binDir(): string {
  const versions = [...Deno.readDirSync("/usr/lib/postgresql")].map((e) => Number(e.name))
    .filter((v) => v > 0).sort((a, b) => b - a);
  if (!versions.length) throw new Error("PostgreSQL is not installed (apt-get install postgresql)");
  return `/usr/lib/postgresql/${versions[0]}/bin`;
}

const asRoot = Deno.uid() === 0;

/** Runs a PostgreSQL program, as the postgres user when we are root; throws with its output. */
async function run(bin: string, program: string, args: string[]): Promise<void> {
  const [cmd, all] = asRoot
    ? ["runuser", ["-u", "postgres", "--", join(bin, program), ...args]]
    : [join(bin, program), args];
  const out = await new Deno.Command(cmd, { args: all, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    throw new Error(`${program} ${args.join(" ")} failed: ${text}`);
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

let shared: Promise<Postgres> | undefined;

/**
 * The test file's PostgreSQL, started on first use and stopped (its directory removed) when the
 * process exits, whatever the tests' outcome.
 */
export function sharedPostgres(): Promise<Postgres> {
  return shared ??= startPostgres();
}

/** A directory for a server's data, owned by the `postgres` user when run as root. */
async function serverDir(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  if (asRoot) {
    const chown = await new Deno.Command("chown", { args: ["postgres:", dir] }).output();
    if (!chown.success) throw new Error(`chown postgres ${dir} failed`);
  }
  return dir;
}

async function startPostgres(): Promise<Postgres> {
  const bin = binDir();
  const dir = await serverDir("parley-pg-");
  const data = join(dir, "data");
  await run(bin, "initdb", [
    "-D",
    data,
    "-A",
    "trust",
    "-U",
    "postgres",
    "-E",
    "UTF8",
    "--no-sync",
  ]);
  const port = freePort();
  const options = [
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`,
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
  ].join(" ");
  const start = () =>
    run(bin, "pg_ctl", ["-D", data, "-o", options, "-l", join(dir, "log"), "-w", "start"]);
  const stop = () => run(bin, "pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"]);
  await start();
  globalThis.addEventListener("unload", () => {
    const args = ["-D", data, "-m", "immediate", "-w", "stop"];
    new Deno.Command(asRoot ? "runuser" : join(bin, "pg_ctl"), {
      args: asRoot ? ["-u", "postgres", "--", join(bin, "pg_ctl"), ...args] : args,
      stdout: "null",
      stderr: "null",
    }).outputSync();
    Deno.removeSync(dir, { recursive: true });
  });
  let databases = 0;
  return {
    port,
    async database() {
      const name = `t${++databases}`;
      await run(bin, "createdb", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", name]);
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
  };
}

/** A PostgreSQL that asks for a password on TCP, as Debian's default cluster does. */
export interface PasswordPostgres {
  port: number;
  /** The directory of its Unix socket (PGHOST for psql and createdb). */
  socketDir: string;
  /** Stops the server (immediate shutdown) and removes its directory. */
  stop(): Promise<void>;
}

/**
 * A throwaway PostgreSQL authenticating as Debian's `pg_hba.conf` does: `peer` on the Unix socket
 * (the superuser `postgres` is the OS user `postgres`; trust when not run as root, where there is
 * no such user to be) and `scram-sha-256` on TCP (`host all all 127.0.0.1/32 scram-sha-256`), so a
 * role without a password, or with the wrong one, is refused over 127.0.0.1. Not shared, and not
 * stopped at exit: the caller stops it.
 */
export async function startPasswordPostgres(): Promise<PasswordPostgres> {
  const bin = binDir();
  const dir = await serverDir("parley-pgpw-");
  const data = join(dir, "data");
  try {
    await run(bin, "initdb", [
      "-D",
      data,
      `--auth-local=${asRoot ? "peer" : "trust"}`,
      "--auth-host=scram-sha-256",
      "-U",
      "postgres",
      "-E",
      "UTF8",
      "--no-sync",
    ]);
    const hba = await Deno.readTextFile(join(data, "pg_hba.conf"));
    if (!/^host\s+all\s+all\s+127\.0\.0\.1\/32\s+scram-sha-256\s*$/m.test(hba)) {
      throw new Error(`initdb wrote no scram-sha-256 line for 127.0.0.1 in pg_hba.conf:\n${hba}`);
    }
    const port = freePort();
    const options = [
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`,
      "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
    ].join(" ");
    await run(bin, "pg_ctl", ["-D", data, "-o", options, "-l", join(dir, "log"), "-w", "start"]);
    return {
      port,
      socketDir: dir,
      async stop() {
        try {
          await run(bin, "pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      },
    };
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
}
