// The Grafana dashboard in docs/grafana/ parses as JSON, takes its Prometheus data source from a
// variable, lays its panels out without overlap, and graphs only metrics Parley exposes (those
// docs/monitoring.md lists, which tests/unit/metrics_test.ts holds to what /metrics says).
import assert from "node:assert/strict";
import { documentedMetrics } from "../helpers/metrics.ts";

const FILE = new URL("../../docs/grafana/parley-cluster.json", import.meta.url);

interface Panel {
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: { expr: string; datasource?: { uid: string } }[];
}

/** Metric names in a PromQL expression: identifiers of Parley's, the process's or the heap's. */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\b((?:parley|process|deno)_[a-z0-9_]+)\b/g)].map((m) => m[1]);
}

Deno.test("the Grafana dashboard parses and graphs only metrics Parley exposes", () => {
  const dash = JSON.parse(Deno.readTextFileSync(FILE));
  assert.equal(typeof dash.title, "string");
  assert.equal(typeof dash.uid, "string");
  const vars = dash.templating.list as { name: string; type: string; query: unknown }[];
  const ds = vars.find((v) => v.type === "datasource");
  assert.ok(ds, "a data source variable");
  assert.equal(ds.query, "prometheus");

  const panels = dash.panels as Panel[];
  const graphs = panels.filter((p) => p.type !== "row");
  assert.ok(graphs.length >= 10);
  const exposed = new Set(documentedMetrics());
  const graphed = new Set<string>();
  const cells = new Set<string>();
  for (const p of panels) {
    for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
      for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
        assert.ok(!cells.has(`${x},${y}`), `${p.title} overlaps another panel`);
        cells.add(`${x},${y}`);
      }
    }
    assert.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title} fits the width`);
    if (p.type === "row") continue;
    assert.equal(p.datasource?.uid, `\${${ds.name}}`, `${p.title}: the data source variable`);
    assert.ok(p.targets?.length, `${p.title} has queries`);
    for (const t of p.targets!) {
      assert.equal(t.datasource?.uid, `\${${ds.name}}`, `${p.title}: the data source variable`);
      const names = metricsIn(t.expr);
      assert.ok(names.length > 0, `${p.title}: ${t.expr}`);
      for (const name of names) {
        assert.ok(exposed.has(name), `${p.title}: ${name} is not a metric Parley exposes`);
        graphed.add(name);
      }
    }
  }
  // What the dashboard is for: each of these is on it.
  for (
    const name of [
      "parley_sessions",
      "parley_stanzas_total",
      "parley_auth_total",
      "parley_muc_rooms",
      "parley_muc_occupants",
      "parley_components_instances",
      "parley_cluster_peer_up",
      "parley_cluster_peer_rtt_seconds",
      "parley_cluster_queued_bytes",
      "parley_store_errors_total",
      "process_resident_memory_bytes",
      "parley_event_loop_delay_seconds",
    ]
  ) {
    assert.ok(graphed.has(name), `${name} is graphed`);
  }
});
