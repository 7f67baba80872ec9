// A real DNS server on loopback (dns2's UDP server) answering from a table the test edits.
import DNS from 'dns2';
import { onStop } from './peers.js';

const { Packet } = DNS;

export type Rec =
  | { type: 'A'; name: string; address: string; ttl?: number }
  | { type: 'SRV'; name: string; target: string; port: number; priority: number; weight: number; ttl?: number }
  | { type: 'MX'; name: string; exchange: string; priority: number; ttl?: number };

export interface TestDns { port: number; records: Rec[]; queries: string[]; close(): Promise<void> }

export async function startDns(records: Rec[]): Promise<TestDns> {
  const t: TestDns = { port: 0, records, queries: [], close: async () => {} };
  const server = DNS.createServer({
    udp: true,
    handle(request: { questions: { name: string; type: number }[] }, send: (r: unknown) => void) {
      const response = Packet.createResponseFromRequest(request as never) as { answers: unknown[] };
      const [q] = request.questions;
      t.queries.push(`${q.name}/${q.type}`);
      for (const r of t.records) {
        if (r.name.toLowerCase() !== q.name.toLowerCase() || (Packet.TYPE as Record<string, number>)[r.type] !== q.type) continue;
        const base = { name: r.name, type: (Packet.TYPE as Record<string, number>)[r.type], class: Packet.CLASS.IN, ttl: r.ttl ?? 1 };
        if (r.type === 'A') response.answers.push({ ...base, address: r.address } as never);
        else if (r.type === 'SRV') response.answers.push({ ...base, target: r.target, port: r.port, priority: r.priority, weight: r.weight } as never);
        else response.answers.push({ ...base, exchange: r.exchange, priority: r.priority } as never);
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
