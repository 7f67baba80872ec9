// DNS discovery of a pool's servers: A records (with a fixed port) or SRV records (RFC 2782:
// the lowest priority serves, higher priorities are backups; weights become balancer weights),
// re-resolved when the shortest TTL runs out. dns2 is used rather than node:dns because it
// reports TTLs, rcodes and flags and talks to a resolver on any port (tests run their own).
//
// A failed lookup never changes the pool: a timeout, a network error, SERVFAIL, REFUSED or any
// other non-zero rcode — for the name itself or for one SRV target's A records — keeps the last
// known servers and asks again soon. An answer with no usable record (NXDOMAIN, or NOERROR and
// empty) is not applied either: a DNS mistake must not empty a working pool.
//
// `DnsClient` is also what the MX resolver uses: dns2's `DNS` class ignores its own `timeout`
// and `retries` options (it races one UDP query per name server, each with dns2's built-in
// 10 s timeout), so the per-query timeout and the retries are done here.
import DNS from 'dns2';
import dnsPromises from 'node:dns/promises';
import net from 'node:net';
import type { Logger } from 'pino';
import type { Pool, ServerSpec } from '../balancing/pool.js';
import type { DiscoverConfig } from '../config/schema.js';
import type { HostPort } from '../config/units.js';

export interface Discovered { servers: ServerSpec[]; ttlMs: number }

export interface Rr { type: number; ttl: number; name: string; address?: string; priority?: number; weight?: number; port?: number; target?: string; exchange?: string; minimum?: number }

/** A DNS response as far as callers care: rcode, the AA bit and the record sections. */
export interface DnsReply { rcode: number; aa: boolean; answers: Rr[]; authorities: Rr[]; additionals: Rr[] }

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export function rcodeName(rcode: number): string {
  return Object.entries(RCODE).find(([, v]) => v === rcode)?.[0] ?? `rcode ${rcode}`;
}

const TYPE_A = 1;
const TYPE_SRV = 33;

/** The system's resolvers (resolv.conf), as host/port pairs: "1.2.3.4", "1.2.3.4:5353", "[::1]:53", "::1". */
export function systemResolvers(): HostPort[] {
  const out: HostPort[] = [];
  for (const s of dnsPromises.getServers()) {
    const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
    if (bracket) out.push({ host: bracket[1], port: bracket[2] ? Number(bracket[2]) : 53 });
    else if (net.isIP(s)) out.push({ host: s, port: 53 });
    else {
      const m = /^(.*):(\d+)$/.exec(s);
      if (m && net.isIP(m[1])) out.push({ host: m[1], port: Number(m[2]) });
    }
  }
  return out.length ? out : [{ host: '127.0.0.1', port: 53 }];
}

export interface DnsClientOptions {
  /** Per-try timeout, ms. */
  timeout?: number;
  /** Further tries after a timeout or network error (so `retries + 1` queries at most). */
  retries?: number;
}

/**
 * One question at a time to a resolver, UDP (TCP when the answer is truncated), with a
 * per-try timeout and retries. Resolves with whatever the server answered, whatever the rcode;
 * rejects only when no answer came (every try timed out or failed on the network). Several
 * servers (the system's resolv.conf) are tried in turn, and a SERVFAIL / REFUSED is passed on
 * to the next one when there is a next one.
 */
export class DnsClient {
  readonly servers: HostPort[];
  readonly timeout: number;
  readonly retries: number;

  constructor(resolver: HostPort | HostPort[] | undefined, opts: DnsClientOptions = {}) {
    this.servers = resolver === undefined ? systemResolvers() : Array.isArray(resolver) ? resolver : [resolver];
    this.timeout = Math.max(1, opts.timeout ?? 2000);
    this.retries = Math.max(0, Math.floor(opts.retries ?? 2));
  }

  async query(name: string, type: 'A' | 'AAAA' | 'MX' | 'SRV' | 'SOA'): Promise<DnsReply> {
    let lastErr: Error | undefined;
    let lastReply: DnsReply | undefined;
    for (let i = 0; i <= this.retries; i++) {
      const server = this.servers[i % this.servers.length];
      try {
        const reply = await this.once(server, name, type);
        const failed = reply.rcode === RCODE.SERVFAIL || reply.rcode === RCODE.REFUSED;
        if (!failed || this.servers.length === 1) return reply;
        lastReply = reply;
      } catch (e) {
        lastErr = e as Error;
      }
    }
    if (lastReply) return lastReply;
    throw lastErr ?? new Error(`DNS query ${name}/${type} failed`);
  }

  private once(server: HostPort, name: string, type: string): Promise<DnsReply> {
    const resolve = DNS.UDPClient({ dns: server.host, port: server.port, timeout: this.timeout, socketType: net.isIPv6(server.host) ? 'udp6' : 'udp4' });
    let timer: NodeJS.Timeout | undefined;
    // dns2's own timeout covers UDP; this one also covers its TCP fallback (which has none).
    const expire = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), this.timeout + 50);
    });
    return Promise.race([resolve(name, type), expire])
      .then((p) => {
        const pkt = p as unknown as { header: { rcode: number; aa: number }; answers?: Rr[]; authorities?: Rr[]; additionals?: Rr[] };
        return { rcode: pkt.header.rcode, aa: pkt.header.aa === 1, answers: pkt.answers ?? [], authorities: pkt.authorities ?? [], additionals: pkt.additionals ?? [] };
      })
      .catch((e: Error) => {
        if ((e as { code?: string }).code === 'ETIMEDOUT') e.message = `DNS query ${name}/${type} to ${server.host}:${server.port} timed out after ${this.timeout}ms`;
        throw e;
      })
      .finally(() => clearTimeout(timer));
  }
}

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

/** A reply that is an answer (NOERROR); anything else is a failure the caller must not act on. */
function answered(r: DnsReply, what: string): Rr[] {
  if (r.rcode !== RCODE.NOERROR) throw new Error(`DNS lookup of ${what} failed: ${rcodeName(r.rcode)}`);
  return r.answers;
}

export class DnsDiscovery {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private client: DnsClient;

  constructor(private pool: Pool, private cfg: DiscoverConfig, private staticServers: ServerSpec[], private log: Logger, private onChange: () => void) {
    this.client = new DnsClient(cfg.resolver, { timeout: 2000, retries: 2 });
  }

  /** The servers the records name now; throws when the lookup failed or named none. */
  async resolve(): Promise<Discovered> {
    if (this.cfg.a) {
      const answers = answered(await this.client.query(this.cfg.a, 'A'), `${this.cfg.a}/A`).filter((a) => a.type === TYPE_A && a.address);
      if (answers.length === 0) throw new Error(`no A records for ${this.cfg.a}`);
      return {
        servers: answers.map((a) => ({ name: `${a.address}:${this.cfg.port}`, address: { host: a.address!, port: this.cfg.port! }, weight: 1, backup: false })),
        ttlMs: Math.min(...answers.map((a) => a.ttl)) * 1000,
      };
    }
    const res = await this.client.query(this.cfg.srv!, 'SRV');
    const srv = answered(res, `${this.cfg.srv}/SRV`).filter((a) => a.type === TYPE_SRV) as Required<Rr>[];
    if (srv.length === 0) throw new Error(`no SRV records for ${this.cfg.srv}`);
    const extra = res.additionals;
    const addrs = new Map<string, string[]>();
    let ttl = Math.min(...srv.map((a) => a.ttl));
    for (const target of new Set(srv.map((a) => a.target))) {
      let found = extra.filter((a) => a.type === TYPE_A && a.name === target && a.address);
      if (found.length === 0) {
        // A failed lookup of one target fails the whole refresh: dropping that target's
        // servers because its resolver hiccuped would shrink the pool for nothing.
        found = answered(await this.client.query(target, 'A'), `${target}/A`).filter((a) => a.type === TYPE_A && a.address);
      }
      if (found.length) ttl = Math.min(ttl, ...found.map((a) => a.ttl));
      addrs.set(target, found.map((a) => a.address!));
    }
    const servers = srvToServers(srv, (t) => addrs.get(t) ?? []);
    if (servers.length === 0) throw new Error(`no address for any SRV target of ${this.cfg.srv}`);
    return { servers, ttlMs: ttl * 1000 };
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
