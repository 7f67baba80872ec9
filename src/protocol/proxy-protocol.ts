// PROXY protocol v1 and v2 (HAProxy's spec), read and written. Hand-written because
// smtp-server parses only v1 and no well-kept npm package covers both directions; the format
// is small and fixed. Pure functions over Buffers.
import net from 'node:net';

export interface ProxyAddresses {
  family: 4 | 6;
  source: string;
  sourcePort: number;
  dest: string;
  destPort: number;
}

export type ProxyParse =
  | { state: 'more' }
  | { state: 'done'; addresses: ProxyAddresses | null; rest: Buffer }
  | { state: 'error'; error: string };

const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX = 107;

/** Parse a PROXY header at the start of `buf`. `addresses` is null for LOCAL / UNKNOWN. */
export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (buf.length === 0) return { state: 'more' };
  const sigLen = Math.min(buf.length, V2_SIG.length);
  if (buf.subarray(0, sigLen).equals(V2_SIG.subarray(0, sigLen))) {
    return buf.length < 16 ? { state: 'more' } : parseV2(buf);
  }
  const pfx = Math.min(buf.length, 6);
  if (buf.subarray(0, pfx).toString('latin1') !== 'PROXY '.slice(0, pfx)) return { state: 'error', error: 'no PROXY header' };
  const end = buf.indexOf('\r\n');
  if (end < 0) return buf.length >= V1_MAX ? { state: 'error', error: 'PROXY v1 header too long' } : { state: 'more' };
  const parts = buf.subarray(0, end).toString('latin1').split(' ');
  const rest = buf.subarray(end + 2);
  if (parts[1] === 'UNKNOWN') return { state: 'done', addresses: null, rest };
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) return { state: 'error', error: 'malformed PROXY v1 header' };
  const family = parts[1] === 'TCP4' ? 4 : 6;
  const [, , source, dest, sp, dp] = parts;
  const sourcePort = Number(sp);
  const destPort = Number(dp);
  if (net.isIP(source) !== family || net.isIP(dest) !== family || !validPort(sourcePort) || !validPort(destPort)) {
    return { state: 'error', error: 'malformed PROXY v1 addresses' };
  }
  return { state: 'done', addresses: { family, source, sourcePort, dest, destPort }, rest };
}

function validPort(p: number): boolean {
  return Number.isInteger(p) && p >= 0 && p <= 65535;
}

function parseV2(buf: Buffer): ProxyParse {
  const verCmd = buf[12];
  if (verCmd >> 4 !== 2) return { state: 'error', error: 'unsupported PROXY v2 version' };
  const cmd = verCmd & 0x0f;
  const fam = buf[13];
  const len = buf.readUInt16BE(14);
  if (buf.length < 16 + len) return { state: 'more' };
  const body = buf.subarray(16, 16 + len);
  const rest = buf.subarray(16 + len);
  if (cmd === 0) return { state: 'done', addresses: null, rest }; // LOCAL: health check from the LB itself
  if (cmd !== 1) return { state: 'error', error: 'unsupported PROXY v2 command' };
  if (fam === 0x11 && len >= 12) {
    return {
      state: 'done',
      addresses: {
        family: 4,
        source: [...body.subarray(0, 4)].join('.'),
        dest: [...body.subarray(4, 8)].join('.'),
        sourcePort: body.readUInt16BE(8),
        destPort: body.readUInt16BE(10),
      },
      rest,
    };
  }
  if (fam === 0x21 && len >= 36) {
    return {
      state: 'done',
      addresses: { family: 6, source: ip6(body.subarray(0, 16)), dest: ip6(body.subarray(16, 32)), sourcePort: body.readUInt16BE(32), destPort: body.readUInt16BE(34) },
      rest,
    };
  }
  // UNSPEC or unix sockets: accept the connection, addresses unknown.
  return { state: 'done', addresses: null, rest };
}

function ip6(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  // Let the URL parser compress it canonically.
  return new URL(`http://[${groups.join(':')}]`).hostname.slice(1, -1);
}

function ip6Bytes(ip: string): Buffer {
  const [head, tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = ip.includes('::') && tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Normalise "::ffff:1.2.3.4" (how Node reports IPv4 on dual-stack sockets) to plain IPv4. */
export function plainIp(ip: string): string {
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

export function encodeV1(a: ProxyAddresses): Buffer {
  return Buffer.from(`PROXY TCP${a.family} ${a.source} ${a.dest} ${a.sourcePort} ${a.destPort}\r\n`, 'latin1');
}

export function encodeV2(a: ProxyAddresses): Buffer {
  const v4 = a.family === 4;
  const len = v4 ? 12 : 36;
  const out = Buffer.alloc(16 + len);
  V2_SIG.copy(out, 0);
  out[12] = 0x21; // version 2, PROXY
  out[13] = v4 ? 0x11 : 0x21; // TCP over IPv4 / IPv6
  out.writeUInt16BE(len, 14);
  if (v4) {
    Buffer.from(a.source.split('.').map(Number)).copy(out, 16);
    Buffer.from(a.dest.split('.').map(Number)).copy(out, 20);
    out.writeUInt16BE(a.sourcePort, 24);
    out.writeUInt16BE(a.destPort, 26);
  } else {
    ip6Bytes(a.source).copy(out, 16);
    ip6Bytes(a.dest).copy(out, 32);
    out.writeUInt16BE(a.sourcePort, 48);
    out.writeUInt16BE(a.destPort, 50);
  }
  return out;
}

export function encodeProxy(version: 'v1' | 'v2', a: ProxyAddresses): Buffer {
  return version === 'v1' ? encodeV1(a) : encodeV2(a);
}

export type ProxyRead = { ok: true; addresses: ProxyAddresses | null } | { ok: false; error: string };

/**
 * Read a PROXY header from a freshly accepted socket (both listener kinds use this). Bytes
 * after the header are put back, and the socket is left paused for whoever reads next.
 */
export function readProxyHeader(sock: import('node:net').Socket, timeoutMs: number): Promise<ProxyRead> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.off('data', onData);
      resolve({ ok: false, error: `no PROXY header within ${timeoutMs}ms` });
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const r = parseProxyHeader(buf);
      if (r.state === 'more') return;
      clearTimeout(timer);
      sock.off('data', onData);
      sock.pause();
      if (r.state === 'error') return resolve({ ok: false, error: r.error });
      if (r.rest.length) sock.unshift(r.rest);
      resolve({ ok: true, addresses: r.addresses });
    };
    sock.on('data', onData);
    sock.resume();
  });
}
