// XMPP over WebSocket (RFC 7395) at /xmpp-websocket: the upgrade, checked (subprotocol "xmpp",
// the page's Origin, the caps per address), then a client session like a TCP one over a
// WebSocket transport (ws_transport.ts). TLS is the WebSocket's (wss) or a trusted proxy's: no
// STARTTLS is offered, and SASL PLAIN only over TLS or from a trusted proxy.
import type { C2SDeps } from "../c2s/session.ts";
import type { HttpHandler, HttpRoutes } from "./routes.ts";
import { text } from "./routes.ts";
import { WsTransport } from "./ws_transport.ts";
import { webClientSession } from "./web_client.ts";

export const WEBSOCKET_PATH = "/xmpp-websocket";

export function websocketRoute(routes: HttpRoutes, deps: C2SDeps): HttpHandler {
  const { limits, timeouts } = deps.ctx.config;
  // Held while the stream is rate limited: what TCP's window would hold, and one stanza more.
  const maxHeld = limits.rate_burst_bytes + limits.max_stanza_size;
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
    const admitted = client.listener.admit(client.ip);
    if (admitted instanceof Response) return admitted;
    const { socket, response } = Deno.upgradeWebSocket(req, {
      protocol: "xmpp",
      // WebSocket pings: a client that does not answer one within this time is closed.
      idleTimeout: timeouts.ping_interval || 120,
    });
    const transport = new WsTransport(
      socket,
      client.remote,
      maxHeld,
      limits.max_outbound_buffer / 2,
    );
    webClientSession(transport, client, deps, admitted);
    return response;
  };
}
