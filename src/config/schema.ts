// A small declarative schema: each key has a type, a default and limits, and the validator walks
// the YAML document's nodes so every error can name file:line:column and the key's path.

export type Spec =
  | {
    kind: "string";
    default?: string;
    enum?: readonly string[];
    pattern?: RegExp;
    optional?: true;
  }
  | { kind: "int"; default?: number; min: number; max: number; optional?: true }
  | { kind: "bool"; default?: boolean }
  | { kind: "object"; fields: Record<string, Spec>; optional?: true }
  | { kind: "list"; of: Spec; default?: unknown[]; minItems?: number };

const str = (d?: string, extra: { enum?: readonly string[] } = {}): Spec => ({
  kind: "string",
  default: d,
  ...extra,
});
const int = (d: number, min: number, max: number): Spec => ({ kind: "int", default: d, min, max });
const bool = (d: boolean): Spec => ({ kind: "bool", default: d });
const obj = (fields: Record<string, Spec>, optional?: true): Spec => ({
  kind: "object",
  fields,
  optional,
});

export const LISTENER_TYPES = ["c2s", "c2s_tls", "component", "http"] as const;
export const BALANCE_MODES = [
  "bare_source",
  "source",
  "bare_destination",
  "destination",
  "random",
] as const;

/** XEP-0441 archiving defaults: every message, none, or those with roster contacts. */
export const ARCHIVE_DEFAULTS = ["always", "never", "roster"] as const;

/** Storage backends: node-local (sqlite) or shared by a cluster (postgres). */
export const STORAGE_TYPES = ["sqlite", "postgres"] as const;

/** Who may create MUC rooms: users of this server's hosts, anyone, or the service admins. */
export const ROOM_CREATORS = ["local", "anyone", "admins"] as const;

/** Durations in the configuration: "500ms", "1s", "2m". */
export const DURATION = /^\d+(?:ms|s|m|h|d)$/;

export const CONFIG_SPEC: Spec = obj({
  data_dir: str("./data"),
  log: obj({ level: str("info", { enum: ["debug", "info", "warning", "error"] }) }),
  hosts: {
    kind: "list",
    minItems: 1,
    default: [{
      domain: "localhost",
      proxy65: { domain: "proxy.localhost" },
      muc: { domain: "conference.localhost" },
    }],
    of: obj({
      domain: str(undefined),
      registration: bool(false),
      certificate: obj({ cert: str(undefined), key: str(undefined) }, true),
      proxy65: obj({
        domain: str(undefined),
        bind: str("127.0.0.1"),
        port: int(7777, 0, 65535),
        host: { kind: "string", optional: true },
        announce_port: { kind: "int", min: 1, max: 65535, optional: true },
        allow: { kind: "list", of: { kind: "string" }, default: [] },
        max_streams_per_user: int(10, 1, 1_000_000),
        max_streams: int(1000, 1, 10_000_000),
        pending_per_ip: int(20, 1, 1_000_000),
        bandwidth: int(0, 0, 1 << 30),
        buffer: int(1 << 20, 16_384, 16 << 20),
        handshake_timeout: int(5, 1, 3600),
        pair_timeout: int(15, 1, 3600),
        idle_timeout: int(300, 1, 86_400),
        relay_port: int(0, 0, 65535),
      }, true),
      muc: obj({
        domain: str(undefined),
        name: str("Chatrooms"),
        create: str("local", { enum: ROOM_CREATORS }),
        admins: { kind: "list", of: { kind: "string" }, default: [] },
        max_occupants: int(200, 1, 1_000_000),
        history: int(20, 0, 1000),
        max_history: int(100, 0, 10_000),
        message_rate: int(10, 0, 1_000_000),
        message_burst: int(20, 1, 1_000_000),
        room_delivery_rate: int(200_000, 0, 100_000_000),
        max_rooms_per_user: int(100, 1, 1_000_000),
        max_affiliations: int(10_000, 1, 1_000_000),
        hibernate_after: int(0, 0, 31_536_000),
        host_rooms: bool(true),
      }, true),
      upload: obj({
        domain: str(undefined),
        slot_timeout: { kind: "string", default: "300s", pattern: DURATION },
        max_file_size: int(100 * 1024 * 1024, 1, 2 ** 40),
        quota_per_user: int(1024 * 1024 * 1024, 1, 2 ** 50),
        slots_per_minute: int(10, 1, 1_000_000),
        requests_per_minute: int(600, 1, 1_000_000),
        retention: { kind: "string", default: "30d", pattern: DURATION },
        allowed_types: { kind: "list", of: { kind: "string" }, default: [] },
      }, true),
      components: {
        kind: "list",
        default: [],
        of: obj({
          domain: str(undefined),
          secret: str(undefined),
          balance: str("bare_source", { enum: BALANCE_MODES }),
          reconnect_grace_ms: int(0, 0, 3_600_000),
        }),
      },
    }),
  },
  listeners: {
    kind: "list",
    minItems: 1,
    default: [
      { type: "c2s", bind: "127.0.0.1", port: 5222 },
      { type: "c2s_tls", bind: "127.0.0.1", port: 5223 },
      { type: "http", bind: "127.0.0.1", port: 5280 },
    ],
    of: obj({
      type: str(undefined, { enum: LISTENER_TYPES }),
      bind: str("127.0.0.1"),
      port: { kind: "int", min: 0, max: 65535 },
      starttls: str("required", { enum: ["required", "optional", "disabled"] }),
      plain_without_tls: bool(false),
      tls: bool(false),
      trusted_proxies: { kind: "list", of: { kind: "string" }, default: [] },
      forwarded_header: str("x-forwarded-for", { enum: ["x-forwarded-for", "forwarded"] }),
    }),
  },
  http: obj({
    allowed_origins: { kind: "list", of: { kind: "string" }, default: [] },
    public_url: { kind: "string", optional: true },
  }),
  bosh: obj({
    inactivity: int(60, 5, 3600),
    max_wait: int(60, 1, 3600),
    max_hold: int(1, 1, 10),
    max_requests_per_second: int(50, 1, 100_000),
  }),
  stream_management: obj({
    resume_timeout: { kind: "string", default: "300s", pattern: DURATION },
    max_resume_timeout: { kind: "string", default: "3600s", pattern: DURATION },
    max_unacked: int(5000, 1, 1_000_000),
  }),
  mam: obj({
    enabled: bool(true),
    default: str("always", { enum: ARCHIVE_DEFAULTS }),
    rooms: bool(true),
    retention: { kind: "string", default: "365d", pattern: DURATION },
    max_page: int(250, 1, 10_000),
  }),
  push: obj({
    enabled: bool(true),
    min_interval: { kind: "string", default: "10s", pattern: DURATION },
    max_registrations: int(10, 1, 1000),
  }),
  csi: obj({
    enabled: bool(true),
    max_held: int(1000, 1, 1_000_000),
  }),
  pep: obj({
    max_nodes: int(100, 1, 100_000),
    max_items: int(1000, 1, 100_000),
    max_item_size: int(65_536, 256, 16 * 1024 * 1024),
  }),
  metrics: obj({
    allow: { kind: "list", of: { kind: "string" }, default: ["127.0.0.0/8", "::1/128"] },
  }),
  storage: obj({
    type: str("sqlite", { enum: STORAGE_TYPES }),
    path: { kind: "string", optional: true },
    url: { kind: "string", optional: true },
    pool: int(10, 1, 1000),
  }),
  auth: obj({
    // At most 1,000,000: above OWASP's 600,000 for PBKDF2-HMAC-SHA-256, while one PLAIN login or
    // password change stays under a quarter second of a core here and a phone's SCRAM login (the
    // client derives the same key) within seconds; 10 million made each login cost seconds.
    scram_iterations: int(4096, 1, 1_000_000),
    failures_per_address: int(10, 0, 1_000_000),
    failures_per_account: int(30, 0, 1_000_000),
    failure_period: int(60, 1, 86_400),
  }),
  limits: obj({
    max_stanza_size: int(262_144, 1024, 64 * 1024 * 1024),
    max_stanza_size_before_auth: int(16_384, 4096, 64 * 1024 * 1024),
    max_depth: int(64, 4, 1024),
    connections_per_ip: int(100, 1, 1_000_000),
    rate_bytes_per_second: int(262_144, 1024, 1 << 30),
    rate_burst_bytes: int(1_048_576, 1024, 1 << 30),
    component_rate_bytes_per_second: int(4_194_304, 65_536, 1 << 30),
    component_rate_burst_bytes: int(65_536, 4096, 1 << 30),
    max_offline_messages: int(1000, 0, 1_000_000),
    max_outbound_buffer: int(4_194_304, 65_536, 1 << 30),
    max_directed_presences: int(1000, 1, 1_000_000),
    max_private_keys: int(100, 1, 1_000_000),
    // In-band registration, as ejabberd's registration_timeout: accounts per address per period.
    registrations_per_address: int(1, 0, 1_000_000),
    registration_period: int(600, 1, 86_400),
  }),
  timeouts: obj({
    handshake: int(60, 1, 3600),
    tls_handshake: int(10, 1, 600),
    ping_interval: int(120, 0, 86_400),
    ping_timeout: int(30, 1, 3600),
    auth_failure_delay_ms: int(250, 0, 60_000),
  }),
  // Absent: a single node. Checked further by checkCluster (src/cluster/config.ts).
  cluster: obj({
    node: { kind: "string", optional: true },
    listen: { kind: "string", optional: true },
    peers: {
      kind: "list",
      minItems: 1,
      of: obj({ node: str(undefined), address: str(undefined) }),
    },
    tls: obj({ ca: str(undefined), cert: str(undefined), key: str(undefined) }),
    heartbeat: { kind: "string", default: "1s", pattern: DURATION },
    dead_after: { kind: "string", default: "5s", pattern: DURATION },
    max_records_per_peer: int(100_000, 1, 10_000_000),
    invalid_input_backoff: { kind: "string", default: "1s", pattern: DURATION },
  }, true),
});

export interface ComponentConfig {
  domain: string;
  secret: string;
  balance: (typeof BALANCE_MODES)[number];
  /** An instance reconnecting to its node within this time takes back exactly its keys. */
  reconnect_grace_ms: number;
}

export interface Proxy65Config {
  domain: string;
  bind: string;
  port: number;
  /** Announced address; defaults to `bind` (which must then not be a wildcard). */
  host?: string;
  announce_port?: number;
  /** Who may use the proxy: domains or bare JIDs; empty = users of this server's hosts. */
  allow: string[];
  max_streams_per_user: number;
  /** Active streams in all; twice as many connections may wait for a peer or activation. */
  max_streams: number;
  /** Connections from one address not yet in an active stream; more are closed on accept. */
  pending_per_ip: number;
  /** Bytes per second per stream and direction; 0 = unlimited. */
  bandwidth: number;
  /** Largest buffer per stream and direction, in bytes (two of them: 4 × this per stream). */
  buffer: number;
  /** Seconds from accept until the SOCKS5 CONNECT is complete. */
  handshake_timeout: number;
  /** Seconds from a complete CONNECT until activation. */
  pair_timeout: number;
  idle_timeout: number;
  /** In a cluster: the port where other nodes connect to relay streams (0 = any, told to them). */
  relay_port: number;
}

export interface MucConfig {
  domain: string;
  /** Name of the service in disco. */
  name: string;
  create: (typeof ROOM_CREATORS)[number];
  /** Bare JIDs with owner rights in every room. */
  admins: string[];
  /** Cap on a room's occupants, and the default for new rooms. */
  max_occupants: number;
  /** Messages a new room keeps for joiners, and the most a room may be configured to keep. */
  history: number;
  max_history: number;
  /** Messages per second one occupant may send into a room (0 = unlimited), and the burst. */
  message_rate: number;
  message_burst: number;
  /** Stanzas per second one room may send out, all senders together (0 = unlimited). */
  room_delivery_rate: number;
  /** Existing rooms one account may own (service admins excepted): creation beyond is refused. */
  max_rooms_per_user: number;
  /** Accounts with an affiliation (owner, admin, member, outcast) one room may hold. */
  max_affiliations: number;
  /** Seconds a persistent room stays in memory with nobody in it (0 = always). */
  hibernate_after: number;
  /** In a cluster: whether this node runs rooms (false: it forwards to the nodes that do). */
  host_rooms: boolean;
}

/** HTTP File Upload (XEP-0363): the upload service of a host, served on the http listener. */
export interface UploadConfig {
  /** The service's JID, e.g. upload.example.org. */
  domain: string;
  /** How long a slot may go unused ("300s"). */
  slot_timeout: string;
  /** Largest file, in bytes (advertised in disco#info). */
  max_file_size: number;
  /** Bytes one account's stored files may take in all. */
  quota_per_user: number;
  /** Slots one account may request per minute. */
  slots_per_minute: number;
  /** Uploads and downloads one address may make per minute. */
  requests_per_minute: number;
  /** How long a file is kept ("30d"). */
  retention: string;
  /** Content types accepted (empty: any). */
  allowed_types: string[];
}

export interface HostConfig {
  domain: string;
  registration: boolean;
  proxy65?: Proxy65Config;
  muc?: MucConfig;
  upload?: UploadConfig;
  certificate?: { cert: string; key: string };
  components: ComponentConfig[];
}

export interface ListenerConfig {
  type: (typeof LISTENER_TYPES)[number];
  bind: string;
  port: number;
  starttls: "required" | "optional" | "disabled";
  plain_without_tls: boolean;
  /** http: https and wss with the hosts' certificates. */
  tls: boolean;
  /** http: addresses (CIDR) whose forwarded header is believed. */
  trusted_proxies: string[];
  /** http: the one header naming the client that trusted proxies set. */
  forwarded_header: "x-forwarded-for" | "forwarded";
}

export interface Config {
  data_dir: string;
  log: { level: "debug" | "info" | "warning" | "error" };
  hosts: HostConfig[];
  listeners: ListenerConfig[];
  http: {
    /** Origins browsers may connect from (WebSocket, BOSH); empty: any. */
    allowed_origins: string[];
    /** The base URL clients reach the http listener at (XEP-0156 discovery), e.g. behind a proxy. */
    public_url?: string;
  };
  bosh: {
    /** Seconds a BOSH session may go without a request before it ends. */
    inactivity: number;
    /** Longest a request is held waiting for data (the client's `wait`, capped). */
    max_wait: number;
    /** Requests held at once per session (the client's `hold`, capped). */
    max_hold: number;
    /** Requests per second one session may make before it is refused. */
    max_requests_per_second: number;
  };
  /** XEP-0198: acknowledgements and resumption of client streams. */
  stream_management: {
    /** How long a session whose connection is gone waits to be resumed ("300s"). */
    resume_timeout: string;
    /** The longest a client may ask for with `max` ("3600s"). */
    max_resume_timeout: string;
    /** Stanzas sent and not acknowledged before the stream is closed (policy-violation). */
    max_unacked: number;
  };
  /** XEP-0313: the message archive of accounts and rooms. */
  mam: {
    /** Archive accounts' and rooms' messages at all. */
    enabled: boolean;
    /** What an account archives until it sets its preferences (XEP-0441). */
    default: (typeof ARCHIVE_DEFAULTS)[number];
    /** Whether a persistent room archives its messages unless its owner turns it off. */
    rooms: boolean;
    /** How long an archived message is kept ("365d"). */
    retention: string;
    /** Most results in one page of a query (a larger `max` is capped). */
    max_page: number;
  };
  /** XEP-0357: push notifications to the app servers of sleeping clients. */
  push: {
    enabled: boolean;
    /** Pushes to one registration are coalesced within this ("10s"). */
    min_interval: string;
    /** App server registrations one account may have. */
    max_registrations: number;
  };
  /** XEP-0352: what an inactive client is spared. */
  csi: {
    enabled: boolean;
    /** Stanzas held for an inactive session before everything held is sent. */
    max_held: number;
  };
  /** XEP-0163: what each account keeps in its personal eventing service. */
  pep: {
    /** Nodes per account. */
    max_nodes: number;
    /** Most items a node keeps (what `pubsub#max_items` "max" means; larger asks are capped). */
    max_items: number;
    /** Largest item payload, in bytes of XML. */
    max_item_size: number;
  };
  metrics: {
    /** Addresses (CIDR) that may read /metrics; others get 403. */
    allow: string[];
  };
  storage: {
    /** sqlite: one node's own file; postgres: a database shared by every node of a cluster. */
    type: (typeof STORAGE_TYPES)[number];
    /** SQLite file; defaults to <data_dir>/parley.db. */
    path?: string;
    /** PostgreSQL connection URL (required for postgres). */
    url?: string;
    /** Most PostgreSQL connections this node opens. */
    pool: number;
  };
  auth: {
    scram_iterations: number;
    /** Failed authentications per address (IPv6: /64) and per account per failure_period (s). */
    failures_per_address: number;
    failures_per_account: number;
    failure_period: number;
  };
  limits: {
    max_stanza_size: number;
    /** Until a client has authenticated (SASL and registration need little). */
    max_stanza_size_before_auth: number;
    max_depth: number;
    connections_per_ip: number;
    rate_bytes_per_second: number;
    rate_burst_bytes: number;
    /** Input rate of one external component connection (many users' traffic), and its burst. */
    component_rate_bytes_per_second: number;
    component_rate_burst_bytes: number;
    max_offline_messages: number;
    max_outbound_buffer: number;
    /** Entities one session may send directed presence to (MUC rooms included). */
    max_directed_presences: number;
    /** Private XML (XEP-0049) namespaces stored per account. */
    max_private_keys: number;
    /** Accounts in-band registration creates per address (IPv6: /64) per registration_period (s). */
    registrations_per_address: number;
    registration_period: number;
  };
  timeouts: {
    handshake: number;
    /** Seconds a connection has to complete its TLS handshake (direct TLS or after STARTTLS). */
    tls_handshake: number;
    ping_interval: number;
    ping_timeout: number;
    auth_failure_delay_ms: number;
  };
  cluster?: ClusterConfig;
}

export interface ClusterConfig {
  /** This node's name; `parley serve --node` overrides it. Required one way or the other. */
  node?: string;
  /** Where peers connect to this node; defaults to the address of its own `peers` entry. */
  listen?: string;
  /** Every node of the cluster, this one included ("host:port" addresses). */
  peers: { node: string; address: string }[];
  /** PEM files: the cluster CA, and this node's certificate and key. */
  tls: { ca: string; cert: string; key: string };
  heartbeat: string;
  /** A peer silent this long is declared dead. */
  dead_after: string;
  /**
   * Most records of each kind (sessions, rooms, component instances, proxy streams) believed of
   * one peer; more close its link as invalid input.
   */
  max_records_per_peer: number;
  /** How long a peer whose link sent invalid input is refused (doubling, up to 64 times). */
  invalid_input_backoff: string;
}
