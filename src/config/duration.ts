// Durations in the configuration ("500ms", "1s", "2m", "12h", "365d"): the schema checks their
// form, this reads them as milliseconds.

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** "500ms", "1s", "2m", "12h", "365d" in milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  return m ? Number(m[1]) * UNITS[m[2]] : undefined;
}
