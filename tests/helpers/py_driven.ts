// A python client (slixmpp) run as a process and driven by the test: commands on its stdin and
// what it sees on its stdout, as JSON lines ({"reply": id, "ok": …} answers a command,
// {"event": …} reports a stanza or a state). Base of the PEP and push/CSI clients
// (cluster_pep.ts, cluster_push.ts), which say how their script is started and read.
import { lines } from "./lines.ts";
import { until } from "./until.ts";
import type { TestCluster } from "./cluster.ts";
import { DOMAIN } from "./cluster.ts";

/** One line of a client's output. */
export interface PyLine {
  event?: string;
  reply?: number;
  ok?: boolean;
  error?: unknown;
  /** Where it is in the client's output, from 0. */
  index: number;
  [k: string]: unknown;
}

export class PyDriven<L extends PyLine = PyLine> {
  readonly lines: L[] = [];
  jid = "";
  /** The client's "ready" line, once logged in. */
  ready: L | undefined;
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #stderr = "";
  #exit: Deno.CommandStatus | undefined;
  readonly #done: Promise<unknown>;
  #ids = 0;

  constructor(readonly name: string, script: string, args: string[]) {
    const child = this.#child = new Deno.Command("/usr/bin/python3", {
      args: [script, ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    const out = (async () => {
      for await (const line of lines(child.stdout)) {
        const index = this.lines.length;
        try {
          this.lines.push({ ...JSON.parse(line), index });
        } catch {
          this.lines.push({ event: "raw", line, index } as unknown as L);
        }
      }
    })();
    const err = (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#stderr = (this.#stderr + chunk).slice(-6000);
      }
    })();
    this.#child.status.then((s) => this.#exit = s);
    this.#done = Promise.all([out, err, this.#child.status]);
  }

  /** The arguments logging `user@DOMAIN/resource` in on node i of `c`. */
  static loginArgs(c: TestCluster, i: number, user: string, resource: string): string[] {
    const node = c.nodes[i];
    return [
      "--jid",
      `${user}@${DOMAIN}/${resource}`,
      "--password",
      "secret",
      "--host",
      node.host,
      "--port",
      String(node.port),
    ];
  }

  /** Waits until the client says it is ready (logged in); stops it and throws if it does not. */
  async loggedIn(): Promise<this> {
    try {
      await until(
        () => this.has("ready") || this.#exit !== undefined || this.has("error"),
        `${this.name} to log in`,
        20_000,
      );
      this.ready = this.of("ready")[0];
      if (!this.ready) throw new Error(`${this.name} did not log in\n${this.diagnostics()}`);
      this.jid = String(this.ready.jid);
      return this;
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  get pid(): number {
    return this.#child.pid;
  }

  of(event: string): L[] {
    return this.lines.filter((l) => l.event === event);
  }

  has(event: string): boolean {
    return this.lines.some((l) => l.event === event);
  }

  /** Waits for a line matching `pred`. */
  async waitLine(pred: (l: L) => boolean, what: string, ms = 10_000): Promise<L> {
    let found: L | undefined;
    await until(
      () => (found = this.lines.find(pred)) !== undefined || this.#exit !== undefined,
      `${this.name}: ${what}`,
      ms,
    ).catch((e) => {
      throw new Error(`${e.message}\n${this.diagnostics()}`);
    });
    if (!found) throw new Error(`${this.name} exited waiting for ${what}\n${this.diagnostics()}`);
    return found;
  }

  /** What else identifies the client in diagnostics. */
  protected about(): string {
    return "";
  }

  /** Sends a command; its answer (ok or not). */
  async call(cmd: string, args: Record<string, unknown> = {}, ms = 20_000): Promise<L> {
    const id = ++this.#ids;
    const line = JSON.stringify({ id, cmd, ...args }) + "\n";
    try {
      if (this.#exit !== undefined) throw new Error("it has exited");
      await this.#stdin.write(new TextEncoder().encode(line));
    } catch (e) {
      throw new Error(`${this.name}: cannot send ${cmd}: ${e}\n${this.diagnostics()}`);
    }
    return await this.waitLine((l) => l.reply === id, `the answer to ${cmd}`, ms);
  }

  /** Sends a command that must succeed; its answer. */
  async ok(cmd: string, args: Record<string, unknown> = {}, ms = 20_000): Promise<L> {
    const r = await this.call(cmd, args, ms);
    if (!r.ok) {
      throw new Error(
        `${this.name}: ${cmd} ${JSON.stringify(args)} failed: ${JSON.stringify(r.error)}\n` +
          this.diagnostics(),
      );
    }
    return r;
  }

  /**
   * SIGKILL: the process dies without closing its stream; the kernel closes its socket, so the
   * server sees the connection end with no </stream:stream> (a phone gone out of reach).
   */
  async kill(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.#done;
  }

  /** Closes the stream and waits for the process (killed by its PID after 5 s). */
  async stop(): Promise<void> {
    if (this.#exit === undefined) {
      await this.#stdin.write(new TextEncoder().encode(`{"cmd": "quit"}\n`)).catch(() => {});
    }
    await this.#stdin.close().catch(() => {});
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* already gone */ }
    }, 5000);
    await this.#done;
    clearTimeout(timer);
  }

  diagnostics(): string {
    return `${this.name} (${this.jid}${this.about()}): ${this.lines.length} lines:\n` +
      this.lines.slice(-40).map((l) => JSON.stringify(l)).join("\n") +
      `\nexit: ${JSON.stringify(this.#exit)}\nstderr: ${this.#stderr}`;
  }
}
