// /metrics (Prometheus text exposition 0.0.4) and /health on the http listeners: one Monitoring
// per server, shared by its listeners, owning the event-loop sampler and the cached store check.
// /metrics answers only clients in `metrics.allow` (the client's address as the listener sees it:
// behind a trusted proxy, the forwarded one); /health answers anyone (docs/monitoring.md).
import { AddressList } from "../core/address_list.ts";
import { type HttpHandler, text } from "./routes.ts";
import { collectMetrics, type Monitored } from "../metrics/metrics.ts";
import { CONTENT_TYPE } from "../metrics/exposition.ts";
import { healthReport, StoreCheck } from "../metrics/health.ts";
import { LoopDelay } from "../metrics/loop_delay.ts";

export const METRICS_PATH = "/metrics";
export const HEALTH_PATH = "/health";

export class Monitoring {
  readonly loopDelay = new LoopDelay();
  readonly allowed: AddressList;
  readonly store: StoreCheck;

  constructor(readonly server: Monitored, storeProbe: () => Promise<unknown>) {
    this.allowed = new AddressList(server.config.metrics.allow);
    this.store = new StoreCheck(storeProbe);
  }

  start(): void {
    this.loopDelay.start();
  }

  stop(): void {
    this.loopDelay.stop();
  }

  readonly metrics: HttpHandler = async (req, client) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return text(405, "method not allowed", { allow: "GET, HEAD" });
    }
    if (!this.allowed.has(client.ip)) return text(403, "forbidden");
    return new Response(await collectMetrics(this.server, this.loopDelay), {
      headers: { "content-type": CONTENT_TYPE, "cache-control": "no-store" },
    });
  };

  readonly health: HttpHandler = async (req) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return text(405, "method not allowed", { allow: "GET, HEAD" });
    }
    const report = await healthReport(this.server, this.store);
    return new Response(JSON.stringify(report.body) + "\n", {
      status: report.status,
      headers: { "content-type": "application/json", "cache-control": "no-store" },
    });
  };
}
