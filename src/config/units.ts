// Parsing of the small value languages used in the config: durations, host:port addresses,
// CIDR networks and rates. Pure functions; they throw Error with a user-facing message.
import net from 'node:net';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "500ms", "2s", "5m", "1h", "5d", or a bare number of milliseconds → milliseconds. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new Error(`not a valid duration: ${value}`);
    return value;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value);
  if (!m) throw new Error(`not a valid duration: "${value}" (write e.g. 500ms, 2s, 5m, 1h, 5d)`);
  return Math.round(parseFloat(m[1]) * DURATION_UNITS[m[2]]);
}

export interface HostPort { host: string; port: number }

/** "host:port", "[::1]:25" or ":25" → { host, port }. */
export function parseAddress(value: string, defaultHost = '0.0.0.0'): HostPort {
  let host: string;
  let portText: string;
  const bracket = /^\[([^\]]+)\]:(\d+)$/.exec(value);
  if (bracket) {
    host = bracket[1];
    portText = bracket[2];
  } else {
    const i = value.lastIndexOf(':');
    if (i < 0) throw new Error(`not a valid address: "${value}" (write host:port)`);
    host = value.slice(0, i) || defaultHost;
    portText = value.slice(i + 1);
    if (host.includes(':')) throw new Error(`not a valid address: "${value}" (write IPv6 as [addr]:port)`);
  }
  if (!/^\d+$/.test(portText)) throw new Error(`not a valid port in "${value}"`);
  const port = Number(portText);
  if (port < 1 || port > 65535) throw new Error(`port out of range in "${value}" (1-65535)`);
  if (!net.isIP(host) && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host)) {
    throw new Error(`not a valid host in "${value}"`);
  }
  return { host, port };
}

export function formatAddress(a: HostPort): string {
  return net.isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export interface Cidr { family: 4 | 6; bits: bigint; prefix: number }

function ipToBigInt(ip: string): { family: 4 | 6; value: bigint } {
  if (net.isIPv4(ip)) {
    const v = ip.split('.').reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n);
    return { family: 4, value: v };
  }
  if (net.isIPv6(ip)) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
    if (mapped) return ipToBigInt(mapped[1]);
    const [head, tail = ''] = ip.split('::');
    const h = head ? head.split(':') : [];
    const t = ip.includes('::') ? (tail ? tail.split(':') : []) : [];
    const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
    const v = groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
    return { family: 6, value: v };
  }
  throw new Error(`not an IP address: "${ip}"`);
}

/** "10.0.0.0/8", "127.0.0.1", "::1/128" → Cidr. */
export function parseCidr(value: string): Cidr {
  const [ip, prefixText] = value.split('/');
  const { family, value: bits } = ipToBigInt(ip);
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (prefixText !== undefined && !/^\d+$/.test(prefixText))) {
    throw new Error(`not a valid network: "${value}"`);
  }
  return { family, bits, prefix };
}

export function cidrContains(cidr: Cidr, ip: string): boolean {
  let parsed;
  try {
    parsed = ipToBigInt(ip);
  } catch {
    return false;
  }
  if (parsed.family !== cidr.family) return false;
  const width = BigInt(cidr.family === 4 ? 32 : 128);
  const shift = width - BigInt(cidr.prefix);
  return parsed.value >> shift === cidr.bits >> shift;
}

export function inNetworks(networks: Cidr[], ip: string): boolean {
  return networks.some((c) => cidrContains(c, ip));
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3 };

/** "25MB", "512k", 1048576 → bytes. */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = m?.[2].toLowerCase() ?? 'x';
  if (!m || !(unit in SIZE_UNITS)) throw new Error(`not a valid size: "${value}" (write e.g. 25MB, 512KB)`);
  return Math.round(parseFloat(m[1]) * SIZE_UNITS[unit]);
}

export interface Rate { count: number; perMs: number }

/** A rate as messages per minute, two decimals (status and the API speak per minute). */
export function perMinute(r: Rate): number {
  return +((r.count * 60_000) / r.perMs).toFixed(2);
}

const RATE_UNITS: Record<string, number> = { s: 1000, sec: 1000, second: 1000, m: 60_000, min: 60_000, minute: 60_000, h: 3_600_000, hour: 3_600_000, d: 86_400_000, day: 86_400_000 };

/** "600/min", "20000/hour", "10/s" → { count, perMs }. */
export function parseRate(value: string | number): Rate {
  const m = /^\s*(\d+(?:\.\d+)?)\s*\/\s*([a-z]+)\s*$/i.exec(String(value));
  const per = m ? RATE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || !per || parseFloat(m[1]) <= 0) throw new Error(`not a valid rate: "${value}" (write e.g. 10/s, 600/min, 20000/hour)`);
  return { count: parseFloat(m[1]), perMs: per };
}

/** "2026-11-27" → midnight UTC of that day, in ms. */
export function parseDay(value: string): number {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value.trim());
  const t = m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : NaN;
  if (!m || Number.isNaN(t) || new Date(t).getUTCDate() !== Number(m[3])) throw new Error(`not a valid date: "${value}" (write YYYY-MM-DD)`);
  return t;
}
