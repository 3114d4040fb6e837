// What nodes say to each other about SOCKS5 bytestreams (frame types PROXY65_TYPES + 0 … 15):
// where each node takes links for relayed streams, requests between nodes and their answers,
// and the streams each node counts.
import { z } from "zod";
import { count, domain, jid, json, name } from "./codec.ts";
import { frameType } from "./frame_type.ts";
import { PROXY65_TYPES } from "./wire.ts";

const owner = jid.transform((j) => j.full);
/** A stream's hash as its client sent it (a SOCKS5 domain name: at most 255 bytes). */
const hash = z.string().min(1).max(255);

/** On link up, per proxy: JSON { domain, host, port, streamhost } (where to dial its streams). */
export const HELLO = frameType(
  PROXY65_TYPES,
  "proxy65 hello",
  json(z.object({
    domain,
    host: z.string().min(1).max(255),
    port: z.number().int().min(1).max(65535),
    streamhost: z.string().max(300),
  })),
  `{"domain":"proxy.localhost","host":"127.0.0.1","port":7778,"streamhost":"127.0.0.1:7777"}`,
);

const request = z.discriminatedUnion("op", [
  z.object({ op: z.literal("activate"), domain, hash, owner }),
  z.object({ op: z.literal("lookup"), domain, hash }),
  /** A ticket for the sender's link of the stream whose other half is held here. */
  z.object({ op: z.literal("expect"), domain, hash, owner }),
  /** Start the stream held here, or (with `peer`) the half held here with `peer`'s half. */
  z.object({ op: z.literal("start"), domain, hash, owner, peer: name.optional() }),
]);

export type Request = z.output<typeof request>;

/** JSON { id, op, domain, hash, owner?, peer? }, answered by RESPONSE { id, result }. */
export const REQUEST = frameType(
  PROXY65_TYPES + 1,
  "proxy65 request",
  json(z.intersection(z.object({ id: count }), request)),
  `{"id":1,"op":"activate","domain":"proxy.localhost",` +
    `"hash":"0123456789abcdef0123456789abcdef01234567","owner":"alice@localhost/r"}`,
);

const activation = z.enum(["ok", "no-pair", "already-active", "user-limit", "full"]);

/** What each request is answered with (nothing: the answering node has no such proxy). */
export const RESULTS = {
  activate: activation.optional(),
  start: activation.optional(),
  lookup: z.object({ count: z.number().int().min(0).max(2), active: z.boolean() }).optional(),
  expect: z.string().max(256).optional(),
};

export const RESPONSE = frameType(
  PROXY65_TYPES + 2,
  "proxy65 response",
  json(z.object({ id: count, result: z.unknown() })),
  `{"id":1,"result":"ok"}`,
);

/** A stream the sender counts started (JSON { key, domain, owner }) or ended ({ key }). */
export const STREAM = frameType(
  PROXY65_TYPES + 3,
  "proxy65 stream",
  json(
    z.object({ key: z.string().max(2048), domain: domain.optional(), owner: owner.optional() })
      .refine(
        (s) => s.owner === undefined || s.domain !== undefined && s.key.startsWith(s.domain + "\n"),
        "a started stream's key is its domain, a newline and its hash",
      ),
  ),
  `{"key":"proxy.localhost\\n0123456789abcdef0123456789abcdef01234567",` +
    `"domain":"proxy.localhost","owner":"alice@localhost/r"}`,
);

export const PROXY65_FRAMES = [HELLO, REQUEST, RESPONSE, STREAM];
