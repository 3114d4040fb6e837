// Whether this node takes clients now (/health, for load balancers and orchestrators): not while
// it is starting (before every listener is up), not once it is shutting down, and not while its
// store does not answer. The store is asked with one cheap read bounded by a short timeout, and
// the answer is kept for a second: a flood of probes costs the store one read a second. A read
// that hangs is not asked again until it settles.
import type { Monitored } from "./metrics.ts";

const TIMEOUT_MS = 1000;
const CACHE_MS = 1000;

export class StoreCheck {
  #problem: string | null = null;
  #checkedAt = -Infinity;
  #running: Promise<void> | undefined;

  constructor(
    /** A cheap read of the store; its rejection means the store is unreachable. */
    readonly probe: () => Promise<unknown>,
    readonly timeoutMs = TIMEOUT_MS,
    readonly cacheMs = CACHE_MS,
  ) {}

  /** Why the store cannot be used now, or null when it answered. */
  async problem(): Promise<string | null> {
    if (Date.now() - this.#checkedAt < this.cacheMs) return this.#problem;
    this.#running ??= this.#check();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#set("the store did not answer in time");
        resolve();
      }, this.timeoutMs);
    });
    await Promise.race([this.#running, late]);
    clearTimeout(timer);
    return this.#problem;
  }

  async #check(): Promise<void> {
    try {
      await this.probe();
      this.#set(null);
    } catch {
      this.#set("the store is unreachable");
    } finally {
      this.#running = undefined;
    }
  }

  #set(problem: string | null): void {
    this.#problem = problem;
    this.#checkedAt = Date.now();
  }
}

export interface HealthReport {
  /** 200: takes clients; 503: does not. */
  status: 200 | 503;
  body: {
    status: "ok" | "unavailable";
    /** Why not, when unavailable. */
    reason?: string;
    /** This node's name in a cluster, else null. */
    node: string | null;
    /** Client sessions on this node. */
    sessions: number;
  };
}

export async function healthReport(server: Monitored, store: StoreCheck): Promise<HealthReport> {
  const node = server.config.cluster?.node ?? null;
  const sessions = server.sessions.size;
  const down = (reason: string): HealthReport => ({
    status: 503,
    body: { status: "unavailable", reason, node, sessions },
  });
  const before = stateProblem(server);
  if (before) return down(before);
  const problem = await store.problem();
  // Stopping may have begun while the store was asked.
  const after = stateProblem(server) ?? problem;
  if (after) return down(after);
  return { status: 200, body: { status: "ok", node, sessions } };
}

function stateProblem(server: Monitored): string | null {
  if (server.state === "starting") return "starting";
  if (server.state === "stopping") return "shutting down";
  return null;
}
