// Prometheus metrics. Gauges that describe state (health, connections in use) are computed at
// scrape time from the pools, so the data path only increments pre-bound counters.
import client from 'prom-client';
import type { Pool } from '../balancing/pool.js';

export class Metrics {
  readonly registry = new client.Registry();
  private pools: () => Iterable<Pool> = () => [];

  readonly listenerConnections = new client.Counter({ name: 'smtplb_listener_connections_total', help: 'Client connections accepted', labelNames: ['listener'], registers: [this.registry] });
  readonly listenerRejected = new client.Counter({ name: 'smtplb_listener_rejected_total', help: 'Client connections answered 421 and closed, by reason', labelNames: ['listener', 'reason'], registers: [this.registry] });
  readonly listenerActive = new client.Gauge({ name: 'smtplb_listener_active_connections', help: 'Client connections open now', labelNames: ['listener'], registers: [this.registry] });
  readonly serverConnections = new client.Counter({ name: 'smtplb_server_connections_total', help: 'Connections opened to an upstream server', labelNames: ['pool', 'server'], registers: [this.registry] });
  readonly serverConnectFailures = new client.Counter({ name: 'smtplb_server_connect_failures_total', help: 'Failed connection attempts to an upstream server', labelNames: ['pool', 'server'], registers: [this.registry] });
  readonly connectSeconds = new client.Histogram({
    name: 'smtplb_server_connect_seconds',
    help: 'Time to connect to an upstream server',
    labelNames: ['pool'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  constructor() {
    client.collectDefaultMetrics({ register: this.registry, prefix: 'smtplb_' });
    const self = this;
    new client.Gauge({
      name: 'smtplb_server_up',
      aggregator: 'max', // the same in every worker process: do not add them up
      help: '1 when the server passes health checks and is not ejected',
      labelNames: ['pool', 'server', 'backup'],
      registers: [this.registry],
      collect() {
        this.reset();
        const now = Date.now();
        for (const p of self.pools()) for (const s of p.servers) this.set({ pool: p.name, server: s.name, backup: String(s.backup) }, s.health.up && s.ejection.until <= now ? 1 : 0);
      },
    });
    new client.Gauge({
      name: 'smtplb_server_active_connections',
      help: 'Connections in use to the server now',
      labelNames: ['pool', 'server'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const p of self.pools()) for (const s of p.servers) this.set({ pool: p.name, server: s.name }, s.active);
      },
    });
    new client.Gauge({
      name: 'smtplb_server_admin_state',
      aggregator: 'max', // the same in every worker process: do not add them up
      help: 'Administrative state: 0 ready, 1 drain, 2 disabled',
      labelNames: ['pool', 'server'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const p of self.pools()) for (const s of p.servers) this.set({ pool: p.name, server: s.name }, { ready: 0, drain: 1, disabled: 2 }[s.admin]);
      },
    });
    new client.Gauge({
      name: 'smtplb_pool_waiting_connections',
      help: 'Connections waiting for a server slot (max_connections reached)',
      labelNames: ['pool'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const p of self.pools()) this.set({ pool: p.name }, p.waiting);
      },
    });
  }

  watchPools(pools: () => Iterable<Pool>): void {
    this.pools = pools;
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
