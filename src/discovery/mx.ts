// MX lookup for direct-to-MX pools (RFC 5321 section 5): MX hosts in preference order, equal
// preferences shuffled, each host's A records (AAAA when it has none); no MX at all falls back
// to the domain's own A/AAAA; a null MX (RFC 7505) means the domain takes no mail.
//
// Which DNS outcomes are final (the message bounces) and which are not (it waits in the queue):
//
//   permanent  - NXDOMAIN (rcode 3) for the domain itself, on any of its queries:
//                "5.1.2 Domain does not exist".
//              - NOERROR with no MX, then NOERROR with no A, then NOERROR with no AAAA: every
//                one of those three queries answered rcode 0 and named nothing:
//                "5.1.2 Domain has no MX and no address" (RFC 5321 5.1: undeliverable).
//              - a null MX: "5.1.10 Domain accepts no mail".
//   temporary  - everything else: a timeout or network error (after the configured retries),
//                SERVFAIL, REFUSED or any other non-zero rcode, on any of the queries (the MX,
//                the domain's fallback A/AAAA, or the A/AAAA of the MX hosts), and MX hosts of
//                which none has an address: "4.4.3 DNS lookup ... failed" / "4.4.4 No address
//                for any MX host", deferred and retried on the queue's schedule.
//
// The AA bit is not required for a NODATA to count: the answers come from a recursive resolver,
// which never sets it, and a resolver's NOERROR/empty is the same "no such record" an
// authoritative server would have given. What makes an answer final is its rcode, so a lookup
// that did not get a clean rcode 0 or 3 for every question it needed is never a bounce.
//
// Caching: positive answers (and null MX) for the smallest TTL among the records used, clamped
// to [5 s, 1 h]; negative ones (NXDOMAIN, no MX and no address) for the SOA's negative TTL from
// the authority section (RFC 2308: min(SOA TTL, SOA minimum)), else 60 s, clamped to [5 s, 5 min];
// temporary failures (and answers where some MX host could not be looked up) only for 2 s, so
// the several tries of one delivery (one per source) do not each wait for the resolver again.
// The cache holds at most 10,000 domains; the oldest entry goes first. Concurrent lookups of one
// domain share a single query.
//
// Each query has its own timeout and retries (`mx: { timeout, retries }`, see DnsClient in
// dns.ts: dns2's `DNS` class ignores both).
import type { HostPort } from '../config/units.js';
import { DnsClient, RCODE, rcodeName, type DnsClientOptions, type DnsReply, type Rr } from './dns.js';

export interface MxTarget { host: string; ip: string; preference: number }

export type MxAnswer = { ok: true; targets: MxTarget[] } | { ok: false; permanent: boolean; reason: string };

const TYPE = { A: 1, MX: 15, AAAA: 28, SOA: 6 } as const;

/** Cache limits, seconds unless said otherwise. */
export const MX_CACHE = { minTtl: 5, maxTtl: 3600, negativeTtl: 60, maxNegativeTtl: 300, temporaryMs: 2000, maxEntries: 10_000 } as const;

/** Preference order, equal preferences in random order (`random` is injected for tests). */
export function orderMx(mx: { exchange: string; priority: number }[], random: () => number = Math.random): { exchange: string; priority: number }[] {
  const keyed = mx.map((m) => ({ m, k: random() }));
  keyed.sort((a, b) => a.m.priority - b.m.priority || a.k - b.k);
  return keyed.map((x) => x.m);
}

/** RFC 7505: a single MX of "." means "this domain accepts no mail". */
export function isNullMx(mx: { exchange: string }[]): boolean {
  return mx.length === 1 && (mx[0].exchange === '' || mx[0].exchange === '.');
}

/** Seconds a positive answer is kept: its smallest TTL, clamped. */
export function positiveTtl(ttls: number[]): number {
  const t = ttls.length ? Math.min(...ttls) : MX_CACHE.minTtl;
  return Math.min(MX_CACHE.maxTtl, Math.max(MX_CACHE.minTtl, t));
}

/** Seconds a negative answer is kept (RFC 2308 section 5): min(SOA TTL, SOA minimum) from the authority section, else 60, clamped. */
export function negativeTtl(reply: Pick<DnsReply, 'authorities'> | undefined): number {
  const soa = reply?.authorities.find((r) => r.type === TYPE.SOA && typeof r.minimum === 'number');
  const t = soa ? Math.min(soa.ttl, soa.minimum!) : MX_CACHE.negativeTtl;
  return Math.min(MX_CACHE.maxNegativeTtl, Math.max(MX_CACHE.minTtl, t));
}

/** A lookup that got no usable answer: the message waits. */
class Temporary extends Error {}

export interface MxResolverOptions extends DnsClientOptions {
  /** Most domains cached (oldest evicted first). */
  maxEntries?: number;
}

interface Resolved { answer: MxAnswer; ttlMs: number }

export class MxResolver {
  private client: DnsClient;
  private cache = new Map<string, { until: number; answer: MxAnswer }>();
  private inflight = new Map<string, Promise<MxAnswer>>();
  private maxEntries: number;

  constructor(resolver?: HostPort, opts: MxResolverOptions = {}) {
    this.client = new DnsClient(resolver, opts);
    this.maxEntries = Math.max(1, opts.maxEntries ?? MX_CACHE.maxEntries);
  }

  /** Domains currently cached (for tests and status). */
  get cached(): number {
    return this.cache.size;
  }

  async lookup(domain: string, now = Date.now()): Promise<MxAnswer> {
    const key = domain.toLowerCase().replace(/\.$/, '');
    const hit = this.cache.get(key);
    if (hit && hit.until > now) return hit.answer;
    if (hit) this.cache.delete(key);
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const p = this.resolve(key)
      .then((r) => {
        this.remember(key, r.answer, now + r.ttlMs);
        return r.answer;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private remember(key: string, answer: MxAnswer, until: number): void {
    this.cache.delete(key);
    this.cache.set(key, { until, answer });
    while (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
  }

  private async resolve(domain: string): Promise<Resolved> {
    const temporary = (reason: string): Resolved => ({ answer: { ok: false, permanent: false, reason }, ttlMs: MX_CACHE.temporaryMs });
    const nxdomain = (r: DnsReply): Resolved => ({ answer: { ok: false, permanent: true, reason: `5.1.2 Domain ${domain} does not exist (NXDOMAIN)` }, ttlMs: negativeTtl(r) * 1000 });
    try {
      const res = await this.ask(domain, 'MX');
      if (res.rcode === RCODE.NXDOMAIN) return nxdomain(res);
      const mx = res.answers.filter((a) => a.type === TYPE.MX).map((a) => ({ exchange: (a.exchange ?? '').replace(/\.$/, ''), priority: a.priority ?? 0, ttl: a.ttl }));
      if (isNullMx(mx)) return { answer: { ok: false, permanent: true, reason: `5.1.10 Domain ${domain} accepts no mail (null MX)` }, ttlMs: positiveTtl([mx[0].ttl]) * 1000 };
      if (mx.length === 0) {
        // No MX: the domain itself is the mail host (RFC 5321 5.1), if it has an address.
        const a = await this.ask(domain, 'A');
        if (a.rcode === RCODE.NXDOMAIN) return nxdomain(a);
        let found = a.answers.filter((x) => x.type === TYPE.A && x.address);
        let last = a;
        if (found.length === 0) {
          last = await this.ask(domain, 'AAAA');
          if (last.rcode === RCODE.NXDOMAIN) return nxdomain(last);
          found = last.answers.filter((x) => x.type === TYPE.AAAA && x.address);
        }
        if (found.length === 0) return { answer: { ok: false, permanent: true, reason: `5.1.2 Domain ${domain} has no MX and no address` }, ttlMs: negativeTtl(last) * 1000 };
        return { answer: { ok: true, targets: found.map((x) => ({ host: domain, ip: x.address!, preference: 0 })) }, ttlMs: positiveTtl(found.map((x) => x.ttl)) * 1000 };
      }
      const ordered = orderMx(mx) as { exchange: string; priority: number; ttl: number }[];
      // The hosts' addresses, all at once: a slow resolver costs one timeout, not one per host.
      const hosts = await Promise.all(ordered.map((m) => this.addresses(m.exchange).then((r) => ({ m, ...r }), (e: Error) => ({ m, failed: e.message, records: [] as Rr[] }))));
      const targets: MxTarget[] = [];
      const ttls = mx.map((m) => m.ttl);
      let failure: string | undefined;
      for (const h of hosts) {
        if ('failed' in h && h.failed) failure ??= h.failed;
        for (const r of h.records) {
          targets.push({ host: h.m.exchange, ip: r.address!, preference: h.m.priority });
          ttls.push(r.ttl);
        }
      }
      if (targets.length === 0) return temporary(failure ?? `4.4.4 No address for any MX host of ${domain}`);
      // Some hosts could not be looked up: use the others now, but ask again soon.
      return { answer: { ok: true, targets }, ttlMs: failure ? MX_CACHE.temporaryMs : positiveTtl(ttls) * 1000 };
    } catch (e) {
      // Timeouts and server failures are temporary: the mail waits, and we ask again soon.
      const message = (e as Error).message;
      return temporary(e instanceof Temporary ? message : `4.4.3 DNS lookup for ${domain} failed: ${message}`);
    }
  }

  /** One query; throws `Temporary` unless the rcode is NOERROR or NXDOMAIN. */
  private async ask(name: string, type: 'MX' | 'A' | 'AAAA'): Promise<DnsReply> {
    let r: DnsReply;
    try {
      r = await this.client.query(name, type);
    } catch (e) {
      throw new Temporary(`4.4.3 DNS lookup of ${name}/${type} failed: ${(e as Error).message}`);
    }
    if (r.rcode !== RCODE.NOERROR && r.rcode !== RCODE.NXDOMAIN) throw new Temporary(`4.4.3 DNS lookup of ${name}/${type} failed: ${rcodeName(r.rcode)}`);
    return r;
  }

  /** An MX host's A records, else its AAAA records; empty when it has neither; throws `Temporary` on a failed query. */
  private async addresses(name: string): Promise<{ records: Rr[] }> {
    const a = await this.ask(name, 'A');
    const v4 = a.answers.filter((x) => x.type === TYPE.A && x.address);
    if (v4.length) return { records: v4 };
    if (a.rcode === RCODE.NXDOMAIN) return { records: [] };
    const aaaa = await this.ask(name, 'AAAA');
    return { records: aaaa.answers.filter((x) => x.type === TYPE.AAAA && x.address) };
  }
}
