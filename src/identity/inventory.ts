// What the configuration says about smtplb's sending identity, before any DNS is asked: the
// domains it sends mail for (DKIM domains, users' sender_domains, classes' sender_domains), the
// addresses mail leaves from (the `sources` of kind: mx pools with their HELO, the servers of
// relay pools), and which of those send each domain's mail (read from the routes). `smtplb
// doctor` and the background identity check both start here; everything in this module is a
// pure function of the config.
import net from 'node:net';
import type { Config, DiscoverConfig, PoolConfig, RouteConfig } from '../config/schema.js';
import { domainMatches } from '../routing/route.js';

export interface SendingDomain {
  domain: string;
  /** Why the doctor looks at it: "dkim", "user app", "class marketing", "--domain". */
  why: string[];
  dkim?: { selector: string; key_file: string; algorithm: string };
}

/**
 * One way out: a source of a kind: mx pool (an address smtplb binds to, with its HELO), a relay
 * pool's server (an address, or a host name to resolve), or a pool discovered through DNS.
 */
export interface EgressSpec {
  pool: string;
  /** "source" / "server" name, or the discovery name. */
  name: string;
  kind: 'source' | 'server' | 'discover';
  /** An IP address or a host name (servers), or the bind address (sources). */
  host?: string;
  /** The name this identity says in EHLO: known for sources only (relays say their own). */
  helo?: string;
  discover?: DiscoverConfig;
}

/** An egress identity once DNS has turned names into addresses. */
export interface Egress {
  pool: string;
  name: string;
  kind: EgressSpec['kind'];
  ip: string;
  helo?: string;
}

/** Names in config lists that are patterns, not one domain ("*.example.com", ".example.com"). */
export function isPattern(d: string): boolean {
  return d.startsWith('*') || d.startsWith('.');
}

const norm = (d: string) => d.toLowerCase().replace(/\.$/, '');

/** Every sending domain the config knows, in a stable order (patterns are skipped: no one record to check). */
export function sendingDomains(config: Config): SendingDomain[] {
  const out = new Map<string, SendingDomain>();
  const add = (domain: string, why: string) => {
    const d = norm(domain);
    if (!d || isPattern(d)) return;
    let e = out.get(d);
    if (!e) out.set(d, (e = { domain: d, why: [] }));
    if (!e.why.includes(why)) e.why.push(why);
    return e;
  };
  for (const [domain, k] of Object.entries(config.dkim?.domains ?? {})) {
    const e = add(domain, 'dkim');
    if (e) e.dkim = { selector: k.selector, key_file: k.key_file, algorithm: k.algorithm };
  }
  for (const u of config.users) for (const d of u.sender_domains ?? []) add(d, `user ${u.name}`);
  for (const [d, cls] of Object.entries(config.classes.sender_domains)) add(d, `class ${cls}`);
  return [...out.values()];
}

/** The DKIM key configured for a domain (the signer looks keys up by exact domain). */
export function dkimFor(config: Config, domain: string): SendingDomain['dkim'] {
  const k = Object.entries(config.dkim?.domains ?? {}).find(([d]) => norm(d) === norm(domain))?.[1];
  return k ? { selector: k.selector, key_file: k.key_file, algorithm: k.algorithm } : undefined;
}

/**
 * The classes mail from `domain` may carry: the class classes.sender_domains gives it, the
 * classes of users allowed to send as it, and every listener's class. A class only a client's
 * X-Traffic-Class header can set is not predictable from the config and is not counted.
 */
function classesOf(config: Config, domain: string): Set<string> {
  const out = new Set<string>();
  for (const [p, cls] of Object.entries(config.classes.sender_domains)) if (domainMatches(p, domain)) out.add(cls);
  for (const u of config.users) if (u.class && (!u.sender_domains || u.sender_domains.some((p) => domainMatches(p, domain)))) out.add(u.class);
  for (const l of config.listeners) if (l.class) out.add(l.class);
  return out;
}

/**
 * Whether a route can carry mail whose sender domain is `domain`, and whether it then takes all
 * of it (no later route is reached). Routes keyed on the recipient's domain or the listener
 * may carry any sender's mail; `sender_domains`, `user` and `class` narrow it.
 */
export function routeCarries(config: Config, r: RouteConfig, domain: string): { carries: boolean; all: boolean } {
  if (r.sender_domains && !r.sender_domains.some((p) => domainMatches(p, domain))) return { carries: false, all: false };
  if (r.user !== undefined) {
    const u = config.users.find((x) => x.name === r.user);
    if (!u || (u.sender_domains && !u.sender_domains.some((p) => domainMatches(p, domain)))) return { carries: false, all: false };
  }
  if (r.class !== undefined && !classesOf(config, domain).has(r.class)) return { carries: false, all: false };
  const narrowed = r.domains !== undefined || r.user !== undefined || r.class !== undefined || r.listener !== undefined;
  return { carries: true, all: !narrowed };
}

/** The pools that may send `domain`'s mail: each route that can carry it, with its fallbacks. */
export function poolsFor(config: Config, domain: string): string[] {
  const out: string[] = [];
  const add = (name: string | undefined) => {
    for (let hops = 0; name && config.pools[name] && !out.includes(name) && hops < 100; hops++) {
      out.push(name);
      name = config.pools[name].fallback;
    }
  };
  for (const r of config.routes) {
    const c = routeCarries(config, r, domain);
    if (!c.carries) continue;
    add(r.pool);
    if (c.all) break;
  }
  return out;
}

/** The egress identities of one pool, as configured. */
export function poolEgress(config: Config, name: string, pool: PoolConfig): EgressSpec[] {
  if (pool.kind === 'mx') return pool.sources.map((s) => ({ pool: name, name: s.name ?? s.address, kind: 'source' as const, host: s.address, helo: s.helo ?? pool.helo ?? config.hostname }));
  const out: EgressSpec[] = pool.servers.map((s) => ({ pool: name, name: s.name ?? s.address.host, kind: 'server' as const, host: s.address.host }));
  if (pool.discover) out.push({ pool: name, name: pool.discover.a ?? pool.discover.srv ?? name, kind: 'discover', discover: pool.discover });
  return out;
}

/** Every pool's egress identities, by pool name. */
export function egressByPool(config: Config): Map<string, EgressSpec[]> {
  return new Map(Object.entries(config.pools).map(([n, p]) => [n, poolEgress(config, n, p)]));
}

/** Names that never resolve on the Internet (RFC 2606, RFC 6761): test and documentation zones. */
export function isReservedName(name: string): boolean {
  const n = norm(name);
  return /(^|\.)(test|example|invalid|localhost)$/.test(n) || /(^|\.)example\.(com|net|org)$/.test(n);
}

/**
 * True when everything to check is under reserved names, private or documentation addresses: asking the
 * system's resolver about them tells nothing (and sends a test setup's queries off the
 * machine), so the background check skips them unless a resolver is configured.
 */
export function onlyReservedNames(config: Config): boolean {
  if (!sendingDomains(config).every((d) => isReservedName(d.domain))) return false;
  return [...egressByPool(config).values()].flat().every((s) => (s.host !== undefined && net.isIP(s.host) !== 0 ? isPrivateAddress(s.host) || isDocumentationAddress(s.host) : isReservedName(s.host ?? s.name ?? '')));
}

const DOCUMENTATION = (() => {
  const b = new net.BlockList();
  for (const [a, p] of [['192.0.2.0', 24], ['198.51.100.0', 24], ['203.0.113.0', 24]] as const) b.addSubnet(a, p, 'ipv4');
  b.addSubnet('2001:db8::', 32, 'ipv6');
  return b;
})();

/**
 * An address reserved for documentation and examples (RFC 5737 TEST-NET-1/2/3, RFC 3849
 * 2001:db8::/32): no one sends from it, so like a reserved name it is not worth asking the
 * system's resolver about. Not a private address: a configured resolver still checks it.
 */
export function isDocumentationAddress(ip: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return DOCUMENTATION.check(mapped[1], 'ipv4');
  return net.isIPv4(ip) ? DOCUMENTATION.check(ip, 'ipv4') : net.isIPv6(ip) ? DOCUMENTATION.check(ip, 'ipv6') : false;
}

/** True when there is nothing to look up: no sending domain, and every egress address is a private IP literal. */
export function nothingToCheck(config: Config): boolean {
  if (sendingDomains(config).length) return false;
  return [...egressByPool(config).values()].flat().every((s) => s.host !== undefined && net.isIP(s.host) !== 0 && isPrivateAddress(s.host));
}

const PRIVATE = (() => {
  const b = new net.BlockList();
  for (const [a, p] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.168.0.0', 16]] as const) b.addSubnet(a, p, 'ipv4');
  for (const [a, p] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10]] as const) b.addSubnet(a, p, 'ipv6');
  return b;
})();

/**
 * An address receivers never see mail come from: loopback, private (RFC 1918, RFC 4193),
 * link-local, carrier-grade NAT. Mail through such an address reaches the Internet through
 * some other address smtplb does not know, so SPF and PTR are not checked for it.
 */
export function isPrivateAddress(ip: string): boolean {
  const family = net.isIPv4(ip) ? 'ipv4' : net.isIPv6(ip) ? 'ipv6' : null;
  if (!family) return false;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return PRIVATE.check(mapped[1], 'ipv4');
  return PRIVATE.check(ip, family);
}

/** The reverse-DNS name of an address: 4.3.2.1.in-addr.arpa, or nibbles under ip6.arpa. */
export function reverseName(ip: string): string {
  if (net.isIPv4(ip)) return `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
  const [head, tail = ''] = ip.toLowerCase().split('::');
  const h = head ? head.split(':') : [];
  const t = ip.includes('::') && tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return `${groups.map((g) => g.padStart(4, '0')).join('').split('').reverse().join('.')}.ip6.arpa`;
}
