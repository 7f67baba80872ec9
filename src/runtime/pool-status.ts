// The pools as `/api/status` shows them: one row per server with its admin state, health and
// counters. On a primary of `workers: N` the counters are the sum of what the workers report.
import type { StatusPool } from '../admin/api-types.js';
import type { Pool, Server } from '../balancing/pool.js';
import { formatAddress } from '../config/units.js';

/** Per-server counters a worker process reports to the primary. */
export interface WorkerStats {
  servers: { pool: string; key: string; active: number; connections: number; failures: number }[];
  listeners: Record<string, number>;
}

export function poolsStatus(pools: Iterable<Pool>, now: number, opts: { workers?: Iterable<WorkerStats>; warmup: (pool: string, s: Server) => StatusPool['servers'][number]['warmup'] }): StatusPool[] {
  const workers = opts.workers ? [...opts.workers] : undefined;
  const summed = (pool: string, key: string) => {
    const sum = { active: 0, connections: 0, failures: 0 };
    for (const w of workers ?? []) {
      const r = w.servers.find((x) => x.pool === pool && x.key === key);
      if (r) {
        sum.active += r.active;
        sum.connections += r.connections;
        sum.failures += r.failures;
      }
    }
    return sum;
  };
  return [...pools].map((p) => ({
    name: p.name,
    balance: p.cfg.balance,
    fallback: p.cfg.fallback,
    waiting: p.waiting,
    servers: p.servers.map((s) => ({
      name: s.name,
      address: formatAddress(s.address),
      weight: s.weight,
      backup: s.backup,
      admin: s.admin,
      up: s.health.up,
      ejected_until: s.ejection.until > now ? new Date(s.ejection.until).toISOString() : null,
      since: s.health.since ? new Date(s.health.since).toISOString() : null,
      last_error: s.health.lastError ?? null,
      warmup: opts.warmup(p.name, s),
      ...(workers ? summed(p.name, s.key) : { active: s.active, connections: s.connections, failures: s.failures }),
    })),
  }));
}
