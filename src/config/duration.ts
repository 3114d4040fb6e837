// Durations in the configuration ("500ms", "1s", "2m"): the schema checks their form, this reads
// them as milliseconds.

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** "500ms", "1s", "2m" in milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)(ms|s|m)$/.exec(text);
  return m ? Number(m[1]) * UNITS[m[2]] : undefined;
}
