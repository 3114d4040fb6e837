// XML escaping for the serializer. Fast path: most strings need no escaping at all.
// Characters a parser would normalize are written as references so that they survive a round
// trip: CR in text (end-of-line handling, XML §2.11) and tab, LF and CR in attribute values
// (attribute-value normalization, XML §3.3.3).

const TEXT_SPECIAL = /[&<>\r]/;
const TEXT_SPECIALS = /[&<>\r]/g;
const ATTR_SPECIAL = /[&<>"'\t\n\r]/;
const ATTR_SPECIALS = /[&<>"'\t\n\r]/g;
const REFERENCES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&apos;",
  "\t": "&#9;",
  "\n": "&#10;",
  "\r": "&#13;",
};
const reference = (c: string) => REFERENCES[c];

export function escapeText(s: string): string {
  return TEXT_SPECIAL.test(s) ? s.replace(TEXT_SPECIALS, reference) : s;
}

export function escapeAttr(s: string): string {
  return ATTR_SPECIAL.test(s) ? s.replace(ATTR_SPECIALS, reference) : s;
}
