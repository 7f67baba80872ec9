// Schedules active checks for every server of every pool and feeds the results to the pool.
// One timer chain per server, so a slow server never delays the checks of the others.
import type { Logger } from 'pino';
import type { Pool, Server } from '../balancing/pool.js';
import { runCheck } from './checks.js';

export class HealthMonitor {
  private timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;
  private running = new Set<string>();

  constructor(private pools: Map<string, Pool>, private hostname: () => string) {}

  /** Start or refresh checks for the current server lists (call again after reload/discovery). */
  sync(pools = this.pools): void {
    this.pools = pools;
    const wanted = new Set<string>();
    for (const pool of pools.values()) {
      // Sources of a direct-to-MX pool are local addresses: nothing to check.
      if (pool.cfg.health.check === 'none' || pool.cfg.kind === 'mx') continue;
      for (const server of pool.servers) {
        const id = `${pool.name}/${server.key}`;
        wanted.add(id);
        if (!this.timers.has(id)) this.schedule(id, pool, server, 0);
      }
    }
    for (const [id, t] of this.timers) {
      if (!wanted.has(id)) {
        clearTimeout(t);
        this.timers.delete(id);
      }
    }
  }

  private schedule(id: string, pool: Pool, server: Server, delay: number): void {
    const t = setTimeout(async () => {
      if (this.stopped || pool.servers.indexOf(server) < 0) {
        this.timers.delete(id);
        return;
      }
      const h = pool.cfg.health;
      if (h.check === 'none') {
        this.timers.delete(id);
        return;
      }
      this.running.add(id);
      const r = await runCheck(h.check, server.address, {
        timeout: h.timeout,
        helo: h.helo ?? pool.cfg.helo ?? this.hostname(),
        starttls: h.starttls,
        source: server.source,
        proxy: pool.cfg.send_proxy,
      }).finally(() => this.running.delete(id));
      if (this.stopped || !this.timers.has(id)) return;
      pool.checkResult(server, r.ok, r.ok ? undefined : r.error);
      this.schedule(id, pool, server, h.interval);
    }, delay);
    t.unref();
    this.timers.set(id, t);
  }

  /** Check a server now instead of at its next interval (another node found it down). */
  checkNow(pool: Pool, server: Server): void {
    const id = `${pool.name}/${server.key}`;
    const t = this.timers.get(id);
    // A check under way is as good as a new one; a second timer chain would double the checks.
    if (!t || this.stopped || this.running.has(id)) return;
    clearTimeout(t);
    this.schedule(id, pool, server, 0);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}

/** Log every health state change, as operators read them in HAProxy's log. */
export function logHealthChanges(pools: Iterable<Pool>, log: Logger): void {
  for (const pool of pools) {
    pool.on('health', ({ server, up, reason }) => {
      if (up) log.info({ pool: pool.name, server: server.name, address: server.key }, `server ${pool.name}/${server.name} is UP`);
      else log.warn({ pool: pool.name, server: server.name, reason }, `server ${pool.name}/${server.name} is DOWN: ${reason ?? 'check failed'}`);
    });
    pool.on('ejected', ({ server, until }) => {
      log.warn({ pool: pool.name, server: server.name, until: new Date(until).toISOString() }, `server ${pool.name}/${server.name} ejected after repeated connection failures`);
    });
  }
}
