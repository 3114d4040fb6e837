// One byte range of a download (RFC 9110 §14): `Range: bytes=a-b`, `bytes=a-` or `bytes=-n`.
// Anything else — several ranges, another unit, a malformed header — is ignored and the whole file
// is served, as the RFC lets a server do; a range that starts past the end is unsatisfiable (416).
import type { ByteRange } from "./file_store.ts";

/** Digits of a position read as a number (Number.MAX_SAFE_INTEGER has 16). */
const MAX_DIGITS = 15;

/** The range of a file of `size` bytes that `header` asks for, or why none. */
export function parseRange(
  header: string | null,
  size: number,
): ByteRange | "whole" | "unsatisfiable" {
  if (header === null) return "whole";
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return "whole";
  // Past MAX_DIGITS a position is past the end of any file.
  const num = (digits: string) => digits.length > MAX_DIGITS ? Infinity : Number(digits);
  if (m[1] === "") {
    // The last n bytes.
    const n = num(m[2]);
    if (n === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = num(m[1]);
  const last = m[2] === "" ? Infinity : num(m[2]);
  if (last < start) return "whole"; // invalid: ignored
  if (start >= size) return "unsatisfiable";
  return { start, end: Math.min(last, size - 1) };
}
