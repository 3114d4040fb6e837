// Discovering the web connection methods (XEP-0156): /.well-known/host-meta (XRD) and
// /.well-known/host-meta.json (JRD) list this listener's WebSocket and BOSH URLs, as clients
// reach them: under `http.public_url` when set (a reverse proxy), else at the scheme and Host the
// request came with. Any page may read them (CORS *), as Prosody's and ejabberd's.
import { escapeAttr } from "../xml/escape.ts";
import type { HttpHandler } from "./routes.ts";

export const HOST_META_PATH = "/.well-known/host-meta";
export const HOST_META_JSON_PATH = "/.well-known/host-meta.json";
const WEBSOCKET_REL = "urn:xmpp:alt-connections:websocket";
const BOSH_REL = "urn:xmpp:alt-connections:xbosh";

export interface WebPaths {
  websocket: string;
  bosh: string;
}

/** The two routes, XRD and JSON. */
export function hostMetaRoutes(publicUrl: string | undefined, paths: WebPaths): {
  xrd: HttpHandler;
  json: HttpHandler;
} {
  const links = (req: Request, secure: boolean) => {
    const base = publicUrl?.replace(/\/+$/, "") ??
      `${secure ? "https" : "http"}://${req.headers.get("host") ?? new URL(req.url).host}`;
    const ws = base.replace(/^http/, "ws");
    return [
      { rel: WEBSOCKET_REL, href: ws + paths.websocket },
      { rel: BOSH_REL, href: base + paths.bosh },
    ];
  };
  const headers = (type: string) => ({
    "content-type": type,
    "access-control-allow-origin": "*",
    "cache-control": "max-age=300",
  });
  return {
    xrd: (req, client) =>
      new Response(
        "<?xml version='1.0' encoding='utf-8'?>\n" +
          "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n" +
          links(req, client.secure).map((l) =>
            `  <Link rel='${l.rel}' href='${escapeAttr(l.href)}'/>\n`
          ).join("") + "</XRD>\n",
        { headers: headers("application/xrd+xml; charset=utf-8") },
      ),
    json: (req, client) =>
      new Response(JSON.stringify({ links: links(req, client.secure) }) + "\n", {
        headers: headers("application/json"),
      }),
  };
}
