// The base URL clients reach an http listener at, for the URLs the server hands out over XMPP
// (upload slots): `http.public_url` when set (a reverse proxy, a load balancer in front of a
// cluster), else the listener's own scheme, address and port, with the host's domain in place of
// a wildcard address.
import type { ListenerConfig } from "../config/schema.ts";

const WILDCARD = /^(?:0\.0\.0\.0|::|\[::\])$/;

/** Without a trailing "/". */
export function listenerUrl(
  publicUrl: string | undefined,
  listener: ListenerConfig,
  port: number,
  domain: string,
): string {
  if (publicUrl) return publicUrl.replace(/\/+$/, "");
  const bind = listener.bind;
  const host = WILDCARD.test(bind)
    ? domain
    : bind.includes(":") && !bind.startsWith("[")
    ? `[${bind}]`
    : bind;
  return `${listener.tls ? "https" : "http"}://${host}:${port}`;
}
