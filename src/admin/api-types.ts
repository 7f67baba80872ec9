// The admin API's contract: the bodies of its answers, declared once and used by the server
// (the runtime's status functions are annotated with them, so the compiler holds the server to
// them), the primary's fan-out over workers, the CLI and the tests. A field added to an answer
// is added here first.

/** `/api/suspensions` and the status' `suspensions`: times as ISO 8601. */
export interface SuspensionView { id: string; pool: string; destination: string; until: string; reason: string; who: string; created: string }
export interface OverrideView extends SuspensionView { rate: string | null; concurrency: number | null }

/** One (pool, destination) in the status' queue: the largest first. */
export interface DestinationRow { pool: string; destination: string; queued: number; oldest_seconds: number; waiting_for: string | null; /** Failures by reply class since start. */ classes?: Record<string, number> }

export interface ThrottleView {
  pool: string;
  server: string;
  destination: string;
  factor: number;
  inflight: number;
  concurrency: number | null;
  rate_per_minute: number | null;
  configured_rate_per_minute: number | null;
  suspended_until: string | null;
  last_throttle_reply: string | null;
}

export interface SpoolState { writable: boolean; full: boolean; error: string | null; since: string | null }
export interface LastError { at: string; pool: string; server: string; code: number | null; reply: string }

export interface ClusterView {
  node: string;
  redis: string;
  state: string;
  since: string;
  error: string | null;
  nodes_live: number;
  lease_ttl_ms: number;
  leases_held: number;
  nodes: { node: string; last_heartbeat: string; age_ms: number; live: boolean; queue: number; delivery_rate: number; down: string[]; shared: boolean }[];
  limits: { destination: string; concurrency: number | null; rate_per_minute: number | null; in_force: { concurrency: number | null; rate_per_minute: number | null } }[];
}

/** The relay's part of `/api/status` (Relay.status), as one process or a worker's shard answers it. */
export interface RelayStatus {
  queue: { counts: Record<string, number>; destinations: DestinationRow[]; destination_count: number };
  spool: SpoolState;
  throttles: ThrottleView[];
  suspensions: SuspensionView[];
  overrides: OverrideView[];
  last_errors: LastError[];
  cluster?: ClusterView;
  /** Complaint rates over 24 hours per sender domain, class and tag (with `feedback:`), most complaints first. */
  complaints?: { kind: string; key: string; delivered: number; complaints: number; rate: number }[];
  /** The compliance gate (with `compliance:`): domains whose bulk mail waits (or would, in warn mode), and today's bulk volume per site. */
  compliance?: { mode: string; classes: string[]; domains: { domain: string; held: boolean; reason: string; since: string }[]; daily: { sender_domain: string; site: string; today: number; bulk_sender: boolean }[] };
}

/** A warming server's day: its cap today, what it sent, what is left. */
export interface WarmupView { day: number; cap: number | null; sent: number; remaining: number | null }

export interface StatusServer {
  name: string;
  address: string;
  weight: number;
  backup: boolean;
  admin: string;
  up: boolean;
  ejected_until: string | null;
  since: string | null;
  last_error: string | null;
  warmup: WarmupView | null;
  active: number;
  connections: number;
  failures: number;
}

export interface StatusPool { name: string; balance: string; fallback: string | null | undefined; waiting: number; servers: StatusServer[] }
export interface StatusListener { name: string; listen: string; mode: string; pool?: string; connections: number | undefined }

/** `GET /api/status`. Under `workers:` the primary adds `shards` (and says what is missing in `warning`). */
export interface GatewayStatus extends Partial<RelayStatus> {
  hostname: string;
  pid: number;
  role: string;
  workers: number | undefined;
  listeners: StatusListener[];
  pools: StatusPool[];
  tcp_relay?: unknown;
  health_history: unknown[];
  identity?: unknown;
  shards?: { shard: number; port: number; reachable: boolean; queue: number | null; error?: string; counts?: Record<string, number> }[];
  shards_unreachable?: number[];
  warning?: string;
}

/** `GET /api/queue` and `/api/queue/<id>`: a message and its recipients. */
export interface QueueMessage {
  id: string;
  created: string;
  age_seconds: number;
  sender: string;
  size: number;
  message_id: string | null;
  recipients: { address: string; pool: string; state: string; attempts: number; next_attempt: string | null; last_code: number | null; last_reply: string | null; last_server: string | null; reply_class?: string | null; waiting_for: string | null; site?: string | null }[];
}

/** `GET /api/route?address=...` (`smtplb route explain`). */
export interface RouteExplain {
  address: string;
  route: ({ index: number; pool: string } & Record<string, unknown>) | null;
  why: string[];
  pools?: { pool: string; balance: string; status: string; candidates: string[]; site?: string | null; shaping_key?: string; servers: { name: string; up: boolean; admin: string; backup: boolean; weight: number; ejected: boolean }[] }[];
}
