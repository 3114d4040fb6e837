// The server: wires configuration, storage, the router, virtual hosts with their modules, the
// services beside them (plug-ins, src/server/services.ts) and listeners; runs the idle sweeper;
// shuts down in order.
import type { Config } from "../config/schema.ts";
import { Router } from "../router/router.ts";
import { SessionRegistry } from "../router/sessions.ts";
import { type Store, StoreBusyError, STORES } from "../storage/store.ts";
import { openStore } from "../storage/open.ts";
import { TlsContexts } from "../tls/certificates.ts";
import { type Listener, StreamListener } from "../stream/listener.ts";
import { C2SSession } from "../c2s/session.ts";
import { LocalSessions, Resumption } from "../c2s/resumption.ts";
import { SessionReplicas } from "../cluster/session_replicas.ts";
import type { ComponentPool } from "../component/pool.ts";
import { ComponentStream } from "../component/stream.ts";
import type { ListenerConfig } from "../config/schema.ts";
import type { Proxy65Service } from "../proxy65/service.ts";
import type { MucService } from "../muc/service.ts";
import { MODULES } from "../modules.ts";
import { Host } from "../core/host.ts";
import { SerialQueues } from "../core/serial.ts";
import type { ServerContext } from "../core/context.ts";
import { logger } from "../log/logger.ts";
import { VERSION } from "../version.ts";
import { AdminSocket } from "../admin/socket.ts";
import { AuthThrottle } from "../sasl/throttle.ts";
import { Services } from "./service.ts";
import { componentPlugin, mucPlugin, proxy65Plugin, SERVICES } from "./services.ts";
import { DescriptorBudget } from "../stream/descriptor_budget.ts";
import { descriptorLimit } from "./fd_limit.ts";
import { SharedCaches } from "../core/caches.ts";
import { ClusterNode } from "../cluster/node.ts";
import { httpListener } from "./http.ts";
import type { HttpListener } from "../http/listener.ts";
import type { HttpRoute } from "../http/routes.ts";
import { Counters } from "../metrics/counters.ts";
import { countFailures } from "../metrics/counted_store.ts";
import { ArchiveWriter } from "../mam/archive_writer.ts";
import { archiveRetention } from "../mam/retention.ts";
import type { Retention } from "../core/retention.ts";
import { parseDuration } from "../config/duration.ts";
import type { ServerState } from "../metrics/metrics.ts";
import { Monitoring } from "../http/monitoring.ts";
import { listenerUrl } from "../http/public_url.ts";

const log = logger("server");
/** Waits between attempts to reach the store at start: from the first, doubling to the last. */
const STORE_RETRY_MS = [250, 5000];
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
  readonly listeners: Listener[] = [];
  /** The http listeners: they close last, /health saying 503 on them while the rest stops. */
  readonly #http = new Set<HttpListener>();
  /** Services beside the hosts (MUC, proxies, components), by kind and domain. */
  readonly services = new Services();
  /** Client and component connections against the descriptor limit, on every listener. */
  readonly descriptors = new DescriptorBudget(descriptorLimit());
  readonly addresses: BoundAddress[] = [];
  readonly caches = new SharedCaches();
  /** This node's part in the cluster, when the configuration has a `cluster:` section. */
  cluster: ClusterNode | undefined;
  /** Resumable client sessions (XEP-0198), replicated to another node in a cluster. */
  resumption: Resumption | undefined;
  readonly counters = new Counters();
  /** The store, its failures counted (parley_store_errors_total). */
  readonly store: Store;
  readonly archive: ArchiveWriter;
  /** Removes archived messages past their retention. */
  readonly retention: Retention;
  /** /metrics and /health, on every http listener. */
  readonly #monitoring: Monitoring;
  /** Every listener is up (until stop() begins). */
  #running = false;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #admin: AdminSocket | undefined;
  #stopping: Promise<void> | undefined;

  readonly authThrottle: AuthThrottle;

  /** SOCKS5 bytestream proxies by proxy domain. */
  get proxies(): Map<string, Proxy65Service> {
    return this.services.of(proxy65Plugin);
  }

  /** Multi-User Chat services by domain. */
  get mucs(): Map<string, MucService> {
    return this.services.of(mucPlugin);
  }

  /** External component pools by component domain. */
  get components(): Map<string, ComponentPool> {
    return this.services.of(componentPlugin);
  }

  private constructor(
    readonly config: Config,
    store: Store,
    readonly secret: Uint8Array,
  ) {
    this.authThrottle = new AuthThrottle(config.auth);
    this.store = countFailures(store, () => this.counters.storeErrors++);
    const archive = this.store.archive(STORES.mam);
    this.archive = new ArchiveWriter(archive);
    this.retention = archiveRetention(archive, parseDuration(config.mam.retention)!);
    // Health probes read the store itself: they are not the server's work failing.
    const probed = store.keyval(STORES.secret);
    this.#monitoring = new Monitoring(this, () => probed.get("health", ""));
  }

  httpUrl(domain: string): string | undefined {
    const i = this.config.listeners.findIndex((l) => l.type === "http");
    // Bound addresses are in the order of the configured listeners.
    const bound = this.addresses[i];
    if (i < 0 || (!bound && !this.config.http.public_url)) return undefined;
    return listenerUrl(
      this.config.http.public_url,
      this.config.listeners[i],
      bound?.port ?? 0,
      domain,
    );
  }

  /** starting: until every listener is up; stopping: once stop() has begun (/health). */
  get state(): ServerState {
    if (this.#stopping) return "stopping";
    return this.#running ? "running" : "starting";
  }

  static async start(config: Config): Promise<Server> {
    const { store, secret } = await openStoreWhenReady(config);
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
    this.#monitoring.start();
    for (const hc of this.config.hosts) {
      const host = new Host(this, hc);
      for (const m of MODULES) m.install(host);
      this.hosts.set(host.domain, host);
      this.router.addDomain(host.domain, host);
    }
    const local = new Set(this.hosts.keys());
    if (this.config.cluster) this.cluster = await ClusterNode.create(this, this.hosts);
    this.resumption = new Resumption(
      this.config,
      this.cluster ? new SessionReplicas(this.cluster) : new LocalSessions(),
    );
    for (const plugin of SERVICES) {
      const distribution = this.cluster ? plugin.clustered(this.cluster) : plugin.local();
      for (const host of this.hosts.values()) {
        for (const service of plugin.create(host, local, distribution)) {
          await plugin.start?.(service, host);
          this.services.of(plugin).set(service.domain, service);
          this.router.addDomain(service.domain, service);
          host.items.push(plugin.item(service));
        }
      }
      await distribution.start?.();
    }
    // The links come up once every service can take what its peers send.
    await this.cluster?.connect();
    const tls = await TlsContexts.load(this.config);
    // What the services serve on the http listeners.
    const routes = SERVICES.flatMap((plugin) =>
      [...this.services.of(plugin).values()].flatMap((s) => plugin.routes?.(s) ?? [])
    );
    for (const lc of this.config.listeners) {
      if (lc.plain_without_tls) {
        log.warn("listener {bind}:{port} allows SASL PLAIN without TLS: passwords cross in clear", {
          bind: lc.bind,
          port: lc.port,
        });
      }
      const l = this.#listener(lc, tls, routes);
      this.listeners.push(l);
      this.addresses.push({ type: lc.type, ...await l.listen() });
    }
    const admin = SERVICES.map((plugin) => plugin.admin?.(this.services.of(plugin)));
    const cluster = this.cluster && { cluster: () => this.cluster!.status() };
    const handlers = Object.assign({}, ...admin, cluster);
    this.#admin = await AdminSocket.start(this.config.data_dir, handlers);
    if (this.config.mam.enabled) this.retention.start();
    this.#sweeper = setInterval(() => {
      const now = Date.now();
      for (const l of this.listeners) l.sweep(now);
      this.resumption!.sweep(now);
    }, SWEEP_MS);
    this.#running = true;
    log.info("Parley {version} started: hosts {hosts}", {
      version: VERSION,
      hosts: [...this.hosts.keys()].join(", "),
      addresses: this.addresses,
    });
  }

  #listener(lc: ListenerConfig, tls: TlsContexts, routes: HttpRoute[]): Listener {
    if (lc.type === "http") {
      const http = httpListener(
        lc,
        this,
        this.hosts,
        tls,
        this.#monitoring,
        this.resumption!,
        routes,
      );
      this.#http.add(http);
      return http;
    }
    const base = {
      name: lc.type,
      bind: lc.bind,
      port: lc.port,
      connectionsPerIp: this.config.limits.connections_per_ip,
      tlsHandshakeMs: this.config.timeouts.tls_handshake * 1000,
      descriptors: this.descriptors,
    };
    if (lc.type === "component") {
      const deps = { ctx: this, pools: this.components };
      return new StreamListener(base, (transport) => new ComponentStream(transport, deps));
    }
    const deps = { ctx: this, hosts: this.hosts, tls, listener: lc, resumption: this.resumption! };
    const direct = lc.type === "c2s_tls" ? { tls: (name?: string) => tls.select(name) } : {};
    return new StreamListener(
      { ...base, ...direct },
      (transport, secure) => new C2SSession(transport, secure, deps),
    );
  }

  /** Graceful shutdown: stop accepting, close every stream with system-shutdown, flush storage. */
  stop(): Promise<void> {
    return this.#stopping ??= this.#stop();
  }

  async #stop(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#monitoring.stop();
    await this.#admin?.close();
    const stopping = SERVICES.flatMap((plugin) =>
      [...this.services.of(plugin).values()].map((s) => plugin.stop?.(s))
    );
    await Promise.all(stopping);
    // server.close() resolves only once every connection is gone, so streams are closed meanwhile.
    // The http listeners close last: until then /health answers 503 to load balancers.
    for (const l of this.#http) l.drain();
    const closing: Promise<void>[] = this.listeners.filter((l) =>
      !this.#http.has(l as HttpListener)
    )
      .map((l) => l.close());
    for (const l of this.listeners) {
      for (const s of l.streams) {
        closing.push(s.whenClosed);
        s.error("system-shutdown");
      }
    }
    await Promise.all(closing);
    this.resumption?.stop();
    this.retention.stop();
    await this.archive.stop();
    await this.serial.idle();
    await Promise.all([...this.#http].map((l) => l.close()));
    await this.cluster?.stop();
    await this.store.close();
    log.info("stopped");
  }
}

/**
 * Opens the store and reads the cluster secret (the same on every node sharing the store, and
 * across restarts). A node may start before its database: while the store is unreachable it
 * waits, saying so, with a pause that doubles up to STORE_RETRY_MS[1].
 */
async function openStoreWhenReady(config: Config): Promise<{ store: Store; secret: Uint8Array }> {
  for (let pause = STORE_RETRY_MS[0];; pause = Math.min(2 * pause, STORE_RETRY_MS[1])) {
    let store: Store | undefined;
    try {
      store = await openStore(config);
      return { store, secret: await store.clusterSecret() };
    } catch (e) {
      await store?.close();
      if (!(e instanceof StoreBusyError)) throw e;
      log.warn("storage unavailable ({error}); retrying in {pause} ms", {
        error: e.message,
        pause,
      });
      await new Promise((r) => setTimeout(r, pause));
    }
  }
}
