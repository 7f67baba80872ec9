// Prometheus metrics. Gauges that describe state (health, connections in use) are computed at
// scrape time from the pools, so the data path only increments pre-bound counters.
import client from 'prom-client';
import type { Pool } from '../balancing/pool.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Shaper } from '../scheduler/shaper.js';
import type { QueueView } from '../spool/queue-view.js';
import type { Spool } from '../spool/spool.js';

/** What the metrics read from a relay at scrape time (the runtime's Relay is one). */
export interface RelayGauges {
  spool: Pick<Spool, 'unwritable' | 'counts'> & { view: Pick<QueueView, 'byDestination'> };
  shaper: Pick<Shaper, 'warmupStatus' | 'throttles'>;
  cluster?: Pick<Cluster, 'shared' | 'nodes' | 'counters'>;
  complaints: { rates(): { kind: string; key: string; rate: number }[] };
}

/** Destinations shown by name in queue metrics; the rest are summed as "other". */
const TOP_DESTINATIONS = 20;

export class Metrics {
  readonly registry = new client.Registry();
  private pools: () => Iterable<Pool> = () => [];
  private relay: () => RelayGauges | undefined = () => undefined;

  readonly listenerConnections = new client.Counter({ name: 'smtplb_listener_connections_total', help: 'Client connections accepted', labelNames: ['listener'], registers: [this.registry] });
  readonly listenerRejected = new client.Counter({ name: 'smtplb_listener_rejected_total', help: 'Client connections answered 421 and closed, by reason', labelNames: ['listener', 'reason'], registers: [this.registry] });
  readonly listenerActive = new client.Gauge({ name: 'smtplb_listener_active_connections', help: 'Client connections open now', labelNames: ['listener'], registers: [this.registry] });
  readonly proxyBytes = new client.Counter({ name: 'smtplb_proxy_bytes_total', help: 'Bytes relayed by mode: tcp listeners, counted when a connection ends', labelNames: ['listener', 'direction'], registers: [this.registry] });
  readonly proxyEnds = new client.Counter({ name: 'smtplb_proxy_connections_ended_total', help: 'Relayed mode: tcp connections by how they ended (closed, client_error, server_error, client_timeout, server_timeout, aborted)', labelNames: ['listener', 'reason'], registers: [this.registry] });
  readonly serverConnections = new client.Counter({ name: 'smtplb_server_connections_total', help: 'Connections opened to an upstream server', labelNames: ['pool', 'server'], registers: [this.registry] });
  readonly serverConnectFailures = new client.Counter({ name: 'smtplb_server_connect_failures_total', help: 'Failed connection attempts to an upstream server', labelNames: ['pool', 'server'], registers: [this.registry] });
  readonly connectSeconds = new client.Histogram({
    name: 'smtplb_server_connect_seconds',
    help: 'Time to connect to an upstream server',
    labelNames: ['pool'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  readonly listenerMessages = new client.Counter({ name: 'smtplb_listener_messages_total', help: 'Messages at the end of DATA, by the reply given', labelNames: ['listener', 'code'], registers: [this.registry] });
  readonly listenerRecipientsRejected = new client.Counter({ name: 'smtplb_listener_recipients_rejected_total', help: 'RCPT TO refused, by the reply given', labelNames: ['listener', 'code'], registers: [this.registry] });
  readonly eventsSent = new client.Counter({ name: 'smtplb_events_sent_total', help: 'Events a sink took (a webhook answered 2xx, or the file was written), by sink', labelNames: ['sink'], registers: [this.registry] });
  readonly webhookFailures = new client.Counter({ name: 'smtplb_event_webhook_failures_total', help: 'Batches of events a sink did not take (sent again later), by sink', labelNames: ['sink'], registers: [this.registry] });
  readonly eventsDropped = new client.Counter({ name: 'smtplb_events_dropped_total', help: 'Events dropped because the outbox reached events.max_outbox', labelNames: [], registers: [this.registry] });
  readonly outboxDepth = new client.Gauge({ name: 'smtplb_event_outbox', help: 'Events waiting in the outbox for the slowest sink', labelNames: [], registers: [this.registry] });
  readonly outcomes = new client.Counter({ name: 'smtplb_outcomes_total', help: 'Failed recipient outcomes (each deferral, bounce and expiry), by pool and reply class', labelNames: ['pool', 'class'], registers: [this.registry] });
  readonly listenerSuppressed = new client.Counter({ name: 'smtplb_suppressed_recipients_total', help: 'Recipients found on the suppression list at RCPT, by listener and action (refuse, drop)', labelNames: ['listener', 'action'], registers: [this.registry] });
  readonly suppressionsAdded = new client.Counter({ name: 'smtplb_suppressions_added_total', help: 'Entries added to the suppression list, by source (bounce, operator, import)', labelNames: ['source'], registers: [this.registry] });
  readonly listenerSessions = new client.Counter({ name: 'smtplb_listener_sessions_total', help: 'SMTP sessions started (mode smtp)', labelNames: ['listener'], registers: [this.registry] });
  readonly deliveries = new client.Counter({ name: 'smtplb_deliveries_total', help: 'Delivery attempts (transactions) to upstream servers, by reply class', labelNames: ['pool', 'server', 'result'], registers: [this.registry] });
  readonly deliveryBytes = new client.Counter({ name: 'smtplb_delivery_bytes_total', help: 'Message bytes accepted by upstream servers', labelNames: ['pool', 'server'], registers: [this.registry] });
  readonly deliverySeconds = new client.Histogram({
    name: 'smtplb_delivery_seconds',
    help: 'Time of one delivery attempt, connection included',
    labelNames: ['pool'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly reloads = new client.Counter({ name: 'smtplb_config_reloads_total', help: 'Configuration reloads (SIGHUP), by result: applied, or refused (the running config kept)', labelNames: ['result'], registers: [this.registry] });
  /** 1 when the last reload (or the start) applied its file, 0 when the last SIGHUP was refused and an older config runs. */
  readonly lastReloadSuccess = new client.Gauge({ name: 'smtplb_config_last_reload_success', help: '1 when the running config is the file as last read (start or reload applied), 0 when the last reload was refused and the previous config runs', registers: [this.registry], aggregator: 'min' });
  readonly internalErrors = new client.Counter({ name: 'smtplb_internal_errors_total', help: 'Errors that reached the process-level last resort (bugs), by kind', labelNames: ['kind'], registers: [this.registry] });
  readonly complaints = new client.Counter({ name: 'smtplb_complaints_total', help: 'Feedback-loop reports taken, by feedback type and whether their recipient was found', labelNames: ['feedback_type', 'matched'], registers: [this.registry] });
  readonly finalOutcomes = new client.Counter({ name: 'smtplb_recipients_final_total', help: 'Recipients that left the queue, by outcome (delivered, bounced, expired)', labelNames: ['pool', 'outcome'], registers: [this.registry] });

  constructor() {
    client.collectDefaultMetrics({ register: this.registry, prefix: 'smtplb_' });
    // 'max': the same in every worker process, so a cluster's sum would be wrong.
    this.stateGauge('smtplb_server_up', '1 when the server passes health checks and is not ejected', ['pool', 'server', 'backup'], (set) => {
      const now = Date.now();
      for (const p of this.pools()) for (const s of p.servers) set({ pool: p.name, server: s.name, backup: String(s.backup) }, s.health.up && s.ejection.until <= now ? 1 : 0);
    }, 'max');
    this.stateGauge('smtplb_server_active_connections', 'Connections in use to the server now', ['pool', 'server'], (set) => {
      for (const p of this.pools()) for (const s of p.servers) set({ pool: p.name, server: s.name }, s.active);
    });
    this.stateGauge('smtplb_server_admin_state', 'Administrative state: 0 ready, 1 drain, 2 disabled', ['pool', 'server'], (set) => {
      for (const p of this.pools()) for (const s of p.servers) set({ pool: p.name, server: s.name }, { ready: 0, drain: 1, disabled: 2 }[s.admin]);
    }, 'max');
    this.stateGauge('smtplb_pool_waiting_connections', 'Connections waiting for a server slot (max_connections reached)', ['pool'], (set) => {
      for (const p of this.pools()) set({ pool: p.name }, p.waiting);
    });
    this.relayGauges();
    // From the last identity check (src/identity/monitor.ts): 0 for each check that found nothing.
    this.stateGauge('smtplb_identity_problems', 'Problems the last identity check found (smtplb doctor), by sending domain (or egress HELO name) and check: spf, dkim, dmarc, mx, mta-sts, ptr', ['domain', 'check'], (set) => {
      for (const p of this.identity()) set({ domain: p.domain, check: p.check }, p.problems);
    }, 'max');
  }

  private identity: () => Iterable<{ domain: string; check: string; problems: number }> = () => [];

  watchIdentity(rows: () => Iterable<{ domain: string; check: string; problems: number }>): void {
    this.identity = rows;
  }

  watchPools(pools: () => Iterable<Pool>): void {
    this.pools = pools;
  }

  watchRelay(relay: () => RelayGauges | undefined): void {
    this.relay = relay;
  }

  /** A gauge computed at scrape time from the running state. */
  private stateGauge(name: string, help: string, labelNames: string[], fill: (set: (labels: Record<string, string>, v: number) => void) => void, aggregator?: 'max' | 'min'): void {
    new client.Gauge({
      name,
      help,
      labelNames,
      ...(aggregator ? { aggregator } : {}),
      registers: [this.registry],
      collect() {
        this.reset();
        fill((labels, v) => this.set(labels, v));
      },
    });
  }

  /**
   * A gauge filled at scrape time from the relay, when there is one. Under `workers: N` each
   * worker's relay holds one shard of the queue and the primary's scrape sums the workers'
   * series (prom-client's AggregatorRegistry): right for counts (the queue is the sum of its
   * shards), wrong for ages, flags and state every worker shares, which say how to combine.
   */
  private relayGauge(name: string, help: string, labelNames: string[], fill: (relay: RelayGauges, set: (labels: Record<string, string>, v: number) => void) => void, aggregator?: 'max' | 'min'): void {
    this.stateGauge(name, help, labelNames, (set) => {
      const r = this.relay();
      if (r) fill(r, set);
    }, aggregator);
  }

  private relayGauges(): void {
    // Queue metrics name the largest destinations and sum the rest, so label cardinality stays bounded.
    // From the spool's counters (no scan of the queue), looked up once per scrape for both gauges.
    let cached: { at: number; v: ReturnType<QueueView['byDestination']> } | undefined;
    const byDestination = (r: RelayGauges) => {
      const now = Date.now();
      if (!cached || now - cached.at > 500) cached = { at: now, v: r.spool.view.byDestination(TOP_DESTINATIONS) };
      return cached.v;
    };
    this.relayGauge('smtplb_queue_recipients', `Recipients waiting in the queue per pool and destination (the ${TOP_DESTINATIONS} largest; the rest as destination="other")`, ['pool', 'destination'], (r, set) => {
      const { top, rest } = byDestination(r);
      for (const d of top) set({ pool: d.pool, destination: d.domain }, d.queued);
      if (rest.destinations) set({ pool: '', destination: 'other' }, rest.queued);
    });
    this.relayGauge('smtplb_queue_oldest_seconds', `Age of the oldest waiting message per pool and destination (the ${TOP_DESTINATIONS} largest destinations; the rest as "other", looked up among its 200 largest)`, ['pool', 'destination'], (r, set) => {
      const now = Date.now();
      const { top, rest } = byDestination(r);
      for (const d of top) set({ pool: d.pool, destination: d.domain }, (now - d.oldest) / 1000);
      if (rest.oldest !== null) set({ pool: '', destination: 'other' }, (now - rest.oldest) / 1000);
    }, 'max'); // the oldest message of all shards
    this.relayGauge('smtplb_spool_writable', '1 when the spool takes writes; 0 while its filesystem refuses them (read-only, I/O errors) and new mail gets 451', [], (r, set) => {
      set({}, r.spool.unwritable ? 0 : 1);
    }, 'min'); // 0 when any shard's spool refuses writes
    this.relayGauge('smtplb_queue_state_recipients', 'Recipients in the spool by state', ['state'], (r, set) => {
      for (const c of r.spool.counts()) set({ state: c.state }, c.n);
    });
    this.relayGauge('smtplb_warmup_cap', "Today's warm-up cap of a warming server (absent once warm)", ['pool', 'server'], (r, set) => {
      for (const w of r.shaper.warmupStatus(this.pools())) if (w.cap !== null) set({ pool: w.pool, server: w.server }, w.cap);
    }, 'max'); // the plan's cap, the same in every worker
    this.relayGauge('smtplb_warmup_sent', 'Messages a warming server has sent today', ['pool', 'server'], (r, set) => {
      for (const w of r.shaper.warmupStatus(this.pools())) set({ pool: w.pool, server: w.server }, w.sent);
    }, 'max'); // warm-up counts are shared between workers: each reports the shared count (the highest is the freshest)
    this.relayGauge('smtplb_throttle_factor', 'Adaptive backoff: share of the configured concurrency and rate in force (only pairs below 1 or suspended)', ['pool', 'server', 'destination'], (r, set) => {
      for (const t of r.shaper.throttles()) if (t.factor < 1 || t.suspended_until) set({ pool: t.pool, server: t.server, destination: t.destination }, t.factor);
    }, 'min'); // backoff is shared: the most cautious worker's view while a change spreads
    this.relayGauge('smtplb_complaint_rate', 'Complaints / deliveries over the last 24 hours per sender domain, class and tag (the 20 of each with most complaints; the node\'s processes share the counts)', ['kind', 'key'], (r, set) => {
      for (const c of r.complaints.rates()) set({ kind: c.kind, key: c.key }, c.rate);
    }, 'max'); // one file for the node's processes: each reports the same
    this.relayGauge('smtplb_cluster_shared', "1 while limits are shared through the cluster's Redis; 0 while this node applies its local share (limit ÷ nodes)", [], (r, set) => {
      if (r.cluster) set({}, r.cluster.shared ? 1 : 0);
    }, 'min'); // 0 when any worker applies its local share
    this.relayGauge('smtplb_cluster_nodes', 'Cluster nodes heard from lately (the divisor of the local share when Redis is out of reach)', [], (r, set) => {
      if (r.cluster) set({}, r.cluster.nodes);
    }, 'max');
    this.relayGauge('smtplb_cluster_requests', 'Requests to the cluster store since start, by kind (grant, refused, release, sync, error)', ['kind'], (r, set) => {
      if (!r.cluster) return;
      const c = r.cluster.counters;
      set({ kind: 'grant' }, c.grants);
      set({ kind: 'refused' }, c.refused);
      set({ kind: 'release' }, c.releases);
      set({ kind: 'sync' }, c.syncs);
      set({ kind: 'error' }, c.errors);
    });
  }


  /** Exposition text; in a cluster primary, the sum over the worker processes. */
  async text(): Promise<string> {
    if (this.aggregator) return this.aggregator.clusterMetrics();
    return this.registry.metrics();
  }

  private aggregator?: client.AggregatorRegistry<client.PrometheusContentType>;

  /** Worker processes answer the primary's scrape requests with this registry. */
  serveToPrimary(): void {
    new client.AggregatorRegistry();
    client.AggregatorRegistry.setRegistries([this.registry]);
  }

  aggregateWorkers(): void {
    this.aggregator = new client.AggregatorRegistry();
  }
}
