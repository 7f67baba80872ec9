// DNS discovery against a real DNS server on loopback: SRV (priority → backup, weight →
// weight) and A records, re-resolved when the TTL runs out.
import assert from 'node:assert/strict';
import { after, afterEach, test } from 'node:test';
import { freePort, greeting, startSink, startSmtplb, stopAll, waitFor } from './helpers/peers.js';
import { startDns } from './helpers/dns.js';

after(stopAll);
afterEach(stopAll);

async function servers(admin: number) {
  const s = (await (await fetch(`http://127.0.0.1:${admin}/api/status`, { headers: { authorization: 'Bearer test-token-1' } })).json()) as {
    pools: { servers: { name: string; address: string; weight: number; backup: boolean }[] }[];
  };
  return s.pools[0].servers.map((x) => `${x.address} w${x.weight}${x.backup ? ' backup' : ''}`).sort();
}

const config = (dnsPort: number, port: number, admin: number, discover: string) => `hostname: lb.test
log: { level: warn }
admin: { listen: 127.0.0.1:${admin}, token: test-token-1 }
listeners:
  - { name: p, listen: 127.0.0.1:${port}, mode: tcp, pool: relays }
pools:
  relays:
    discover: ${discover.replace('RESOLVER', `127.0.0.1:${dnsPort}`)}
    health: { check: smtp, interval: 500ms, timeout: 1s }
`;

test('SRV discovery: priorities and weights honoured, changes picked up after the TTL', async () => {
  const a = await startSink({ hostname: 'a.test' });
  const b = await startSink({ hostname: 'b.test' });
  const c = await startSink({ hostname: 'c.test' });
  const dns = await startDns([
    { type: 'SRV', name: '_smtp._tcp.relays.test', target: 'a.relays.test', port: a.port, priority: 10, weight: 3 },
    { type: 'SRV', name: '_smtp._tcp.relays.test', target: 'b.relays.test', port: b.port, priority: 10, weight: 1 },
    { type: 'SRV', name: '_smtp._tcp.relays.test', target: 'c.relays.test', port: c.port, priority: 20, weight: 1 },
    { type: 'A', name: 'a.relays.test', address: '127.0.0.1' },
    { type: 'A', name: 'b.relays.test', address: '127.0.0.1' },
    { type: 'A', name: 'c.relays.test', address: '127.0.0.1' },
  ]);
  const port = await freePort();
  const admin = await freePort();
  await startSmtplb(config(dns.port, port, admin, '{ srv: _smtp._tcp.relays.test, resolver: RESOLVER }'));
  await waitFor('discovered', async () => (await servers(admin)).length === 3);
  assert.deepEqual(await servers(admin), [`127.0.0.1:${a.port} w3`, `127.0.0.1:${b.port} w1`, `127.0.0.1:${c.port} w1 backup`].sort());
  const seen = { a: 0, b: 0, c: 0 };
  for (let i = 0; i < 40; i++) {
    const g = await greeting(port);
    for (const k of ['a', 'b', 'c'] as const) if (g.includes(`${k}.test`)) seen[k]++;
  }
  assert.deepEqual(seen, { a: 30, b: 10, c: 0 });
  // Records change: b leaves. With a 1 s TTL the pool follows within a couple of seconds.
  dns.records = dns.records.filter((r) => !(r.type === 'SRV' && r.target === 'b.relays.test'));
  await waitFor('b removed', async () => (await servers(admin)).length === 2, 5000);
  for (let i = 0; i < 5; i++) assert.match(await greeting(port), /a\.test/);
});

test('A discovery: every address serves on the given port; a DNS outage keeps the known servers', async () => {
  const port0 = await freePort();
  const s1 = await startSink({ hostname: 'one.test', port: port0, host: '127.0.0.1' });
  const s2 = await startSink({ hostname: 'two.test', port: port0, host: '127.0.0.2' });
  void s1;
  void s2;
  const dns = await startDns([
    { type: 'A', name: 'relays.test', address: '127.0.0.1' },
    { type: 'A', name: 'relays.test', address: '127.0.0.2' },
  ]);
  const port = await freePort();
  const admin = await freePort();
  await startSmtplb(config(dns.port, port, admin, `{ a: relays.test, port: ${port0}, resolver: RESOLVER }`));
  await waitFor('discovered', async () => (await servers(admin)).length === 2);
  const gs = await Promise.all(Array.from({ length: 6 }, () => greeting(port)));
  assert.equal(gs.filter((g) => g.includes('one.test')).length, 3);
  assert.equal(gs.filter((g) => g.includes('two.test')).length, 3);
  await dns.close();
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal((await servers(admin)).length, 2, 'servers kept through a DNS outage');
});

test('SRV discovery: a failed lookup of one target (SERVFAIL) or a silent resolver keeps every known server; a real change still applies', async () => {
  const a = await startSink({ hostname: 'a.test' });
  const b = await startSink({ hostname: 'b.test' });
  const dns = await startDns([
    { type: 'SRV', name: '_smtp._tcp.relays.test', target: 'a.relays.test', port: a.port, priority: 10, weight: 1 },
    { type: 'SRV', name: '_smtp._tcp.relays.test', target: 'b.relays.test', port: b.port, priority: 10, weight: 1 },
    { type: 'A', name: 'a.relays.test', address: '127.0.0.1' },
    { type: 'A', name: 'b.relays.test', address: '127.0.0.1' },
  ]);
  const port = await freePort();
  const admin = await freePort();
  await startSmtplb(config(dns.port, port, admin, '{ srv: _smtp._tcp.relays.test, resolver: RESOLVER }'));
  await waitFor('discovered', async () => (await servers(admin)).length === 2);
  const both = await servers(admin);

  // b's address lookup fails: before, b silently left the pool.
  dns.fault('servfail', 'b.relays.test', 'A');
  await waitFor('a refresh met the SERVFAIL', () => dns.faulted.some((q) => q === 'b.relays.test/A servfail'), 5000);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await servers(admin), both, 'b kept through its SERVFAIL');

  // Once DNS answers again, a real change (b removed) is applied.
  dns.clearFaults();
  dns.records = dns.records.filter((r) => !(r.type === 'SRV' && r.target === 'b.relays.test'));
  await waitFor('b removed', async () => (await servers(admin)).length === 1, 10_000);

  // The resolver drops every query: the pool stays as it is.
  dns.fault('drop');
  await waitFor('a refresh met the silent resolver', () => dns.faulted.some((q) => q.endsWith(' drop')), 5000);
  await new Promise((r) => setTimeout(r, 2500));
  assert.deepEqual(await servers(admin), [`127.0.0.1:${a.port} w1`]);
  assert.match(await greeting(port), /a\.test/);
});
