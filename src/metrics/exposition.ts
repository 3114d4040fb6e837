// Prometheus's text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/): each metric family as
// `# HELP`, `# TYPE` and its samples, one a line. Written here rather than with npm:prom-client:
// its labelled counters look up their label set on every inc(), and its registry is built for
// values pushed into it, where Parley's gauges are read from the live objects at scrape time.

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type Labels = Record<string, string>;
/** A sample: its labels (none: null) and value. */
export type Sample = readonly [Labels | null, number];

export class Exposition {
  #lines: string[] = [];

  /** Adds a family; a family with no samples is still described (HELP and TYPE). */
  add(
    name: string,
    type: "counter" | "gauge",
    help: string,
    samples: readonly Sample[] | number,
  ): this {
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    const list = typeof samples === "number" ? [[null, samples] as const] : samples;
    for (const [labels, value] of list) {
      this.#lines.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
    }
    return this;
  }

  toString(): string {
    return this.#lines.join("\n") + "\n";
  }
}

function formatLabels(labels: Labels | null): string {
  if (!labels) return "";
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** A label value: backslash, double quote and newline escaped. */
function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** A HELP text: backslash and newline escaped. */
function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}
