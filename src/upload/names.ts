// What a slot request names, checked before a slot is given (a filename that is one URL path
// segment, a well-formed media type), matched (allowed types, the PUT's Content-Type against the
// slot's), and said back to browsers (Content-Disposition).

/** RFC 9110 token characters. */
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
/** type/subtype, then parameters (RFC 9110 §8.3.1). */
const MEDIA_TYPE = new RegExp(
  `^${TOKEN}/${TOKEN}(?:[ \\t]*;[ \\t]*${TOKEN}=(?:${TOKEN}|"(?:[^"\\\\\\x00-\\x1f\\x7f]|\\\\[^\\x00-\\x1f\\x7f])*"))*$`,
);
/** An allowed_types entry: type/subtype or type/*. */
export const TYPE_PATTERN = new RegExp(`^(?!\\*/)${TOKEN}/(?:${TOKEN}|\\*)$`);
const MAX_NAME_BYTES = 255;
const MAX_TYPE_LENGTH = 255;
/** Served inline (shown by the browser); anything else is offered as a download. */
const INLINE = /^(?:image\/(?!svg)|audio\/|video\/|text\/plain(?:;|$))/i;

/** Why `name` cannot be a file's name, or undefined when it can. */
export function filenameProblem(name: string | undefined): string | undefined {
  if (!name) return "a filename is required";
  // One segment of the URL's path, as it is on disk on every system clients run on.
  // deno-lint-ignore no-control-regex -- control characters are what is refused
  if (/[/\x00-\x1f\x7f]/.test(name)) return "the filename may not contain / or control characters";
  if (/^\.+$/.test(name)) return "the filename may not be only dots";
  if (new TextEncoder().encode(name).length > MAX_NAME_BYTES) {
    return `the filename is longer than ${MAX_NAME_BYTES} bytes`;
  }
  return undefined;
}

/** Why `type` is not a media type, or undefined when it is one. */
export function contentTypeProblem(type: string): string | undefined {
  if (type.length > MAX_TYPE_LENGTH || !MEDIA_TYPE.test(type)) {
    return "content-type must be a media type (type/subtype)";
  }
  return undefined;
}

/** type/subtype, lowercase, without parameters. */
export function essence(type: string): string {
  return type.split(";")[0].trim().toLowerCase();
}

/** Whether `type` is one of `allowed` (type/subtype or type/*); any is when the list is empty. */
export function typeAllowed(type: string, allowed: string[]): boolean {
  if (allowed.length === 0) return true;
  const e = essence(type);
  const wildcard = e.slice(0, e.indexOf("/") + 1) + "*";
  return allowed.some((a) => {
    const entry = a.toLowerCase();
    return entry === e || entry === wildcard;
  });
}

/**
 * Whether two media types are the same type (case and parameters aside: a client or a proxy
 * adding "; charset=…" to the slot's type is not refused).
 */
export function sameType(a: string, b: string): boolean {
  const essence = (t: string) => t.split(";")[0].trim().toLowerCase();
  return essence(a) === essence(b);
}

/**
 * Content-Disposition of a download (RFC 6266): inline for media a browser shows without running
 * anything (images but SVG, audio, video, plain text), else attachment; the name as ASCII and as
 * UTF-8 (RFC 8187).
 */
export function contentDisposition(type: string, filename: string): string {
  const kind = INLINE.test(type.trim()) ? "inline" : "attachment";
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, "_");
  const utf8 = encodeURIComponent(filename).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${utf8}`;
}
