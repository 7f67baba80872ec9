// DNS for the identity checks: one function, `lookup(name, type)`, answering as
// `dns.promises.resolve` does (TXT as arrays of strings, MX as { exchange, priority }, errors
// with codes ENOTFOUND / ENODATA / ETIMEOUT / ESERVFAIL …), because that is the resolver shape
// mailauth's SPF, DMARC and MTA-STS code accepts. node:dns's Resolver is used rather than
// discovery/dns.ts's DnsClient: it already speaks TXT and PTR, falls back to TCP for large
// answers, and takes a resolver on any port (`setServers(['127.0.0.1:5353'])`), with a per-try
// timeout and tries. One run of the checks asks many overlapping questions (every egress
// address is evaluated against the same SPF includes), so answers are memoised for the run.
import { Resolver } from 'node:dns/promises';
import net from 'node:net';
import type { Config } from '../config/schema.js';
import { parseAddress, type HostPort } from '../config/units.js';

export type Lookup = ((name: string, type: string) => Promise<unknown>) & { resolver: string; cancel(): void };

/** "HOST", "HOST:PORT", "[v6]:PORT" or a bare IPv6 address → host and port (53 by default). */
export function parseResolver(text: string): HostPort {
  const t = text.trim();
  if (net.isIP(t)) return { host: t, port: 53 };
  if (!t.includes(':')) return { host: t, port: 53 };
  const a = parseAddress(t);
  if (!net.isIP(a.host)) throw new Error(`--resolver: "${text}" is not an IP address (write 127.0.0.1:5353 or [::1]:53)`);
  return a;
}

/** The resolver the checks use: the one given, else `doctor.resolver`, else a kind: mx pool's `mx.resolver`, else the system's. */
export function chooseResolver(config: Config, given?: HostPort): HostPort | undefined {
  if (given) return given;
  if (config.doctor?.resolver) return config.doctor.resolver;
  return Object.values(config.pools).find((p) => p.kind === 'mx' && p.mx.resolver)?.mx.resolver;
}

const server = (a: HostPort) => (net.isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`);

export function createLookup(resolver: HostPort | undefined, opts: { timeout?: number; tries?: number } = {}): Lookup {
  const r = new Resolver({ timeout: opts.timeout ?? 2000, tries: opts.tries ?? 2 });
  if (resolver) r.setServers([server(resolver)]);
  const memo = new Map<string, Promise<unknown>>();
  const fn = ((name: string, type: string) => {
    const key = `${type.toUpperCase()} ${name.toLowerCase().replace(/\.$/, '')}`;
    let p = memo.get(key);
    if (!p) {
      p = r.resolve(name, type.toUpperCase() as 'TXT') as Promise<unknown>;
      memo.set(key, p);
      // Answers are shared; a caller that does not wait for one must not make it unhandled.
      p.catch(() => {});
    }
    return p;
  }) as Lookup;
  fn.resolver = resolver ? server(resolver) : `system (${r.getServers().join(', ') || 'none'})`;
  fn.cancel = () => r.cancel();
  return fn;
}

/** A lookup's outcome as data: the answers, or "none" (NXDOMAIN / no such record), or a failure. */
export type Answer<T> = { ok: true; value: T } | { ok: false; none: boolean; error: string };

export async function answer<T>(p: Promise<unknown>): Promise<Answer<T>> {
  try {
    return { ok: true, value: (await p) as T };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    return { ok: false, none: code === 'ENOTFOUND' || code === 'ENODATA', error: code ? `${code}` : (e as Error).message };
  }
}
