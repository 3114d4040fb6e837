// The server: wires configuration, storage, the router, virtual hosts with their modules, and
// listeners; runs the idle sweeper; shuts down in order.
import { randomBytes } from "node:crypto";
import type { Config } from "../config/schema.ts";
import { Router } from "../router/router.ts";
import { SessionRegistry } from "../router/sessions.ts";
import type { Store } from "../storage/store.ts";
import { openStore } from "../storage/open.ts";
import { TlsContexts } from "../tls/certificates.ts";
import { C2SListener } from "../c2s/listener.ts";
import { MODULES } from "../modules.ts";
import { Host } from "./host.ts";
import { SerialQueues } from "./serial.ts";
import type { ServerContext } from "./context.ts";
import { logger } from "../log/logger.ts";
import { VERSION } from "../version.ts";

const log = logger("server");
const SWEEP_MS = 1000;

export interface BoundAddress {
  type: string;
  address: string;
  port: number;
}

export class Server implements ServerContext {
  readonly router = new Router();
  readonly sessions = new SessionRegistry();
  readonly serial = new SerialQueues();
  readonly secret = randomBytes(32);
  readonly hosts = new Map<string, Host>();
  readonly listeners: C2SListener[] = [];
  readonly addresses: BoundAddress[] = [];
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #stopping: Promise<void> | undefined;

  private constructor(readonly config: Config, readonly store: Store) {}

  static async start(config: Config): Promise<Server> {
    const store = openStore(config);
    const server = new Server(config, store);
    try {
      await server.#start();
    } catch (e) {
      await server.stop();
      throw e;
    }
    return server;
  }

  async #start(): Promise<void> {
    for (const hc of this.config.hosts) {
      const host = new Host(this, hc);
      for (const m of MODULES) m.install(host);
      this.hosts.set(host.domain, host);
      this.router.addDomain(host.domain, host);
    }
    const tls = await TlsContexts.load(this.config);
    for (const lc of this.config.listeners) {
      if (lc.plain_without_tls) {
        log.warn("listener {bind}:{port} allows SASL PLAIN without TLS: passwords cross in clear", {
          bind: lc.bind,
          port: lc.port,
        });
      }
      const l = new C2SListener(lc, { ctx: this, hosts: this.hosts, tls });
      this.listeners.push(l);
      this.addresses.push({ type: lc.type, ...await l.listen() });
    }
    this.#sweeper = setInterval(() => {
      const now = Date.now();
      for (const l of this.listeners) for (const s of l.sessions) s.checkIdle(now);
    }, SWEEP_MS);
    log.info("Parley {version} started: hosts {hosts}", {
      version: VERSION,
      hosts: [...this.hosts.keys()].join(", "),
      addresses: this.addresses,
    });
  }

  /** Graceful shutdown: stop accepting, close every stream with system-shutdown, flush storage. */
  stop(): Promise<void> {
    return this.#stopping ??= this.#stop();
  }

  async #stop(): Promise<void> {
    clearInterval(this.#sweeper);
    // server.close() resolves only once every connection is gone, so streams are closed meanwhile.
    const closing: Promise<void>[] = this.listeners.map((l) => l.close());
    for (const l of this.listeners) {
      for (const s of l.sessions) {
        closing.push(s.whenClosed);
        s.error("system-shutdown");
      }
    }
    await Promise.all(closing);
    await this.serial.idle();
    await this.store.close();
    log.info("stopped");
  }
}
