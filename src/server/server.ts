// The server: wires configuration, storage, the router, virtual hosts with their modules, and
// listeners; runs the idle sweeper; shuts down in order.
import type { Config } from "../config/schema.ts";
import { Router } from "../router/router.ts";
import { SessionRegistry } from "../router/sessions.ts";
import type { Store } from "../storage/store.ts";
import { openStore } from "../storage/open.ts";
import { TlsContexts } from "../tls/certificates.ts";
import { StreamListener } from "../stream/listener.ts";
import type { XmlStream } from "../stream/xml_stream.ts";
import { C2SSession } from "../c2s/session.ts";
import { ComponentPool } from "../component/pool.ts";
import { ComponentStream } from "../component/stream.ts";
import type { ListenerConfig } from "../config/schema.ts";
import { Proxy65Service } from "../proxy65/service.ts";
import { MucService } from "../muc/service.ts";
import { MODULES } from "../modules.ts";
import { Host } from "../core/host.ts";
import { SerialQueues } from "../core/serial.ts";
import type { ServerContext } from "../core/context.ts";
import { logger } from "../log/logger.ts";
import { VERSION } from "../version.ts";
import { AdminSocket } from "../admin/socket.ts";
import { AuthThrottle } from "../sasl/throttle.ts";
import { loadSecret } from "./secret.ts";

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
  readonly hosts = new Map<string, Host>();
  readonly listeners: StreamListener<XmlStream>[] = [];
  /** SOCKS5 bytestream proxies by proxy domain. */
  readonly proxies = new Map<string, Proxy65Service>();
  /** Multi-User Chat services by domain. */
  readonly mucs = new Map<string, MucService>();
  /** External component pools by component domain. */
  readonly components = new Map<string, ComponentPool>();
  readonly addresses: BoundAddress[] = [];
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #admin: AdminSocket | undefined;
  #stopping: Promise<void> | undefined;

  readonly authThrottle: AuthThrottle;

  private constructor(
    readonly config: Config,
    readonly store: Store,
    readonly secret: Uint8Array,
  ) {
    this.authThrottle = new AuthThrottle(config.auth);
  }

  static async start(config: Config): Promise<Server> {
    const secret = await loadSecret(config.data_dir);
    const store = openStore(config);
    const server = new Server(config, store, secret);
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
    const local = new Set(this.hosts.keys());
    for (const host of this.hosts.values()) {
      const pc = host.config.proxy65;
      if (pc) {
        const proxy = new Proxy65Service(pc, this.router, local);
        await proxy.start();
        proxy.watch(host);
        this.proxies.set(pc.domain, proxy);
        this.router.addDomain(pc.domain, proxy);
        host.items.push({ jid: pc.domain, name: "SOCKS5 Bytestreams Service" });
      }
      const mc = host.config.muc;
      if (mc) {
        const muc = new MucService(mc, this.router, this.store, this.serial, local);
        await muc.start();
        this.mucs.set(mc.domain, muc);
        this.router.addDomain(mc.domain, muc);
        host.items.push({ jid: mc.domain, name: mc.name });
      }
      for (const cc of host.config.components) {
        const pool = new ComponentPool(cc, host.domain, this.router);
        this.components.set(cc.domain, pool);
        this.router.addDomain(cc.domain, pool);
        host.items.push({ jid: cc.domain });
      }
    }
    const tls = await TlsContexts.load(this.config);
    for (const lc of this.config.listeners) {
      if (lc.plain_without_tls) {
        log.warn("listener {bind}:{port} allows SASL PLAIN without TLS: passwords cross in clear", {
          bind: lc.bind,
          port: lc.port,
        });
      }
      const l = this.#listener(lc, tls);
      this.listeners.push(l);
      this.addresses.push({ type: lc.type, ...await l.listen() });
    }
    this.#admin = await AdminSocket.start(this.config.data_dir, {
      components: this.components,
      mucs: this.mucs,
    });
    this.#sweeper = setInterval(() => {
      const now = Date.now();
      for (const l of this.listeners) for (const s of l.streams) s.checkIdle(now);
    }, SWEEP_MS);
    log.info("Parley {version} started: hosts {hosts}", {
      version: VERSION,
      hosts: [...this.hosts.keys()].join(", "),
      addresses: this.addresses,
    });
  }

  #listener(lc: ListenerConfig, tls: TlsContexts): StreamListener<XmlStream> {
    const base = {
      name: lc.type,
      bind: lc.bind,
      port: lc.port,
      connectionsPerIp: this.config.limits.connections_per_ip,
    };
    if (lc.type === "component") {
      const deps = { ctx: this, pools: this.components };
      return new StreamListener(base, (socket) => new ComponentStream(socket, deps));
    }
    const deps = { ctx: this, hosts: this.hosts, tls, listener: lc };
    const direct = lc.type === "c2s_tls"
      ? {
        tls: { SNICallback: tls.sni, secureContext: tls.default, minVersion: "TLSv1.2" as const },
      }
      : {};
    return new StreamListener(
      { ...base, ...direct },
      (socket, secure) => new C2SSession(socket, secure, deps),
    );
  }

  /** Graceful shutdown: stop accepting, close every stream with system-shutdown, flush storage. */
  stop(): Promise<void> {
    return this.#stopping ??= this.#stop();
  }

  async #stop(): Promise<void> {
    clearInterval(this.#sweeper);
    await this.#admin?.close();
    await Promise.all([...this.proxies.values()].map((p) => p.stop()));
    for (const muc of this.mucs.values()) muc.stop();
    // server.close() resolves only once every connection is gone, so streams are closed meanwhile.
    const closing: Promise<void>[] = this.listeners.map((l) => l.close());
    for (const l of this.listeners) {
      for (const s of l.streams) {
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
