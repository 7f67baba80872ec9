// Who a client is, for per-client limits (connections, AUTH failures): an IPv4 address, or an
// IPv6 /64 — one host's share of IPv6 space, which a client can rotate through at will — and
// bounded tables to count them in, so a flood of addresses cannot grow memory without end.
import net from 'node:net';

/** The limit key of a client address: the IPv4 address, or the IPv6 /64 ("2001:db8:1:2::/64"). */
export function clientKey(ip: string): string {
  const v4mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (v4mapped) return v4mapped[1];
  if (net.isIPv6(ip)) return `${expand(ip).slice(0, 4).join(':')}::/64`;
  return ip;
}

function expand(ip: string): string[] {
  const [head, tail] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => parseInt(g, 16).toString(16));
}

/**
 * A Map with a ceiling: past `max` entries, entries `stale` says may go are dropped first,
 * then the oldest. Insertion order is Map's own, so the oldest is the first key.
 */
export class BoundedMap<V> extends Map<string, V> {
  constructor(private max: number, private stale: (v: V) => boolean = () => true) {
    super();
  }

  override set(key: string, value: V): this {
    if (!this.has(key) && this.size >= this.max) this.evict();
    return super.set(key, value);
  }

  private evict(): void {
    for (const [k, v] of this) if (this.stale(v)) this.delete(k);
    while (this.size >= this.max) this.delete(this.keys().next().value as string);
  }
}
