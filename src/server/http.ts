// The server's HTTP listeners (`type: http`): each with the routes the server answers there
// (WebSocket and BOSH clients, XEP-0156 discovery, /metrics and /health, and what services serve
// under their paths: file upload), built from the configuration and the server's shared parts.
import type { Config, ListenerConfig } from "../config/schema.ts";
import type { ServerContext } from "../core/context.ts";
import type { Host } from "../core/host.ts";
import type { TlsContexts } from "../tls/certificates.ts";
import { HttpListener } from "../http/listener.ts";
import type { Resumption } from "../c2s/resumption.ts";
import { type HttpRoute, HttpRoutes } from "../http/routes.ts";
import { WEBSOCKET_PATH, WEBSOCKET_PING_S, websocketRoute } from "../http/websocket.ts";
import { BOSH_PATH, boshRoute } from "../http/bosh.ts";
import { HOST_META_JSON_PATH, HOST_META_PATH, hostMetaRoutes } from "../http/host_meta.ts";
import { HEALTH_PATH, METRICS_PATH, type Monitoring } from "../http/monitoring.ts";

/** Beyond the longest silence a live connection has, before it is taken for dead. */
const IDLE_SLACK_S = 30;
/** Beyond the longest a request may honestly take to be sent and answered. */
const REQUEST_SLACK_S = 5;

export function httpListener(
  lc: ListenerConfig,
  ctx: ServerContext,
  hosts: Map<string, Host>,
  tls: TlsContexts,
  monitoring: Monitoring,
  resumption: Resumption,
  /** What services answer under their own paths (file upload). */
  serviceRoutes: HttpRoute[] = [],
): HttpListener {
  const { config } = ctx;
  const routes = new HttpRoutes(config.http.allowed_origins);
  for (const r of serviceRoutes) routes.addPrefix(r);
  const c2s = { ctx, hosts, tls, listener: lc, resumption };
  routes.add(WEBSOCKET_PATH, websocketRoute(routes, c2s));
  routes.add(BOSH_PATH, boshRoute(routes, c2s));
  const meta = hostMetaRoutes(config.http.public_url, {
    websocket: WEBSOCKET_PATH,
    bosh: BOSH_PATH,
  });
  routes.add(HOST_META_PATH, meta.xrd);
  routes.add(HOST_META_JSON_PATH, meta.json);
  routes.add(METRICS_PATH, monitoring.metrics);
  routes.add(HEALTH_PATH, monitoring.health);
  return new HttpListener({
    bind: lc.bind,
    port: lc.port,
    tls: lc.tls ? (name) => tls.select(name) : undefined,
    tlsHandshakeMs: config.timeouts.tls_handshake * 1000,
    idleMs: idleSeconds(config) * 1000,
    // A held BOSH request is answered within max_wait; any request sent within the login time.
    requestMs: (config.bosh.max_wait + config.timeouts.handshake + REQUEST_SLACK_S) * 1000,
    trustedProxies: lc.trusted_proxies,
    forwardedHeader: lc.forwarded_header,
    connectionsPerIp: config.limits.connections_per_ip,
    descriptors: ctx.descriptors,
  }, routes);
}

/**
 * How long a connection to the http listener may stay silent both ways: longer than a BOSH
 * request may be held, than the pings on a WebSocket, and than a client may take to log in.
 */
function idleSeconds(config: Config): number {
  const { bosh, timeouts } = config;
  const ping = (timeouts.ping_interval || WEBSOCKET_PING_S) + timeouts.ping_timeout;
  return Math.max(bosh.max_wait, ping, timeouts.handshake) + IDLE_SLACK_S;
}
