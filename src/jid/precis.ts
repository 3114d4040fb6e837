// A documented subset of PRECIS (RFC 8264/8265) as RFC 7622 applies it to JIDs. No maintained
// PRECIS implementation exists on npm, so this covers the rules that matter for identity:
// - localpart: UsernameCaseMapped — width mapping (NFKC of fullwidth/halfwidth forms), lowercase,
//   NFC; letters, marks, decimal digits and printable ASCII only, minus the RFC 7622 §3.3.1
//   exclusions " & ' / : < > @.
// - resourcepart: OpaqueString — non-ASCII spaces mapped to U+0020, NFC; no control or unassigned
//   code points.
// - nicknames (MUC): RFC 8266 mapping, NFKC, compared lowercased.
// - domainpart: lowercase, NFC, trailing dot removed, IDNA validity checked with domainToASCII.
// Not covered: the full IdentifierClass derived-property tables (we approximate with Unicode
// general categories) and bidi rule checks.
import { domainToASCII } from "node:url";

const MAX_PART = 1023;
const utf8 = new TextEncoder();

function tooLong(s: string): boolean {
  return s.length === 0 || (s.length > MAX_PART / 4 && utf8.encode(s).length > MAX_PART);
}

const WIDTH_FORMS = /[\uFF01-\uFFEE]/g;
const LOCAL_ALLOWED = /^[\x21-\x7E\p{L}\p{M}\p{Nd}]+$/u;
const LOCAL_EXCLUDED = /["&'/:<>@]/;

export function prepLocal(s: string): string | null {
  const out = s.replace(WIDTH_FORMS, (c) => c.normalize("NFKC")).toLowerCase().normalize("NFC");
  if (tooLong(out) || !LOCAL_ALLOWED.test(out) || LOCAL_EXCLUDED.test(out)) return null;
  return out;
}

const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200A\u202F\u205F\u3000]/;
const NON_ASCII_SPACES = new RegExp(NON_ASCII_SPACE.source, "g");
const RESOURCE_DISALLOWED = /[\p{Cc}\p{Cn}\p{Cs}]/u;

export function prepResource(s: string): string | null {
  const out = s.replace(NON_ASCII_SPACES, " ").normalize("NFC");
  if (tooLong(out) || RESOURCE_DISALLOWED.test(out)) return null;
  return out;
}

const ASCII_DOMAIN = /^[a-z0-9._-]+$/;
// deno-lint-ignore no-control-regex -- ASCII controls are among the characters refused here
const BAD_ASCII = /[\x00-\x2c\x2f\x3a-\x5e\x60\x7b-\x7f]/;
const IP6_LITERAL = /^\[[0-9a-f:.]+\]$/;

export function prepDomain(s: string): string | null {
  let out = s.toLowerCase().normalize("NFC");
  if (out.endsWith(".")) out = out.slice(0, -1);
  if (tooLong(out)) return null;
  if (IP6_LITERAL.test(out)) return out;
  if (ASCII_DOMAIN.test(out)) {
    return out.split(".").every((l) => l.length > 0 && l.length < 64) ? out : null;
  }
  if (BAD_ASCII.test(out) || NON_ASCII_SPACE.test(out)) return null;
  return domainToASCII(out) === "" ? null : out;
}

/**
 * Nickname profile (RFC 8266) for MUC room nicks: spaces mapped to U+0020, leading and trailing
 * spaces removed, inner runs collapsed, NFKC. Null when nothing is left or the nick is refused.
 */
export function prepNickname(s: string): string | null {
  const out = s.replace(NON_ASCII_SPACES, " ").replace(/ +/g, " ").trim().normalize("NFKC");
  if (tooLong(out) || RESOURCE_DISALLOWED.test(out)) return null;
  return out;
}

/** Nicknames compare case-insensitively (RFC 8266 §2.3). */
export function nicknameKey(nick: string): string {
  return nick.toLowerCase();
}
