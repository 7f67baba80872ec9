// DNS discovery of a pool's servers: A records (with a fixed port) or SRV records (RFC 2782:
// the lowest priority serves, higher priorities are backups; weights become balancer weights),
// re-resolved when the shortest TTL runs out. dns2 is used rather than node:dns because it
// reports TTLs for SRV answers and talks to a resolver on any port (tests run their own).
import DNS from 'dns2';
import dnsPromises from 'node:dns/promises';
import type { Logger } from 'pino';
import type { Pool, ServerSpec } from '../balancing/pool.js';
import type { DiscoverConfig } from '../config/schema.js';

export interface Discovered { servers: ServerSpec[]; ttlMs: number }

interface Answer { type: number; ttl: number; address?: string; priority?: number; weight?: number; port?: number; target?: string; name: string }

const TYPE_A = 1;
const TYPE_SRV = 33;

/** Turn SRV answers into server specs: the best priority are primaries, the rest backups. */
export function srvToServers(answers: { priority: number; weight: number; port: number; target: string }[], addressesOf: (target: string) => string[]): ServerSpec[] {
  if (answers.length === 0) return [];
  const best = Math.min(...answers.map((a) => a.priority));
  return answers.flatMap((a) =>
    addressesOf(a.target).map((ip) => ({
      name: `${a.target.replace(/\.$/, '')}:${a.port}${addressesOf(a.target).length > 1 ? `/${ip}` : ''}`,
      address: { host: ip, port: a.port },
      // SRV weights are 0..65535 with 0 meaning "rarely"; balancer weights are 1..256.
      weight: Math.max(1, Math.min(256, a.weight)),
      backup: a.priority !== best,
    })),
  );
}

export class DnsDiscovery {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private client: DNS;

  constructor(private pool: Pool, private cfg: DiscoverConfig, private staticServers: ServerSpec[], private log: Logger, private onChange: () => void) {
    const resolver = cfg.resolver ?? { host: dnsPromises.getServers()[0]?.replace(/^\[|\]$/g, '') ?? '127.0.0.1', port: 53 };
    this.client = new DNS({ nameServers: [resolver.host], port: resolver.port, timeout: 2, retries: 1 } as ConstructorParameters<typeof DNS>[0]);
  }

  async resolve(): Promise<Discovered> {
    if (this.cfg.a) {
      const res = await this.client.resolve(this.cfg.a, 'A');
      const answers = (res.answers as Answer[]).filter((a) => a.type === TYPE_A && a.address);
      if (answers.length === 0) throw new Error(`no A records for ${this.cfg.a}`);
      return {
        servers: answers.map((a) => ({ name: `${a.address}:${this.cfg.port}`, address: { host: a.address!, port: this.cfg.port! }, weight: 1, backup: false })),
        ttlMs: Math.min(...answers.map((a) => a.ttl)) * 1000,
      };
    }
    const res = await this.client.resolve(this.cfg.srv!, 'SRV');
    const srv = (res.answers as Answer[]).filter((a) => a.type === TYPE_SRV) as Required<Answer>[];
    if (srv.length === 0) throw new Error(`no SRV records for ${this.cfg.srv}`);
    const extra = [...((res as { additionals?: Answer[] }).additionals ?? [])];
    const addrs = new Map<string, string[]>();
    let ttl = Math.min(...srv.map((a) => a.ttl));
    for (const target of new Set(srv.map((a) => a.target))) {
      let found = extra.filter((a) => a.type === TYPE_A && a.name === target && a.address);
      if (found.length === 0) {
        const r = await this.client.resolve(target, 'A');
        found = (r.answers as Answer[]).filter((a) => a.type === TYPE_A && a.address);
      }
      if (found.length) ttl = Math.min(ttl, ...found.map((a) => a.ttl));
      addrs.set(target, found.map((a) => a.address!));
    }
    return { servers: srvToServers(srv, (t) => addrs.get(t) ?? []), ttlMs: ttl * 1000 };
  }

  async start(): Promise<void> {
    await this.refresh();
  }

  private async refresh(): Promise<void> {
    if (this.stopped) return;
    let next: number;
    try {
      const d = await this.resolve();
      const before = this.pool.servers.map((s) => s.key).join(',');
      this.pool.setServers([...this.staticServers, ...d.servers]);
      const after = this.pool.servers.map((s) => s.key).join(',');
      if (before !== after) {
        this.log.info({ pool: this.pool.name, servers: this.pool.servers.map((s) => s.key) }, `pool ${this.pool.name}: discovered ${d.servers.length} servers`);
        this.onChange();
      }
      next = this.cfg.refresh ?? Math.max(this.cfg.min_ttl, d.ttlMs);
    } catch (e) {
      // Keep the last good list: a DNS outage must not empty a working pool.
      this.log.warn({ pool: this.pool.name, error: (e as Error).message }, `pool ${this.pool.name}: DNS discovery failed, keeping ${this.pool.servers.length} known servers`);
      next = Math.max(this.cfg.min_ttl, 5000);
    }
    if (!this.stopped) {
      this.timer = setTimeout(() => void this.refresh(), next);
      this.timer.unref();
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
