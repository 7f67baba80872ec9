// DNS for the identity checks: one function, `lookup(name, type)`, answering as
// `dns.promises.resolve` does (TXT as arrays of strings, MX as { exchange, priority }, errors
// with codes ENOTFOUND / ENODATA / ETIMEOUT / ESERVFAIL …), because that is the resolver shape
// mailauth's SPF, DMARC and MTA-STS code accepts. node:dns's Resolver is used rather than
// discovery/dns.ts's DnsClient: it already speaks TXT and PTR, falls back to TCP for large
// answers, and takes a resolver on any port (`setServers(['127.0.0.1:5353'])`), with a per-try
// timeout and tries. One run of the checks asks many overlapping questions (every egress
// address is evaluated against the same SPF includes), so answers are memoised for the run.
import { Resolver, lookup as dnsLookup } from 'node:dns/promises';
import net from 'node:net';
import type { Config } from '../config/schema.js';
import { parseAddress, type HostPort } from '../config/units.js';

export type Lookup = ((name: string, type: string) => Promise<unknown>) & { resolver: string; cancel(): void; /** Settles once the resolver can be asked (its name looked up); rejects when it cannot. */ ready?: Promise<void> };

/** `--resolver` given something other than an IP address (and port): the CLI prints its message, not a stack. */
export class ResolverFlagError extends Error {}

/** "IP", "IP:PORT", "[v6]:PORT" or a bare IPv6 address → host and port (53 by default). Names are refused: the flag says which server to ask. */
export function parseResolver(text: string): HostPort {
  const t = text.trim();
  if (net.isIP(t)) return { host: t, port: 53 };
  const refuse = () => new ResolverFlagError(`--resolver: "${text}" is not an IP address (write 127.0.0.1, 127.0.0.1:5353 or [::1]:53)`);
  if (!t.includes(':')) throw refuse();
  let a: HostPort;
  try {
    a = parseAddress(t);
  } catch {
    throw refuse();
  }
  if (!net.isIP(a.host)) throw refuse();
  return a;
}

/** The resolver the checks use: the one given, else `doctor.resolver`, else a kind: mx pool's `mx.resolver`, else the system's. */
export function chooseResolver(config: Config, given?: HostPort): HostPort | undefined {
  if (given) return given;
  if (config.doctor?.resolver) return config.doctor.resolver;
  return Object.values(config.pools).find((p) => p.kind === 'mx' && p.mx.resolver)?.mx.resolver;
}

const server = (a: HostPort) => (net.isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`);

/**
 * The lookup function for one run. A resolver given by name (`doctor.resolver: ns1.example:53`,
 * or a kind: mx pool's `mx.resolver`, which accepts names) is looked up first, through the
 * system (node:dns's Resolver takes IP addresses only); `ready` settles when that is done, and
 * rejects with a message naming the resolver when the name does not resolve.
 */
export function createLookup(resolver: HostPort | undefined, opts: { timeout?: number; tries?: number } = {}): Lookup {
  const r = new Resolver({ timeout: opts.timeout ?? 2000, tries: opts.tries ?? 2 });
  let ready: Promise<void> = Promise.resolve();
  if (resolver && net.isIP(resolver.host)) r.setServers([server(resolver)]);
  else if (resolver) {
    ready = dnsLookup(resolver.host).then(
      ({ address }) => r.setServers([server({ host: address, port: resolver.port })]),
      (e: NodeJS.ErrnoException) => {
        throw new Error(`the resolver ${server(resolver)} does not resolve to an address (${e.code ?? e.message}); give its IP address`);
      },
    );
    ready.catch(() => {});
  }
  const memo = new Map<string, Promise<unknown>>();
  const fn = ((name: string, type: string) => {
    const key = `${type.toUpperCase()} ${name.toLowerCase().replace(/\.$/, '')}`;
    let p = memo.get(key);
    if (!p) {
      p = ready.then(() => r.resolve(name, type.toUpperCase() as 'TXT')) as Promise<unknown>;
      memo.set(key, p);
      // Answers are shared; a caller that does not wait for one must not make it unhandled.
      p.catch(() => {});
    }
    return p;
  }) as Lookup;
  fn.resolver = resolver ? server(resolver) : `system (${r.getServers().join(', ') || 'none'})`;
  fn.cancel = () => r.cancel();
  fn.ready = ready;
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
