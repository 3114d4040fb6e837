// How a frame's payload becomes a value a handler may trust. Every frame type names a codec
// (frame_type.ts, all of them in frame_registry.ts); the node decodes each frame with it before any handler runs, and anything
// that does not decode closes the link it came on (node.ts). JSON payloads are checked with zod
// schemas (types, ranges, lengths); JIDs come out prepared; stanzas travel as XML text and are
// checked for their shape here, parsed only where a handler needs the tree.
import { z } from "zod";
import { type Jid, parseJid } from "../jid/jid.ts";

/** A frame that is not what its type says, or a claim its sender may not make. */
export class FrameError extends Error {
  override name = "FrameError";
}

export interface Codec<T> {
  /** The payload's value; throws FrameError when it is not one. */
  decode(text: string): T;
}

/** Longest JID (RFC 7622: three parts of at most 1023 bytes, and two separators). */
const MAX_JID = 3071;

/** A JID as text, prepared: the Jid. */
export const jid = z.string().max(MAX_JID).transform((s, ctx) => {
  const j = parseJid(s);
  if (j) return j;
  ctx.issues.push({ code: "custom", message: "not a valid JID", input: s });
  return z.NEVER;
});

/** A full JID (with a resource). */
export const fullJid = jid.refine((j) => !j.isBare, "not a full JID");

/** A domain name, prepared. */
export const domain = jid.refine((j) => j.isDomain && j.isBare, "not a domain").transform((j) =>
  j.domain
);

/** A count or identifier that fits a double exactly. */
export const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** A short name (room, instance id, hash, node). */
export const name = z.string().min(1).max(1023);

const STANZA_START = /^<(?:message|presence|iq)[\s/>]/;

/** Whether text has a stanza's shape: an element named message, presence or iq. */
function isStanzaText(xml: string): boolean {
  return STANZA_START.test(xml) && xml.endsWith(">");
}

/** A stanza's XML as sent. */
export const stanzaXml = z.string().refine(isStanzaText, "not a stanza");

const decoder = new TextDecoder();

/**
 * The payload's text. Bytes that are not UTF-8 become U+FFFD, a character XML and JSON allow:
 * checking them would cost every frame more than they can harm (the schemas see the result).
 */
export function utf8(payload: Uint8Array): string {
  return decoder.decode(payload);
}

function check<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const at = issue.path.length ? ` at ${issue.path.join(".")}` : "";
  throw new FrameError(`${what}${at}: ${issue.message}`);
}

function parse(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new FrameError(`${what} is not JSON`);
  }
}

/** A JSON payload. */
export function json<T extends z.ZodType>(schema: T): Codec<z.output<T>> {
  return { decode: (text) => check(schema, parse(text, "the payload"), "the payload") };
}

/**
 * A JSON header on one line, then a stanza's XML; `read` checks the header (a function of its
 * own where a schema would cost a stanza frame more than its delivery).
 */
export function headed<T>(read: (header: unknown) => T): Codec<{ header: T; xml: string }> {
  return {
    decode(text) {
      const nl = text.indexOf("\n");
      if (nl < 0) throw new FrameError("no header line");
      const header = read(parse(text.slice(0, nl), "the header"));
      return { header, xml: checkStanza(text.slice(nl + 1)) };
    },
  };
}

/** A decimal count (acknowledgements, request numbers). */
export const decimal: Codec<number> = { decode: (text) => decimalText(text, "the count") };

/** `text` as a decimal count. */
export function decimalText(text: string, what: string): number {
  if (!/^\d{1,15}$/.test(text)) throw new FrameError(`${what}: not a decimal count`);
  return Number(text);
}

/** A JID, prepared, as text: what `jid` checks, at a fraction of its cost per value. */
export function jidString(v: unknown, what: string): string {
  const j = typeof v === "string" && v.length <= MAX_JID ? parseJid(v) : null;
  if (!j) throw new FrameError(`${what}: not a valid JID`);
  return j.full;
}

/** A whole number from `min` to `max`. */
export function intIn(v: unknown, min: number, max: number, what: string): number {
  if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) {
    throw new FrameError(`${what}: not a whole number from ${min} to ${max}`);
  }
  return v as number;
}

/** A JID as the whole payload. */
export const jidText: Codec<Jid> = { decode: (text) => check(jid, text, "the JID") };

/** The XML of a stanza, checked for its shape only (parsed where a handler needs the tree). */
export function checkStanza(xml: string): string {
  if (!isStanzaText(xml)) throw new FrameError("the stanza: not a stanza");
  return xml;
}
