// What /metrics says (docs/monitoring.md lists every metric): the counters kept as things happen
// (counters.ts), and gauges read now from the live objects (sessions by transport as the session
// registry counts them, rooms, component instances, proxy streams, cluster peers, the process). A
// scrape walks this node's rooms, component instances and proxy streams, never its sessions.
import type { Config } from "../config/schema.ts";
import type { SessionRegistry } from "../router/sessions.ts";
import type { Resumption } from "../c2s/resumption.ts";
import type { ArchiveWriter } from "../mam/archive_writer.ts";
import type { Retention } from "../core/retention.ts";
import type { ClusterNode } from "../cluster/node.ts";
import type { MucService } from "../muc/service.ts";
import type { ComponentPool } from "../component/pool.ts";
import type { Proxy65Service } from "../proxy65/service.ts";
import type { TransportKind } from "../stream/transport.ts";
import { VERSION } from "../version.ts";
import type { Counters, StanzaCounts } from "./counters.ts";
import { Exposition, type Sample } from "./exposition.ts";
import { type LoopDelay, WINDOW_S } from "./loop_delay.ts";
import { processFigures } from "./process.ts";

/** starting: until every listener is up; stopping: once Server.stop() has begun. */
export type ServerState = "starting" | "running" | "stopping";

/** What /metrics and /health read of the server (the Server is one). */
export interface Monitored {
  readonly config: Config;
  readonly counters: Counters;
  readonly sessions: SessionRegistry;
  readonly cluster: ClusterNode | undefined;
  readonly resumption: Resumption | undefined;
  readonly archive: ArchiveWriter;
  readonly retention: Retention;
  readonly mucs: Map<string, MucService>;
  readonly components: Map<string, ComponentPool>;
  readonly proxies: Map<string, Proxy65Service>;
  readonly state: ServerState;
}

const TRANSPORTS: readonly TransportKind[] = ["tcp", "websocket", "bosh"];

export async function collectMetrics(server: Monitored, loop: LoopDelay): Promise<string> {
  const { counters } = server;
  const out = new Exposition();
  out.add("parley_build_info", "gauge", "Always 1; the Parley version as a label.", [
    [{ version: VERSION }, 1],
  ]);

  const byTransport = server.sessions.byTransport;
  out.add(
    "parley_sessions",
    "gauge",
    "Client sessions (resources bound) on this node, by transport.",
    TRANSPORTS.map((transport) => [{ transport }, byTransport[transport]]),
  );

  const resumable = server.resumption?.counts ?? { resumable: 0, detached: 0 };
  out.add(
    "parley_sessions_resumable",
    "gauge",
    "Resumable client sessions (XEP-0198) held on this node: with a connection, or detached.",
    [
      [{ state: "attached" }, resumable.resumable - resumable.detached],
      [{ state: "detached" }, resumable.detached],
    ],
  );

  const members = server.cluster?.members() ?? [];
  const peers = members.filter((m) => m.state !== "self");
  out.add(
    "parley_cluster_sessions",
    "gauge",
    "Client sessions in the whole cluster, as this node's session directory knows them.",
    server.cluster ? members.reduce((n, m) => n + m.sessions, 0) : server.sessions.size,
  );

  const stanzas = (direction: string, c: StanzaCounts): Sample[] => [
    [{ direction, kind: "message" }, c.message],
    [{ direction, kind: "presence" }, c.presence],
    [{ direction, kind: "iq" }, c.iq],
  ];
  out.add(
    "parley_stanzas_total",
    "counter",
    "Stanzas: in, from this node's clients and components; out, written to its client sessions.",
    [...stanzas("in", counters.stanzasIn), ...stanzas("out", counters.stanzasOut)],
  );

  const csi = counters.csi;
  out.add(
    "parley_csi_stanzas_total",
    "counter",
    "Stanzas for inactive client sessions (XEP-0352): held, superseded while held by a newer " +
      "presence of their sender, dropped (chat states alone).",
    [
      [{ outcome: "held" }, csi.held],
      [{ outcome: "superseded" }, csi.superseded],
      [{ outcome: "dropped" }, csi.dropped],
    ],
  );
  out.add(
    "parley_csi_flushes_total",
    "counter",
    "Times what an inactive session held was sent (active again, an urgent stanza, or full).",
    csi.flushes,
  );

  const up = counters.uploads;
  out.add(
    "parley_upload_slots_total",
    "counter",
    "Upload slot requests (XEP-0363) answered by this node: given, or refused (a limit, a bad " +
      "request, not allowed).",
    [[{ outcome: "given" }, up.slots], [{ outcome: "refused" }, up.refused]],
  );
  out.add(
    "parley_uploads_total",
    "counter",
    "Uploads (HTTP PUT) to this node: stored, or refused (slot, size, type, used slot, quota).",
    [[{ outcome: "stored" }, up.uploads], [{ outcome: "refused" }, up.uploadsRefused]],
  );
  out.add(
    "parley_upload_downloads_total",
    "counter",
    "Downloads (HTTP GET of a whole file or a range) this node began answering.",
    up.downloads,
  );
  out.add(
    "parley_upload_bytes_total",
    "counter",
    "Bytes of files stored (up) and of downloads begun (down) on this node.",
    [[{ direction: "up" }, up.uploadBytes], [{ direction: "down" }, up.downloadBytes]],
  );
  out.add(
    "parley_upload_rate_limited_total",
    "counter",
    "Upload and download requests refused with 429 for their address's rate.",
    up.rateLimited,
  );
  out.add(
    "parley_upload_files_removed_total",
    "counter",
    "Uploaded files this node removed: past retention, or with their account.",
    up.expired,
  );

  const auth: Sample[] = [];
  for (const [mechanism, n] of counters.auth.entries()) {
    auth.push([{ mechanism, result: "success" }, n.success]);
    auth.push([{ mechanism, result: "failure" }, n.failure]);
  }
  out.add(
    "parley_auth_total",
    "counter",
    "SASL outcomes answered to clients (each <success/> and <failure/>), by mechanism.",
    auth,
  );

  let rooms = 0, occupants = 0;
  for (const muc of server.mucs.values()) {
    rooms += muc.rooms.size;
    for (const room of muc.rooms.values()) occupants += room.occupantCount;
  }
  out.add("parley_muc_rooms", "gauge", "Chat rooms this node runs.", rooms);
  out.add(
    "parley_muc_occupants",
    "gauge",
    "Occupants of the chat rooms this node runs.",
    occupants,
  );

  const instances: Sample[] = [];
  for (const pool of server.components.values()) {
    let n = 0;
    for (const i of pool.instances.values()) if (i.node === pool.node) n++;
    instances.push([{ domain: pool.domain }, n]);
  }
  out.add(
    "parley_components_instances",
    "gauge",
    "Instances of each external component connected to this node.",
    instances,
  );

  let streams = 0;
  for (const proxy of server.proxies.values()) {
    for (const pair of proxy.relay.pairs.values()) if (pair.owner !== undefined) streams++;
  }
  out.add(
    "parley_s5b_streams",
    "gauge",
    "Active SOCKS5 bytestreams (XEP-0065) relayed by this node's proxies.",
    streams,
  );

  if (server.cluster) {
    out.add(
      "parley_cluster_peer_up",
      "gauge",
      "1 while the link to the configured peer is up, else 0.",
      peers.map((p) => [{ peer: p.node }, p.state === "up" ? 1 : 0]),
    );
    out.add(
      "parley_cluster_peer_rtt_seconds",
      "gauge",
      "Round-trip time of the heartbeat to each linked peer.",
      peers.filter((p) => p.rttMs !== null).map((p) => [{ peer: p.node }, p.rttMs! / 1000]),
    );
    out.add(
      "parley_cluster_queued_bytes",
      "gauge",
      "Bytes queued towards each peer, not yet taken by its link.",
      peers.map((p) => [{ peer: p.node }, p.queuedBytes]),
    );
  }

  const archive = server.archive;
  out.add(
    "parley_archive_entries_total",
    "counter",
    "Message archive entries (XEP-0313) written by this node, and dropped because the store " +
      "refused them (not for being busy or unreachable: those are retried).",
    [[{ outcome: "written" }, archive.written], [{ outcome: "dropped" }, archive.dropped]],
  );
  out.add(
    "parley_archive_backlog",
    "gauge",
    "Archive entries waiting to be written, or being written (they wait while the store is busy).",
    archive.backlog,
  );
  out.add(
    "parley_archive_expired_total",
    "counter",
    "Archived messages this node removed past the retention (mam.retention).",
    server.retention.removed,
  );

  out.add(
    "parley_store_errors_total",
    "counter",
    "Store operations that failed (database busy, unreachable or in error).",
    counters.storeErrors,
  );

  const proc = await processFigures();
  out.add("process_resident_memory_bytes", "gauge", "Resident set size.", proc.residentBytes);
  out.add(
    "process_cpu_seconds_total",
    "counter",
    "User and system CPU time spent.",
    proc.cpuSeconds,
  );
  out.add(
    "process_start_time_seconds",
    "gauge",
    "Start time of the process since the Unix epoch.",
    Math.round(performance.timeOrigin) / 1000,
  );
  if (proc.openFds !== undefined) {
    out.add("process_open_fds", "gauge", "Open file descriptors.", proc.openFds);
  }
  out.add("deno_heap_used_bytes", "gauge", "V8 heap in use.", proc.heapUsedBytes);
  out.add("deno_heap_total_bytes", "gauge", "V8 heap allocated.", proc.heapTotalBytes);
  out.add(
    "parley_event_loop_delay_seconds",
    "gauge",
    `Longest lateness of a 20 ms timer over the last ${WINDOW_S} s: how long the event loop ` +
      "was busy with nothing else able to run.",
    loop.longest(),
  );
  return out.toString();
}
