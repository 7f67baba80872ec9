// A pool of upstream servers at run time: their state (health, ejection, admin state,
// connections in use) and leases on them. The TCP proxy and the SMTP relay both take servers
// from here; the decisions themselves are the pure functions in eligible.ts and pick.ts.
import { EventEmitter } from 'node:events';
import type { PoolConfig, ServerConfig } from '../config/schema.js';
import { formatAddress, type HostPort } from '../config/units.js';
import { initialHealth, nextEjection, nextHealth, NO_EJECTION, type Ejection, type HealthState } from '../health/state.js';
import { eligible, type AdminState, type ServerView } from './eligible.js';
import { pick } from './pick.js';
import type { WarmupPlan } from '../scheduler/warmup.js';

export class Server implements ServerView {
  readonly key: string;
  active = 0;
  current = 0;
  admin: AdminState = 'ready';
  health: HealthState;
  ejection: Ejection = NO_EJECTION;
  /** Weight as configured; `weight` may be overridden at run time. */
  configuredWeight: number;
  weight: number;
  backup: boolean;
  maxconn?: number;
  source?: string;
  warmup?: WarmupPlan;
  /** HELO name of a direct-to-MX source. */
  helo?: string;
  // Counters for status and metrics.
  connections = 0;
  failures = 0;

  constructor(readonly name: string, readonly address: HostPort, cfg: Pick<ServerConfig, 'weight' | 'backup' | 'max_connections' | 'source' | 'warmup'> & { helo?: string }) {
    this.key = `${name}@${formatAddress(address)}`;
    this.configuredWeight = cfg.weight;
    this.weight = cfg.weight;
    this.backup = cfg.backup;
    this.maxconn = cfg.max_connections;
    this.source = cfg.source;
    this.warmup = cfg.warmup;
    this.helo = cfg.helo;
    this.health = initialHealth();
  }

  get label(): string {
    return `${this.name} (${formatAddress(this.address)})`;
  }
}

export interface AcquireContext {
  source?: string;
  exclude?: ReadonlySet<string>;
}

export type Acquired = { kind: 'lease'; server: Server } | { kind: 'busy' } | { kind: 'down' };

interface Waiter { ctx: AcquireContext; resolve: (r: Acquired) => void; timer: NodeJS.Timeout }

export interface HealthChange { pool: string; server: Server; up: boolean; reason?: string }

export interface ServerSpec {
  name: string;
  address: HostPort;
  weight: number;
  backup: boolean;
  max_connections?: number;
  source?: string;
  warmup?: WarmupPlan;
  helo?: string;
}

export function specsFromConfig(cfg: PoolConfig): ServerSpec[] {
  // A direct-to-MX pool balances over its sources: local addresses to send from.
  if (cfg.kind === 'mx') return cfg.sources.map((s) => ({ name: s.name ?? s.address, address: { host: s.address, port: 0 }, source: s.address, helo: s.helo, weight: s.weight, backup: false, max_connections: s.max_connections, warmup: s.warmup }));
  return cfg.servers.map((s) => ({ ...s, name: s.name ?? formatAddress(s.address) }));
}

/** Emits 'health' (HealthChange) when a server goes up or down. */
export class Pool extends EventEmitter {
  servers: Server[] = [];
  private waiters: Waiter[] = [];
  private rotation = 0;

  constructor(readonly name: string, public cfg: PoolConfig, specs: ServerSpec[] = specsFromConfig(cfg)) {
    super();
    this.setServers(specs);
  }

  /** Replace the server list (reload, DNS discovery); servers that stay keep their state. */
  setServers(specs: ServerSpec[]): void {
    const old = new Map(this.servers.map((s) => [s.key, s]));
    this.servers = specs.map((spec) => {
      const s = new Server(spec.name, spec.address, spec);
      const prev = old.get(s.key);
      if (!prev) return s;
      // Run-time weight overrides last until the next reload, as the admin API promises.
      prev.configuredWeight = prev.weight = spec.weight;
      prev.backup = spec.backup;
      prev.maxconn = spec.max_connections;
      prev.source = spec.source;
      prev.warmup = spec.warmup;
      prev.helo = spec.helo;
      return prev;
    });
    this.wake();
  }

  find(name: string): Server | undefined {
    return this.servers.find((s) => s.name === name);
  }

  byKey(key: string): Server | undefined {
    return this.servers.find((s) => s.key === key);
  }

  tryAcquire(ctx: AcquireContext = {}, now = Date.now()): Acquired {
    const el = eligible(this.servers, now, this.cfg.slowstart, ctx.exclude);
    if (el.status !== 'ok') return { kind: el.status };
    const r = pick(this.cfg.balance, el.candidates, {
      // Read only when it decides: the client address can cost a system call to learn.
      source: this.cfg.balance === 'source' ? ctx.source : undefined,
      r1: Math.random(),
      r2: Math.random(),
      offset: this.rotation++,
    });
    if (r.currents) r.currents.forEach((c, i) => (this.servers[el.indices[i]].current = c));
    const server = this.servers[el.indices[r.pick]];
    server.active++;
    server.connections++;
    return { kind: 'lease', server };
  }

  /** Like tryAcquire, but waits up to queue_timeout when every usable server is at max_connections. */
  acquire(ctx: AcquireContext = {}): Promise<Acquired> {
    const now = this.tryAcquire(ctx);
    if (now.kind !== 'busy' || this.cfg.queue_timeout <= 0) return Promise.resolve(now);
    return new Promise((resolve) => {
      const w: Waiter = {
        ctx,
        resolve,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          resolve({ kind: 'busy' });
        }, this.cfg.queue_timeout),
      };
      this.waiters.push(w);
    });
  }

  release(server: Server): void {
    server.active--;
    this.wake();
  }

  /** Give waiting acquirers a chance after anything that may free capacity. */
  private wake(): void {
    while (this.waiters.length) {
      const w = this.waiters[0];
      const r = this.tryAcquire(w.ctx);
      if (r.kind === 'busy') return;
      this.waiters.shift();
      clearTimeout(w.timer);
      w.resolve(r);
    }
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Result of an active health check. */
  checkResult(server: Server, ok: boolean, error?: string, now = Date.now()): void {
    const before = server.health.up;
    server.health = nextHealth(server.health, ok, this.cfg.health.rise, this.cfg.health.fall, now, error);
    if (server.health.up !== before) this.healthChanged(server, error);
  }

  /** Set health from elsewhere (the cluster primary's view). */
  setHealth(server: Server, health: HealthState): void {
    const before = server.health.up;
    server.health = health;
    if (health.up !== before) this.healthChanged(server, health.lastError);
  }

  private healthChanged(server: Server, reason?: string): void {
    if (server.health.up) server.ejection = NO_EJECTION;
    this.emit('health', { pool: this.name, server, up: server.health.up, reason } satisfies HealthChange);
    this.wake();
  }

  /** Outcome of a live connection attempt: feeds passive outlier ejection. */
  passiveResult(server: Server, ok: boolean, now = Date.now()): Ejection {
    const before = server.ejection;
    server.ejection = nextEjection(server.ejection, ok, this.cfg.outlier, now);
    if (!ok) server.failures++;
    if (server.ejection.until !== before.until && server.ejection.until > now) {
      this.emit('ejected', { pool: this.name, server, until: server.ejection.until });
      // Re-examine waiters once the ejection ends.
      setTimeout(() => this.wake(), server.ejection.until - now + 1).unref();
    }
    return server.ejection;
  }

  setAdmin(server: Server, state: AdminState): void {
    server.admin = state;
    this.wake();
  }

  close(): void {
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.resolve({ kind: 'down' });
    }
    this.waiters = [];
  }
}

/** All pools by name, with fallback chains. */
export class PoolSet {
  constructor(readonly pools: Map<string, Pool>) {}

  get(name: string): Pool | undefined {
    return this.pools.get(name);
  }

  /**
   * Acquire from `name`, following `fallback` when the whole pool is down. Busy is not down:
   * a saturated pool makes the caller wait, it does not spill into the fallback.
   */
  async acquire(name: string, ctx: AcquireContext = {}): Promise<{ pool: Pool; result: Acquired }> {
    let pool = this.pools.get(name)!;
    for (let hops = 0; hops <= this.pools.size; hops++) {
      // The common case needs no waiting: take it without a detour through a promise.
      const now = pool.tryAcquire(ctx);
      const result = now.kind === 'busy' ? await pool.acquire(ctx) : now;
      if (result.kind !== 'down' || !pool.cfg.fallback) return { pool, result };
      pool = this.pools.get(pool.cfg.fallback)!;
    }
    return { pool, result: { kind: 'down' } };
  }
}
