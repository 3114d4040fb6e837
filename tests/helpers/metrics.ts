// Reading /metrics and /health in tests: the exposition parsed into its samples (checking the
// format as it goes), and values looked up by the sample's name and labels as written.
import assert from "node:assert/strict";

export interface Scrape {
  status: number;
  contentType: string | null;
  text: string;
  /** Values by sample, `name{label="value",…}` as exposed (`name` alone without labels). */
  samples: Map<string, number>;
  /** Family names with their TYPE. */
  types: Map<string, string>;
}

/** GETs /metrics of `base` (e.g. http://127.0.0.1:5280). */
export async function scrape(base: string, headers: HeadersInit = {}): Promise<Scrape> {
  const res = await fetch(`${base}/metrics`, { headers });
  const text = await res.text();
  const out: Scrape = {
    status: res.status,
    contentType: res.headers.get("content-type"),
    text,
    samples: new Map(),
    types: new Map(),
  };
  if (res.status === 200) parseExposition(text, out);
  return out;
}

/**
 * Parses Prometheus text exposition 0.0.4, checking that each sample belongs to a family whose
 * HELP and TYPE came first, and that no sample appears twice.
 */
export function parseExposition(text: string, into: Pick<Scrape, "samples" | "types">): void {
  assert.ok(text.endsWith("\n"), "the exposition ends with a newline");
  const helped = new Set<string>();
  for (const line of text.slice(0, -1).split("\n")) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === "HELP") helped.add(meta[2]);
      else {
        assert.ok(helped.has(meta[2]), `HELP before TYPE of ${meta[2]}`);
        assert.ok(["counter", "gauge"].includes(meta[3]), line);
        into.types.set(meta[2], meta[3]);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$/
      .exec(line);
    assert.ok(m, `a sample line: ${line}`);
    assert.ok(into.types.has(m[1]), `TYPE before the samples of ${m[1]}`);
    const key = m[1] + (m[2] ?? "");
    assert.ok(!into.samples.has(key), `${key} once`);
    into.samples.set(key, Number(m[3]));
  }
}

/** GETs /health of `base`: its status and JSON body. */
export async function health(
  base: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}/health`);
  return { status: res.status, body: await res.json() };
}

/** The metric names docs/monitoring.md lists in its table. */
export function documentedMetrics(): string[] {
  const doc = Deno.readTextFileSync(new URL("../../docs/monitoring.md", import.meta.url));
  return [...doc.matchAll(/^\| `([a-z0-9_]+)` \| (?:counter|gauge) \|/gm)].map((m) => m[1]);
}
