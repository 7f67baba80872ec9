// Direct-to-MX pools: MX preference order, the next MX when the first is down, A fallback,
// null MX, and several source addresses (with their own HELO names) balanced like servers.
// A real DNS server on loopback answers; smtp-sinks play the MX hosts on 127.0.0.x.
import assert from 'node:assert/strict';
import { after, afterEach, test } from 'node:test';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { freePort, startSink, startSmtplb, stopAll } from './helpers/peers.js';
import { startDns } from './helpers/dns.js';

after(stopAll);
afterEach(stopAll);

const base: Omit<SendOptions, 'server' | 'to'> = { from: 'app@client.test', headers: [], subject: 'direct', body: 'hello', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };

test('kind: mx delivers to the preferred MX from two source addresses, moves to the next MX when it is down, falls back to A, and bounces a null-MX domain', async () => {
  const port = await freePort();
  const mxA = await startSink({ host: '127.0.0.10', port, hostname: 'mx-a.one.test' });
  const mxB = await startSink({ host: '127.0.0.11', port, hostname: 'mx-b.one.test' });
  const dns = await startDns([
    { type: 'MX', name: 'one.test', exchange: 'mx-b.one.test', priority: 20 },
    { type: 'MX', name: 'one.test', exchange: 'mx-a.one.test', priority: 10 },
    { type: 'A', name: 'mx-a.one.test', address: '127.0.0.10' },
    { type: 'A', name: 'mx-b.one.test', address: '127.0.0.11' },
    { type: 'A', name: 'two.test', address: '127.0.0.11' },
    { type: 'MX', name: 'client.test', exchange: 'mx-b.one.test', priority: 10 },
    { type: 'MX', name: 'none.test', exchange: '', priority: 0 },
  ]);
  const lport = await freePort();
  await startSmtplb(`hostname: gw.test
log: { level: info, format: json }
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${lport}, mode: smtp, relay_networks: [127.0.0.1/32] }
pools:
  direct:
    kind: mx
    mx: { resolver: 127.0.0.1:${dns.port}, port: ${port} }
    tls: none
    sources:
      - { name: ip2, address: 127.0.0.2, helo: out2.gw.test }
      - { name: ip3, address: 127.0.0.3, helo: out3.gw.test }
routes:
  - { pool: direct }
queue: { retry: [1s], max_age: 1h }
`);
  const send = async (to: string, n: number) => {
    const r = await sendOne({ ...base, server: `127.0.0.1:${lport}`, to: [to] }, n);
    assert.ok(r.ok, r.ok ? '' : r.error);
  };
  for (let i = 0; i < 20; i++) await send(`u${i}@one.test`, i);
  const atA = await mxA.settle(20);
  assert.equal(mxB.count(), 0, 'the preferred MX takes everything while it is up');
  const from = (m: string) => /^X-Client-Addr: (\S+)/m.exec(m)?.[1];
  const helo = (m: string) => /^X-Helo-Args: (\S+)/m.exec(m)?.[1];
  const by2 = atA.filter((m) => from(m) === '127.0.0.2');
  const by3 = atA.filter((m) => from(m) === '127.0.0.3');
  assert.equal(by2.length + by3.length, 20);
  assert.ok(by2.length >= 5 && by3.length >= 5, `both sources used (${by2.length} / ${by3.length})`);
  assert.ok(by2.every((m) => helo(m) === 'out2.gw.test') && by3.every((m) => helo(m) === 'out3.gw.test'), 'each source says its own HELO');

  for (let i = 0; i < 3; i++) await send(`v${i}@two.test`, i);
  await mxB.settle(3);
  assert.ok(mxB.messages().every((m) => /^To: v\d@two\.test/m.test(m)), 'no MX: the domain\'s A record');

  await mxA.kill();
  for (let i = 0; i < 5; i++) await send(`w${i}@one.test`, i);
  await mxB.settle(8);

  await send('x@none.test', 0);
  const all = await mxB.settle(9);
  const dsn = all.find((m) => /^Content-Type: multipart\/report/m.test(m));
  assert.ok(dsn, 'the sender got a DSN');
  assert.match(dsn!, /x@none\.test/);
  assert.match(dsn!, /null MX/);
});
