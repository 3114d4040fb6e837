// XMPP over WebSocket (RFC 7395) at /xmpp-websocket: the upgrade, checked (subprotocol "xmpp",
// the page's Origin, the caps per address), then a client session like a TCP one over a
// WebSocket transport (ws_transport.ts). TLS is the WebSocket's (wss) or a trusted proxy's: no
// STARTTLS is offered, and SASL PLAIN only over TLS or from a trusted proxy.
import type { C2SDeps } from "../c2s/session.ts";
import type { HttpHandler, HttpRoutes } from "./routes.ts";
import { text } from "./routes.ts";
import { WsTransport } from "./ws_transport.ts";
import { webClientSession } from "./web_client.ts";
import { heldLimit } from "./framing.ts";

export const WEBSOCKET_PATH = "/xmpp-websocket";
/** Seconds between WebSocket pings when `timeouts.ping_interval` is 0 (no XMPP pings). */
export const WEBSOCKET_PING_S = 120;

export function websocketRoute(routes: HttpRoutes, deps: C2SDeps): HttpHandler {
  const { limits, timeouts } = deps.ctx.config;
  const maxHeld = heldLimit(limits);
  return (req, client) => {
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return text(426, "XMPP over WebSocket (RFC 7395): upgrade to a WebSocket", {
        upgrade: "websocket",
      });
    }
    if (!routes.originAllowed(req)) return text(403, "this origin may not connect");
    const protocols = (req.headers.get("sec-websocket-protocol") ?? "").split(",");
    if (!protocols.some((p) => p.trim() === "xmpp")) {
      return text(400, "the WebSocket subprotocol xmpp (RFC 7395) is required");
    }
    // What Deno.upgradeWebSocket would throw at, answered before anything is counted.
    const key = req.headers.get("sec-websocket-key");
    if (
      !/\bupgrade\b/i.test(req.headers.get("connection") ?? "") || !key ||
      req.headers.get("sec-websocket-version") !== "13"
    ) {
      return text(400, "not a WebSocket handshake (RFC 6455)", { "sec-websocket-version": "13" });
    }
    const admitted = client.listener.admit(client.ip);
    if (admitted instanceof Response) return admitted;
    let upgraded: ReturnType<typeof Deno.upgradeWebSocket>;
    try {
      upgraded = Deno.upgradeWebSocket(req, {
        protocol: "xmpp",
        // WebSocket pings: a client that does not answer one within this time is closed.
        idleTimeout: timeouts.ping_interval || WEBSOCKET_PING_S,
      });
    } catch (e) {
      admitted();
      return text(400, `not a WebSocket handshake: ${(e as Error).message}`);
    }
    const { socket, response } = upgraded;
    const transport = new WsTransport(
      socket,
      client.remote,
      maxHeld,
      limits.max_outbound_buffer / 2,
      limits.max_stanza_size,
    );
    webClientSession(transport, client, deps, admitted);
    return response;
  };
}
