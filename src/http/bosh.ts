// BOSH (XEP-0124) carrying client streams (XEP-0206) at /http-bind. Each POSTed <body/> is read
// (at most limits.max_stanza_size and BODY_SLACK more, within timeouts.handshake), its wrapper
// checked, and handed to the session its sid names (bosh_transport.ts); one without a sid
// creates a session, admitted per address like a WebSocket: a client session over a BOSH
// transport (web_client.ts). An unknown sid is answered from the start tag alone, so a flood of
// them costs a read and a lookup each. A session whose stream closed while no request was held
// leaves the response to that close (remote-stream-error with the <stream:error/>) for its next
// request, kept at most `bosh.inactivity` seconds; then its sid is unknown.
//
// Errors are the terminal binding conditions of BOSH 1.6+ (HTTP 200, <body type='terminate'
// condition='…'/>) for every client: the deprecated HTTP codes of legacy clients are not sent,
// nor the listener's 429 and 503 when it refuses a session (XEP-0124 §17.1: every HTTP code but
// 200 is superseded by a condition). One naming a session ends it. Pages from
// `http.allowed_origins` (any, when it is empty) may POST here (CORS) and read every answer,
// refusals too; others get 403 as on the WebSocket. Key sequencing (newkey/key), session pauses,
// acknowledgements and multiple streams per session are not offered.
import { randomBytes } from "node:crypto";
import type { C2SDeps } from "../c2s/session.ts";
import { parseJid } from "../jid/jid.ts";
import { parseStanza } from "../xml/parse_string.ts";
import { logger } from "../log/logger.ts";
import type { HttpClient } from "./routes.ts";
import { type HttpHandler, type HttpRoutes, text } from "./routes.ts";
import {
  type BoshRequest,
  BoshTransport,
  NS_HTTPBIND,
  NS_XBOSH,
  terminal,
} from "./bosh_transport.ts";
import { webClientSession } from "./web_client.ts";
import { heldLimit } from "./framing.ts";

const log = logger("bosh");
/** Bytes of a request beyond the largest stanza: the wrapper, and room for a few small stanzas. */
const BODY_SLACK = 16_384;
/** Longest <body/> start tag read. */
const TAG_MAX = 4096;
/** The BOSH version implemented (XEP-0124 1.11). */
const VERSION = [1, 11];
/** Shortest interval between empty polls of a polling session (hold 0), in seconds. */
const POLLING = 5;
const CONTENT_TYPE = "text/xml; charset=utf-8";
/** The <body/> start tag, after an XML declaration if any; attribute values may hold `>`. */
const START = /^\s*(?:<\?xml\s[^>]*\?>\s*)?(<body\b(?:[^>"']|"[^"]*"|'[^']*')*>)/;
const SID = /\ssid\s*=\s*(?:'([^']*)'|"([^"]*)")/;
const END = /<\/body\s*>\s*$/;
const RID = /^[1-9]\d{0,15}$/;
const COUNT = /^\d{1,9}$/;
/** The `content` a client may ask its responses to be labelled with: XML or text, never HTML. */
const MEDIA_TYPE = /^(?:text\/xml|application\/xml|text\/plain)(?:\s*;\s*[\w.-]+=[\w.-]+)*$/i;
const PREFLIGHT = {
  "access-control-allow-methods": "POST, GET, OPTIONS",
  "access-control-allow-headers": "content-type",
  "access-control-max-age": "86400",
};

/** The response to a session's close that no request took, kept for the next request. */
interface Ended {
  body: string;
  contentType: string;
  timer: ReturnType<typeof setTimeout>;
}

export const BOSH_PATH = "/http-bind";

export function boshRoute(routes: HttpRoutes, deps: C2SDeps): HttpHandler {
  const { bosh, limits, timeouts } = deps.ctx.config;
  const sessions = new Map<string, BoshTransport>();
  const ended = new Map<string, Ended>();
  const maxBody = limits.max_stanza_size + BODY_SLACK;
  // A browser sends a request's body with its headers; the largest (maxBody) takes seconds on a
  // slow link. One still incomplete after the time a TCP client has to open its stream and log in
  // is stalled: the same setting bounds both, and an operator who tightens one tightens the other.
  const bodyMs = timeouts.handshake * 1000;

  /** The stream of a session is gone: the response to its close, if no request took it, waits
   * for the next request (only the last response, at most `inactivity` seconds). */
  function closed(transport: BoshTransport): void {
    const { sid, unsent } = transport;
    sessions.delete(sid);
    if (unsent === undefined) return;
    const timer = setTimeout(() => ended.delete(sid), bosh.inactivity * 1000);
    Deno.unrefTimer(timer);
    ended.set(sid, { body: unsent, contentType: transport.contentType, timer });
  }

  /**
   * A request naming a session that is no more: the response to its close once, else unknown:
   * item-not-found, with XEP-0124 §17's HTTP 404 too (the condition says it to clients reading
   * bodies, the status to those that do not, and to a flood of guesses at no cost).
   */
  function endedSession(sid: string, cors: Record<string, string>): Response {
    const end = ended.get(sid);
    if (!end) return xml(terminal("item-not-found"), cors, CONTENT_TYPE, 404);
    ended.delete(sid);
    clearTimeout(end.timer);
    return xml(end.body, cors, end.contentType);
  }

  /** A new session (XEP-0124 §7, XEP-0206 §5): the response to its creation request. */
  async function create(
    request: BoshRequest,
    client: HttpClient,
    cors: Record<string, string>,
  ): Promise<Response> {
    const a = request.attrs;
    if (!a.to) return xml(terminal("improper-addressing"), cors);
    if (!deps.hosts.has(parseJid(a.to)?.domain ?? "")) return xml(terminal("host-unknown"), cors);
    const wait = COUNT.test(a.wait ?? "") ? Math.min(Number(a.wait), bosh.max_wait) : -1;
    const hold = COUNT.test(a.hold ?? "1") ? Math.min(Number(a.hold ?? 1), bosh.max_hold) : -1;
    if (wait < 0 || hold < 0) return xml(terminal("bad-request"), cors);
    const admitted = client.listener.admit(client.ip);
    if (admitted instanceof Response) return refused(admitted, cors);
    const sid = randomBytes(18).toString("base64url");
    const created = ` sid='${sid}' wait='${wait}' requests='${hold + 1}' hold='${hold}'` +
      ` inactivity='${bosh.inactivity}' polling='${POLLING}' ver='${version(a.ver)}'` +
      ` secure='true' xmpp:version='1.0' xmpp:restartlogic='true' xmlns:xmpp='${NS_XBOSH}'`;
    const transport = new BoshTransport(sid, client.remote, {
      wait,
      hold,
      inactivity: bosh.inactivity,
      polling: POLLING,
      maxRate: bosh.max_requests_per_second,
      maxHeld: heldLimit(limits),
      highWater: limits.max_outbound_buffer / 2,
      created,
      // No more than a request costs while it is read.
      maxKept: maxBody,
    }, MEDIA_TYPE.test(a.content ?? "") ? a.content! : CONTENT_TYPE);
    const stream = webClientSession(transport, client, deps, admitted);
    sessions.set(sid, transport);
    stream.whenClosed.then(() => closed(transport));
    log.debug("BOSH session {sid} is stream {id}", { sid, id: stream.id });
    return xml(await transport.open(request), cors, transport.contentType);
  }

  return async (req, client) => {
    if (!routes.originAllowed(req)) return text(403, "this origin may not connect");
    const cors = corsHeaders(req, routes.allowedOrigins);
    if (req.method === "OPTIONS") {
      return new Response(null, { status: 204, headers: { ...cors, ...PREFLIGHT } });
    }
    if (req.method === "GET") {
      return text(200, "XMPP over BOSH (XEP-0124, XEP-0206): POST a <body/> here", cors);
    }
    if (req.method !== "POST") {
      return text(405, "BOSH takes POST", { ...cors, allow: "POST, GET, OPTIONS" });
    }
    const read = await readBody(req, maxBody, bodyMs);
    if (read.end === "aborted") {
      // The client is gone: no one reads the answer, and the session it may name goes on.
      log.debug("BOSH request from {remote} broken off: {error}", {
        remote: client.remote,
        error: String(read.error),
      });
      return xml(terminal("bad-request"), cors);
    }
    const start = START.exec(read.text.slice(0, TAG_MAX));
    const named = start && SID.exec(start[1]);
    const sid = named ? named[1] ?? named[2] : undefined;
    const session = sid === undefined ? undefined : sessions.get(sid);
    // Unknown: answered before anything else is looked at.
    if (sid !== undefined && !session) return endedSession(sid, cors);
    /** A terminal binding condition, which ends the session the request names. */
    const refuse = (condition: string) =>
      xml(session ? session.fail(condition) : terminal(condition), cors);
    if (read.end === "over") return refuse("policy-violation");
    if (read.end === "late") {
      log.debug("BOSH request from {remote} stalled: body incomplete after {s} s", {
        remote: client.remote,
        s: timeouts.handshake,
      });
      return refuse("bad-request");
    }
    const request = read.valid && start ? parseWrapper(read.text, start) : null;
    if (!request || request.attrs.sid !== sid) return refuse("bad-request");
    if (session) return xml(await session.handle(request), cors, session.contentType);
    return await create(request, client, cors);
  };
}

/**
 * The listener's refusals of a session (listener.ts) as terminal binding conditions (XEP-0124
 * §17.2): 429, over the cap per address, breaks the server's rules (policy-violation); 503, the
 * server stopping, creates no more sessions (system-shutdown).
 */
const REFUSALS: Record<number, string> = { 429: "policy-violation", 503: "system-shutdown" };

/**
 * A refusal of the listener in BOSH's terms, with the route's CORS headers so that a page can
 * read it: without them a browser hides the whole response, status too, and its client sees a
 * network error it may retry at once.
 */
function refused(refusal: Response, cors: Record<string, string>): Response {
  return xml(terminal(REFUSALS[refusal.status] ?? "internal-server-error"), cors);
}

/** A response of the binding: always 200, the outcome is in the <body/>. */
function xml(
  body: string,
  cors: Record<string, string>,
  type = CONTENT_TYPE,
  status = 200,
): Response {
  return new Response(body, {
    status,
    headers: { "content-type": type, "cache-control": "no-store", ...cors },
  });
}

/** Who may read the answers: any page when `allowed` is empty, else the (allowed) page asking. */
function corsHeaders(req: Request, allowed: string[]): Record<string, string> {
  if (allowed.length === 0) return { "access-control-allow-origin": "*" };
  const origin = req.headers.get("origin");
  return origin === null
    ? { vary: "origin" }
    : { "access-control-allow-origin": origin, vary: "origin" };
}

/** How reading a request's body ended: all of it; cut at the size limit or at the deadline;
 * broken off by the client. */
type BodyEnd = "whole" | "over" | "late" | "aborted";

/** The request's body: `text` is what came (its start, unless `end` is "whole"), `valid` false
 * when it is not UTF-8. Reading stops past `max` bytes and after `ms` milliseconds. */
async function readBody(
  req: Request,
  max: number,
  ms: number,
): Promise<{ text: string; end: BodyEnd; valid: boolean; error?: unknown }> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let end: BodyEnd = "whole";
  let error: unknown;
  if (req.body) {
    const reader = req.body.getReader();
    // Cancelling ends the read under way: it resolves as done.
    const deadline = setTimeout(() => {
      if (end === "whole") end = "late";
      reader.cancel().catch(() => {});
    }, ms);
    try {
      for (let r = await reader.read(); !r.done; r = await reader.read()) {
        chunks.push(r.value);
        size += r.value.length;
        if (size > max) {
          end = "over";
          await reader.cancel();
          break;
        }
      }
    } catch (e) {
      // The connection closed mid-body (BadResource), or the read failed as the deadline passed.
      if (end === "whole") [end, error] = ["aborted", e];
    } finally {
      clearTimeout(deadline);
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  try {
    return {
      text: new TextDecoder("utf-8", { fatal: true }).decode(bytes),
      end,
      valid: true,
      error,
    };
  } catch {
    return { text: new TextDecoder().decode(bytes.subarray(0, TAG_MAX)), end, valid: false, error };
  }
}

/** The request in a <body/> wrapper, or null when the wrapper is malformed (bad-request). */
function parseWrapper(text: string, start: RegExpExecArray): BoshRequest | null {
  const tag = start[1];
  const empty = tag.endsWith("/>");
  const el = parseStanza(empty ? tag : tag.slice(0, -1) + "/>", {
    maxStanzaSize: TAG_MAX,
    maxDepth: 1,
  });
  if (!el || el.name !== "body" || el.attrs.xmlns !== NS_HTTPBIND) return null;
  const rest = text.slice(start[0].length);
  const end = empty ? undefined : END.exec(rest);
  if (empty ? rest.trim() !== "" : !end) return null;
  const rid = el.attrs.rid ?? "";
  if (!RID.test(rid) || !Number.isSafeInteger(Number(rid))) return null;
  return { rid: Number(rid), attrs: el.attrs, payload: end ? rest.slice(0, end.index) : "" };
}

/** The session's BOSH version: the client's `ver`, or ours when that is higher (§7.2). */
function version(asked: string | undefined): string {
  const m = /^(\d{1,4})\.(\d{1,4})$/.exec(asked ?? "");
  const [major, minor] = m ? [Number(m[1]), Number(m[2])] : VERSION;
  const lower = major < VERSION[0] || (major === VERSION[0] && minor < VERSION[1]);
  return lower ? `${major}.${minor}` : VERSION.join(".");
}
