// A client session over an HTTP transport (a WebSocket, a BOSH session): TLS is the web
// connection's (https, wss) or a trusted proxy's, so no STARTTLS is offered, and SASL PLAIN only
// over TLS, from a trusted proxy, or where the listener allows it without. The session is kept
// by the listener (idle checks, shutdown) and gives back its admission once gone.
import { type C2SDeps, C2SSession } from "../c2s/session.ts";
import type { Transport } from "../stream/transport.ts";
import type { HttpClient } from "./routes.ts";

export function webClientSession(
  transport: Transport,
  client: HttpClient,
  deps: C2SDeps,
  release: () => void,
): C2SSession {
  const listener = {
    ...deps.listener,
    starttls: "disabled" as const,
    plain_without_tls: deps.listener.plain_without_tls || client.proxied,
  };
  const session = new C2SSession(transport, client.secure, { ...deps, listener });
  client.listener.track(session, release);
  return session;
}
