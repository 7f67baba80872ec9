// A real DNS server on loopback (dns2's UDP server) answering from a table the test edits.
// A test can also make it fail, globally or per name (and type): answer SERVFAIL, REFUSED or
// NXDOMAIN, or drop the query (the client times out):
//
//   dns.fault('servfail', 'slow.test');        // every question about slow.test
//   dns.fault('drop', 'mx.slow.test', 'A');    // only its A question
//   dns.fault('refused');                      // everything ("*")
//   dns.fault(null, 'slow.test');              // back to answering from `records`
//   dns.clearFaults();
//
// An SOA record in `records` is put in the authority section of negative answers (NXDOMAIN,
// or NOERROR with nothing) for names under it, as real servers do (RFC 2308).
//
// TXT data longer than 255 bytes is sent as several character-strings, as zone files split it;
// a PTR record's name is the reverse name (`reverseName('192.0.2.10')`).
import DNS from 'dns2';
import net from 'node:net';
import { onStop } from './peers.js';

const { Packet } = DNS;

export type Rec =
  | { type: 'A'; name: string; address: string; ttl?: number }
  | { type: 'AAAA'; name: string; address: string; ttl?: number }
  | { type: 'SRV'; name: string; target: string; port: number; priority: number; weight: number; ttl?: number }
  | { type: 'MX'; name: string; exchange: string; priority: number; ttl?: number }
  | { type: 'SOA'; name: string; minimum: number; ttl?: number }
  | { type: 'TXT'; name: string; data: string | string[]; ttl?: number }
  | { type: 'PTR'; name: string; domain: string; ttl?: number };

export type Fault = 'servfail' | 'refused' | 'nxdomain' | 'drop';
export type QType = Rec['type'];

const RCODE: Record<Exclude<Fault, 'drop'>, number> = { servfail: 2, nxdomain: 3, refused: 5 };

export interface TestDns {
  port: number;
  records: Rec[];
  /** Every question received, "name/type-number", in order (dropped ones too). */
  queries: string[];
  /** Questions that got a fault instead of an answer: "name/TYPE fault". */
  faulted: string[];
  /** Faults in force, by "name/TYPE", "name" or "*". */
  faults: Map<string, Fault>;
  /** Set (or with null, clear) a fault for a name, a name and type, or (no name) every question. */
  fault(f: Fault | null, name?: string, type?: QType): void;
  clearFaults(): void;
  /** Set the AA bit in answers (off by default, as from a recursive resolver). */
  authoritative: boolean;
  close(): Promise<void>;
}

const TYPES = Packet.TYPE as Record<string, number>;
const typeName = (n: number) => Object.keys(TYPES).find((k) => TYPES[k] === n) ?? String(n);

export async function startDns(records: Rec[]): Promise<TestDns> {
  const faults = new Map<string, Fault>();
  const keyOf = (name?: string, type?: string) => (name ? `${name.toLowerCase().replace(/\.$/, '')}${type ? `/${type}` : ''}` : '*');
  const t: TestDns = {
    port: 0,
    records,
    queries: [],
    faulted: [],
    faults,
    authoritative: false,
    fault(f, name, type) {
      if (f) faults.set(keyOf(name, type), f);
      else faults.delete(keyOf(name, type));
    },
    clearFaults: () => faults.clear(),
    close: async () => {},
  };
  const server = DNS.createServer({
    udp: true,
    handle(request: { questions: { name: string; type: number }[] }, send: (r: unknown) => void) {
      const response = Packet.createResponseFromRequest(request as never) as { header: { rcode: number; aa: number }; answers: unknown[]; authorities: unknown[] };
      const [q] = request.questions;
      t.queries.push(`${q.name}/${q.type}`);
      const qname = q.name.toLowerCase().replace(/\.$/, '');
      const tname = typeName(q.type);
      const fault = faults.get(`${qname}/${tname}`) ?? faults.get(qname) ?? faults.get('*');
      if (fault) {
        t.faulted.push(`${qname}/${tname} ${fault}`);
        if (fault === 'drop') return;
        response.header.rcode = RCODE[fault];
      } else {
        for (const r of t.records) {
          if (r.name.toLowerCase() !== qname || TYPES[r.type] !== q.type) continue;
          const base = { name: r.name, type: TYPES[r.type], class: Packet.CLASS.IN, ttl: r.ttl ?? 1 };
          if (r.type === 'A' || r.type === 'AAAA') response.answers.push({ ...base, address: r.address } as never);
          else if (r.type === 'SRV') response.answers.push({ ...base, target: r.target, port: r.port, priority: r.priority, weight: r.weight } as never);
          else if (r.type === 'MX') response.answers.push({ ...base, exchange: r.exchange, priority: r.priority } as never);
          else if (r.type === 'TXT') response.answers.push({ ...base, data: (Array.isArray(r.data) ? r.data : [r.data]).flatMap((d) => d.match(/[^]{1,255}/g) ?? ['']) } as never);
          else if (r.type === 'PTR') response.answers.push({ ...base, domain: r.domain } as never);
          else response.answers.push({ ...base, ...soa(r) } as never);
        }
        response.header.aa = t.authoritative ? 1 : 0;
      }
      if (response.answers.length === 0 && response.header.rcode !== 2 && response.header.rcode !== 5) {
        const zone = t.records.filter((r): r is Extract<Rec, { type: 'SOA' }> => r.type === 'SOA' && (qname === r.name.toLowerCase() || qname.endsWith(`.${r.name.toLowerCase()}`))).sort((a, b) => b.name.length - a.name.length)[0];
        if (zone) response.authorities.push({ name: zone.name, type: TYPES.SOA, class: Packet.CLASS.IN, ttl: zone.ttl ?? 3600, ...soa(zone) } as never);
      }
      send(response);
    },
  } as never);
  await server.listen({ udp: { port: 0, address: '127.0.0.1' } } as never);
  t.port = (server.addresses() as { udp: { port: number } }).udp.port;
  t.close = async () => {
    await server.close();
  };
  onStop(t.close);
  return t;
}

/** The in-addr.arpa / ip6.arpa name of an address, where its PTR record lives. */
export function reverseName(ip: string): string {
  if (net.isIPv4(ip)) return `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
  const groups = ip.split('::');
  const head = groups[0] ? groups[0].split(':') : [];
  const tail = groups.length > 1 && groups[1] ? groups[1].split(':') : [];
  const full = [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  return `${full.map((g) => g.padStart(4, '0')).join('').split('').reverse().join('.')}.ip6.arpa`;
}

function soa(r: Extract<Rec, { type: 'SOA' }>) {
  return { primary: `ns.${r.name}`, admin: `hostmaster.${r.name}`, serial: 1, refresh: 3600, retry: 600, expiration: 86400, minimum: r.minimum };
}
