// Services on domains of their own beside a virtual host (MUC, the SOCKS5 proxy, external
// components, file upload) share one plug-in shape, as modules do on a host: the server makes each
// kind's distribution (alone: the local one; in a cluster: the cluster's), makes the services from
// every host's configuration with it, starts them, routes their domains to them, lists them in the
// host's disco#items, serves their paths on the http listeners, answers admin requests from them
// and stops them, knowing nothing else about any kind.
import type { DomainHandler } from "../router/router.ts";
import type { Host } from "../core/host.ts";
import type { Distribution } from "../core/distribution.ts";
import type { ClusterNode } from "../cluster/node.ts";
import type { HttpRoute } from "../http/routes.ts";

/** A service: the handler of its own domain. */
export interface Service extends DomainHandler {
  readonly domain: string;
}

/** One kind of service. Methods, not function properties, so a list may hold every kind. */
export interface ServicePlugin<
  S extends Service = Service,
  D extends Distribution<S> = Distribution<S>,
> {
  /** This kind on one node alone. */
  local(): D;
  /** This kind over a cluster, through this node's part in it (no link is up yet). */
  clustered(node: ClusterNode): D;
  /**
   * The services `host` configures (often none), not yet started, each going through
   * `distribution`; `localDomains` are the domains of every local virtual host.
   */
  create(host: Host, localDomains: Set<string>, distribution: D): S[];
  /** Binds sockets, loads state, hooks `host`: the service works once this resolves. */
  start?(service: S, host: Host): Promise<void>;
  /** The entry for `service` in its host's disco#items. */
  item(service: S): { jid: string; name?: string };
  /** Says goodbye to the service's users and releases what it holds. */
  stop?(service: S): Promise<void> | void;
  /** Paths `service` answers on every http listener (each under its prefix). */
  routes?(service: S): HttpRoute[];
  /** Admin socket commands this kind answers, reading its running services (by domain). */
  admin?(services: Map<string, S>): Record<string, () => unknown>;
}

/** The running services, by kind and domain. */
export class Services {
  #byKind = new Map<ServicePlugin, Map<string, Service>>();

  /** The running services of one kind, by domain (a live map). */
  of<S extends Service>(plugin: ServicePlugin<S>): Map<string, S> {
    const p = plugin as unknown as ServicePlugin;
    let m = this.#byKind.get(p);
    if (!m) this.#byKind.set(p, m = new Map());
    return m as Map<string, S>;
  }
}
