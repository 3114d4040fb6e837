// HTTP File Upload (XEP-0363 §4–§5), the HTTP side, under the service's path on every http
// listener: PUT /upload/<service>/<id>/<name> stores a file with its slot's token, GET and HEAD
// serve it to anyone with its URL. Every answer is to that one request:
// - PUT: no, forged or expired slot, or another id's → 403; no Content-Length → 411; more bytes
//   than the slot's size → 413, fewer → 400; another Content-Type than the slot's → 415; a used
//   slot → 409; the owner's quota exceeded meanwhile → 413; the body ending early → 400; the store
//   unreachable → 503; stored → 201. Once its slot is verified an upload may take as long as its
//   body takes to arrive (the listener's idle timeout still applies, not its request deadline).
// - GET/HEAD: unknown → 404 (and anything that is not a file's path: nothing is listed); one byte
//   range → 206, past the end → 416; long-lived caching (the bytes behind a URL never change),
//   nosniff and a Content-Security-Policy that runs nothing (an uploaded page stays inert in our
//   origin), Content-Disposition with the name.
// - Browsers: CORS with `http.allowed_origins` (any origin when empty), preflights for PUT.
// - Per client address (IPv6: /64) `requests_per_minute` uploads and downloads → 429.
// Bodies stream both ways with backpressure; a file is never whole in memory.
import { type HttpClient, type HttpHandler, text } from "../http/routes.ts";
import { BYTE_COUNT, ID_PATTERN } from "./slot.ts";
import { addressKey } from "../sasl/throttle.ts";
import { StoreBusyError } from "../storage/store.ts";
import { logger } from "../log/logger.ts";
import { type PutRefusal, PutRefused } from "./file_store.ts";
import { contentDisposition, sameType } from "./names.ts";
import { parseRange } from "./ranges.ts";
import { DEFAULT_TYPE, type UploadService } from "./service.ts";

const log = logger("upload");
/** The longest a browser or cache keeps a file (a year), unless retention ends it sooner. */
const MAX_AGE_S = 365 * 86_400;
const METHODS = "GET, HEAD, PUT, OPTIONS";
/** Nothing in a served file runs or loads anything, and no page may frame it. */
const CSP = "default-src 'none'; frame-ancestors 'none'; form-action 'none'; sandbox";
const STATUS_TEXT: Record<PutRefusal, [number, string]> = {
  exists: [409, "this slot was used already"],
  quota: [413, "quota exceeded"],
  short: [400, "the body ended before Content-Length bytes"],
  long: [413, "the body is longer than the slot's size"],
  removed: [410, "the file was removed while it was stored"],
};

/** The handler of `service`'s path. */
export function uploadRoute(service: UploadService): HttpHandler {
  const pattern = new RegExp(`^${escapeRegExp(service.path)}(${ID_PATTERN})/[^/]+$`);
  const origins = service.deps.config.http.allowed_origins;
  const counts = service.deps.counts;
  return async (req, client) => {
    const origin = req.headers.get("origin");
    const cors = corsHeaders(origin, origins);
    if (!cors) return text(403, "this origin may not use this server", {});
    const id = pattern.exec(new URL(req.url).pathname)?.[1];
    if (req.method === "OPTIONS") {
      if (!id) return text(404, "not found", cors);
      return new Response(null, {
        status: 204,
        headers: {
          ...cors,
          "access-control-allow-methods": METHODS,
          "access-control-allow-headers": "authorization, content-type",
          "access-control-max-age": "86400",
        },
      });
    }
    if (!["GET", "HEAD", "PUT"].includes(req.method)) {
      return text(405, "method not allowed", { ...cors, allow: METHODS });
    }
    const wait = service.requestRate.take(addressKey(client.remote));
    if (wait > 0) {
      counts.rateLimited++;
      return text(429, "too many requests from your address", {
        ...cors,
        "retry-after": String(Math.ceil(wait / 1000)),
      });
    }
    if (!id) return text(404, "not found", cors);
    try {
      return req.method === "PUT"
        ? await put(service, req, client, id, cors)
        : await get(service, req, id, cors);
    } catch (e) {
      if (e instanceof StoreBusyError) {
        log.warn("upload request failed: {error}", { error: e.message });
        return text(503, "storage is busy or unreachable, retry later", {
          ...cors,
          "retry-after": "10",
        });
      }
      log.error("upload request failed: {error}", { error: String((e as Error)?.stack ?? e) });
      return text(500, "internal server error", cors);
    }
  };
}

async function put(
  service: UploadService,
  req: Request,
  client: HttpClient,
  id: string,
  cors: Record<string, string>,
): Promise<Response> {
  const counts = service.deps.counts;
  const refuse = (status: number, why: string) => {
    counts.uploadsRefused++;
    return text(status, why, cors);
  };
  const token = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get("authorization") ?? "")?.[1];
  if (!token) return refuse(403, "an upload needs its slot's Authorization header");
  const slot = service.signer.verify(token);
  const owner = slot && /^(.+)@([^@]+)$/.exec(slot.owner);
  if (!slot || !owner || slot.id !== id || owner[2] !== service.host) {
    return refuse(403, "not a slot for this URL");
  }
  if (Date.now() > slot.expires) return refuse(403, "the slot has expired");
  const length = req.headers.get("content-length");
  if (length === null) return refuse(411, "Content-Length is required");
  if (!BYTE_COUNT.test(length.trim())) return refuse(400, "Content-Length is not a number");
  const size = Number(length);
  if (size > slot.size) return refuse(413, `the slot is for ${slot.size} bytes`);
  if (size < slot.size) return refuse(400, `the slot is for ${slot.size} bytes`);
  const type = req.headers.get("content-type");
  if (slot.type && (type === null || !sameType(type, slot.type))) {
    return refuse(415, `the slot is for Content-Type ${slot.type}`);
  }
  if (!await service.deps.store.getCredentials(owner[1], owner[2])) {
    return refuse(403, "the account that asked for the slot is gone");
  }
  // A verified upload may take as long as its body takes (the idle timeout still applies).
  client.streaming();
  const meta = {
    id,
    owner: slot.owner,
    filename: slot.filename,
    type: slot.type || DEFAULT_TYPE,
    size,
    at: Date.now(),
  };
  try {
    await service.files.put(meta, req.body ?? empty(), service.config.quota_per_user);
  } catch (e) {
    if (!(e instanceof PutRefused)) throw e;
    return refuse(...STATUS_TEXT[e.reason]);
  }
  counts.uploads++;
  counts.uploadBytes += size;
  log.debug("stored {id} ({size} bytes) of {owner}", { id, size, owner: slot.owner });
  return text(201, "created", cors);
}

async function get(
  service: UploadService,
  req: Request,
  id: string,
  cors: Record<string, string>,
): Promise<Response> {
  const meta = await service.files.info(id);
  if (!meta || !meta.owner.endsWith(`@${service.host}`)) return text(404, "not found", cors);
  const etag = `"${id}"`;
  const left = Math.floor((meta.at + service.retentionMs - Date.now()) / 1000);
  const headers: Record<string, string> = {
    ...cors,
    "access-control-expose-headers": "content-length, content-range, content-disposition, etag",
    "cache-control": `public, max-age=${Math.max(0, Math.min(left, MAX_AGE_S))}, immutable`,
    "etag": etag,
    "last-modified": new Date(meta.at).toUTCString(),
    "accept-ranges": "bytes",
    "x-content-type-options": "nosniff",
    "content-security-policy": CSP,
    "cross-origin-resource-policy": "cross-origin",
    "referrer-policy": "no-referrer",
  };
  if (ifNoneMatch(req.headers.get("if-none-match"), etag)) {
    return new Response(null, { status: 304, headers });
  }
  const ifRange = req.headers.get("if-range");
  const asked = ifRange === null || ifRange === etag
    ? parseRange(req.headers.get("range"), meta.size)
    : "whole";
  if (asked === "unsatisfiable") {
    return text(416, "range not satisfiable", {
      ...headers,
      "content-range": `bytes */${meta.size}`,
    });
  }
  const range = asked === "whole" ? undefined : asked;
  const length = range ? range.end - range.start + 1 : meta.size;
  Object.assign(headers, {
    "content-type": meta.type,
    "content-length": String(length),
    "content-disposition": contentDisposition(meta.type, meta.filename),
  });
  if (range) headers["content-range"] = `bytes ${range.start}-${range.end}/${meta.size}`;
  const status = range ? 206 : 200;
  if (req.method === "HEAD") return new Response(null, { status, headers });
  const stored = await service.files.get(id, range);
  if (!stored) return text(404, "not found", cors);
  const counts = service.deps.counts;
  counts.downloads++;
  counts.downloadBytes += length;
  return new Response(stored.body, { status, headers });
}

/**
 * CORS headers for a request from `origin`: any origin when the list is empty, else one of the
 * list; null when the origin may not use this server.
 */
function corsHeaders(origin: string | null, allowed: string[]): Record<string, string> | null {
  if (allowed.length === 0) return { "access-control-allow-origin": "*" };
  if (origin === null) return {};
  if (!allowed.includes(origin)) return null;
  return { "access-control-allow-origin": origin, "vary": "origin" };
}

/** Whether If-None-Match names `etag` (or is *). */
function ifNoneMatch(header: string | null, etag: string): boolean {
  if (header === null) return false;
  return header.trim() === "*" ||
    header.split(",").some((t) => t.trim().replace(/^W\//, "") === etag);
}

function empty(): ReadableStream<Uint8Array> {
  return new ReadableStream({ start: (c) => c.close() });
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
