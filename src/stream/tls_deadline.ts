// A deadline for a TLS handshake: a peer that connects and never finishes it (no ClientHello, or
// half of one) must not hold its connection and descriptor for as long as it likes.
import type net from "node:net";
import type tls from "node:tls";
import { logger } from "../log/logger.ts";

const log = logger("listener");

/**
 * Closes `raw` unless a TLS handshake on it completes within `ms`. Returns the function that
 * names the TLS socket once `raw` is wrapped: its handshake is the one that must complete.
 */
export function tlsDeadline(raw: net.Socket, ms: number): (secure: tls.TLSSocket) => void {
  let current: net.Socket = raw;
  const timer = setTimeout(() => {
    log.debug("TLS handshake with {remote} not done in time", { remote: raw.remoteAddress });
    current.destroy();
  }, ms);
  raw.once("close", () => clearTimeout(timer));
  return (secure) => {
    current = secure;
    secure.once("secure", () => clearTimeout(timer));
  };
}
