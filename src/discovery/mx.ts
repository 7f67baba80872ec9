// MX lookup for direct-to-MX pools (RFC 5321 section 5): MX hosts in preference order, equal
// preferences shuffled, each host's A records; no MX at all falls back to the domain's own
// A/AAAA; a null MX (RFC 7505) means the domain takes no mail. Answers are cached for their
// TTL. dns2 again, for TTLs and a resolver on any port (tests run their own).
import DNS from 'dns2';
import dnsPromises from 'node:dns/promises';
import type { HostPort } from '../config/units.js';

export interface MxTarget { host: string; ip: string; preference: number }

export type MxAnswer = { ok: true; targets: MxTarget[] } | { ok: false; permanent: boolean; reason: string };

interface Rr { type: number; ttl: number; name: string; address?: string; exchange?: string; priority?: number }

const TYPE = { A: 1, MX: 15, AAAA: 28 } as const;

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

export class MxResolver {
  private client: DNS;
  private cache = new Map<string, { until: number; answer: MxAnswer }>();

  constructor(resolver?: HostPort) {
    const r = resolver ?? { host: dnsPromises.getServers()[0]?.replace(/^\[|\]$/g, '') ?? '127.0.0.1', port: 53 };
    this.client = new DNS({ nameServers: [r.host], port: r.port, timeout: 3, retries: 1 } as ConstructorParameters<typeof DNS>[0]);
  }

  async lookup(domain: string, now = Date.now()): Promise<MxAnswer> {
    const hit = this.cache.get(domain);
    if (hit && hit.until > now) return hit.answer;
    let answer: MxAnswer;
    let ttl = 60;
    try {
      const res = (await this.client.resolve(domain, 'MX')) as { answers: Rr[]; header?: { rcode?: number } };
      const mx = res.answers.filter((a) => a.type === TYPE.MX).map((a) => ({ exchange: (a.exchange ?? '').replace(/\.$/, ''), priority: a.priority ?? 0, ttl: a.ttl }));
      if (res.header?.rcode === 3) answer = { ok: false, permanent: true, reason: `5.1.2 Domain ${domain} does not exist (NXDOMAIN)` };
      else if (isNullMx(mx)) answer = { ok: false, permanent: true, reason: `5.1.10 Domain ${domain} accepts no mail (null MX)` };
      else if (mx.length === 0) {
        const ips = await this.addresses(domain);
        answer = ips.length ? { ok: true, targets: ips.map((ip) => ({ host: domain, ip, preference: 0 })) } : { ok: false, permanent: true, reason: `5.1.2 Domain ${domain} has no MX and no address` };
      } else {
        ttl = Math.min(...mx.map((m) => m.ttl));
        const targets: MxTarget[] = [];
        for (const m of orderMx(mx)) for (const ip of await this.addresses(m.exchange)) targets.push({ host: m.exchange, ip, preference: m.priority });
        answer = targets.length ? { ok: true, targets } : { ok: false, permanent: false, reason: `4.4.4 No address for any MX host of ${domain}` };
      }
    } catch (e) {
      // Timeouts and server failures are temporary: the mail waits, and we ask again soon.
      return { ok: false, permanent: false, reason: `4.4.3 DNS lookup for ${domain} failed: ${(e as Error).message}` };
    }
    this.cache.set(domain, { until: now + Math.max(1, ttl) * 1000, answer });
    return answer;
  }

  private async addresses(name: string): Promise<string[]> {
    const a = (await this.client.resolve(name, 'A')) as { answers: Rr[] };
    const v4 = a.answers.filter((x) => x.type === TYPE.A && x.address).map((x) => x.address!);
    if (v4.length) return v4;
    const aaaa = (await this.client.resolve(name, 'AAAA')) as { answers: Rr[] };
    return aaaa.answers.filter((x) => x.type === TYPE.AAAA && x.address).map((x) => x.address!);
  }
}
