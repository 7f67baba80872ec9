// Direct-to-MX pools: MX preference order, the next MX when the first is down, A fallback,
// null MX, and several source addresses (with their own HELO names) balanced like servers.
// DNS failures: which are temporary (the mail waits) and which permanent (it bounces), the
// resolver's timeout and retries, and the MX cache.
// A real DNS server on loopback answers; smtp-sinks play the MX hosts on 127.0.0.x.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, test } from 'node:test';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { MxResolver, type MxAnswer } from '../src/discovery/mx.js';
import { queueIdle, TOKEN } from './helpers/admin.js';
import { freePort, startSink, startSmtplb, stopAll, tmpDir, waitFor } from './helpers/peers.js';
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

// ---- DNS failures: only NXDOMAIN, or a clean "no MX and no address", is permanent ----

test('MxResolver: SERVFAIL, REFUSED, timeouts and failed sub-queries are temporary; NXDOMAIN and a clean no-MX-no-address are permanent', async () => {
  const dns = await startDns([
    { type: 'SOA', name: 'test', minimum: 42, ttl: 3600 },
    { type: 'MX', name: 'ok.test', exchange: 'mx.ok.test', priority: 10, ttl: 300 },
    { type: 'A', name: 'mx.ok.test', address: '127.0.0.10', ttl: 300 },
    { type: 'MX', name: 'hostfail.test', exchange: 'mx.hostfail.test', priority: 10 },
    { type: 'A', name: 'fb.test', address: '127.0.0.12' },
    { type: 'AAAA', name: 'fb6.test', address: '::1' },
  ]);
  const r = new MxResolver({ host: '127.0.0.1', port: dns.port }, { timeout: 200, retries: 2 });
  const temp = (a: MxAnswer, re: RegExp) => {
    assert.equal(a.ok, false);
    assert.equal(!a.ok && a.permanent, false, JSON.stringify(a));
    assert.match(!a.ok ? a.reason : '', re);
  };
  const perm = (a: MxAnswer, re: RegExp) => {
    assert.equal(a.ok, false);
    assert.equal(!a.ok && a.permanent, true, JSON.stringify(a));
    assert.match(!a.ok ? a.reason : '', re);
  };

  assert.deepEqual(await r.lookup('ok.test'), { ok: true, targets: [{ host: 'mx.ok.test', ip: '127.0.0.10', preference: 10 }] });
  dns.fault('servfail', 'sf.test');
  temp(await r.lookup('sf.test'), /^4\.4\.3 .*sf\.test\/MX.*SERVFAIL/);
  dns.fault('refused', 'rf.test');
  temp(await r.lookup('rf.test'), /^4\.4\.3 .*REFUSED/);
  dns.fault('nxdomain', 'gone.test');
  perm(await r.lookup('gone.test'), /^5\.1\.2 .*gone\.test.*NXDOMAIN/);
  // No MX, no A, no AAAA, every answer NOERROR: the domain takes no mail (RFC 5321 5.1).
  perm(await r.lookup('empty.test'), /^5\.1\.2 .*no MX and no address/);
  // ... but a failure of any step on the way there is not an answer.
  dns.fault('servfail', 'nomx-a.test', 'A');
  temp(await r.lookup('nomx-a.test'), /nomx-a\.test\/A failed: SERVFAIL/);
  dns.fault('servfail', 'nomx-aaaa.test', 'AAAA');
  temp(await r.lookup('nomx-aaaa.test'), /nomx-aaaa\.test\/AAAA failed: SERVFAIL/);
  dns.fault('drop', 'nomx-drop.test', 'A');
  temp(await r.lookup('nomx-drop.test'), /nomx-drop\.test\/A failed: .*timed out/);
  dns.fault('servfail', 'mx.hostfail.test', 'A');
  temp(await r.lookup('hostfail.test'), /mx\.hostfail\.test\/A failed: SERVFAIL/);
  // The fallback to the domain's own addresses, A then AAAA.
  assert.deepEqual(await r.lookup('fb.test'), { ok: true, targets: [{ host: 'fb.test', ip: '127.0.0.12', preference: 0 }] });
  assert.deepEqual(await r.lookup('fb6.test'), { ok: true, targets: [{ host: 'fb6.test', ip: '::1', preference: 0 }] });

  // A silent resolver: timeout per try, retries honoured (1 + 2 queries), then temporary.
  dns.fault('drop', 'quiet.test');
  const before = dns.faulted.filter((q) => q.startsWith('quiet.test/MX')).length;
  const t0 = Date.now();
  temp(await r.lookup('quiet.test'), /^4\.4\.3 .*quiet\.test\/MX.*timed out after 200ms/);
  const took = Date.now() - t0;
  assert.equal(dns.faulted.filter((q) => q.startsWith('quiet.test/MX')).length - before, 3, 'one query and two retries');
  assert.ok(took >= 550 && took < 2000, `three 200 ms tries took ${took} ms`);
  const r0 = new MxResolver({ host: '127.0.0.1', port: dns.port }, { timeout: 200, retries: 0 });
  temp(await r0.lookup('quiet.test'), /timed out/);
  assert.equal(dns.faulted.filter((q) => q.startsWith('quiet.test/MX')).length - before, 4, 'retries: 0 asks once');
});

test('MxResolver cache: TTLs clamped to [5 s, 1 h], NXDOMAIN for the SOA negative TTL, temporary failures for 2 s, bounded, one query for concurrent lookups', async () => {
  const dns = await startDns([
    { type: 'SOA', name: 'test', minimum: 42, ttl: 3600 },
    { type: 'MX', name: 'short.test', exchange: 'mx.short.test', priority: 10, ttl: 1 },
    { type: 'A', name: 'mx.short.test', address: '127.0.0.10', ttl: 1 },
    { type: 'MX', name: 'long.test', exchange: 'mx.long.test', priority: 10, ttl: 86400 },
    { type: 'A', name: 'mx.long.test', address: '127.0.0.10', ttl: 86400 },
  ]);
  const r = new MxResolver({ host: '127.0.0.1', port: dns.port }, { timeout: 200, retries: 0, maxEntries: 3 });
  const mxQueries = (d: string) => dns.queries.filter((q) => q === `${d}/15`).length;
  const T = Date.now();
  await r.lookup('short.test', T);
  await r.lookup('short.test', T + 4_900);
  assert.equal(mxQueries('short.test'), 1, 'a 1 s TTL is kept 5 s');
  await r.lookup('short.test', T + 5_100);
  assert.equal(mxQueries('short.test'), 2);

  await r.lookup('long.test', T);
  await r.lookup('long.test', T + 3_599_000);
  assert.equal(mxQueries('long.test'), 1);
  await r.lookup('long.test', T + 3_601_000);
  assert.equal(mxQueries('long.test'), 2, 'a day-long TTL is kept an hour');

  dns.fault('nxdomain', 'new.test');
  assert.equal((await r.lookup('new.test', T)).ok, false);
  dns.fault(null, 'new.test');
  dns.records.push({ type: 'MX', name: 'new.test', exchange: 'mx.short.test', priority: 10 });
  const at41 = await r.lookup('new.test', T + 41_000);
  assert.ok(!at41.ok && at41.permanent, 'NXDOMAIN kept for the SOA minimum (42 s)');
  assert.equal((await r.lookup('new.test', T + 43_000)).ok, true);

  dns.fault('servfail', 'flaky.test');
  dns.records.push({ type: 'MX', name: 'flaky.test', exchange: 'mx.short.test', priority: 10 });
  assert.equal((await r.lookup('flaky.test', T)).ok, false);
  dns.fault(null, 'flaky.test');
  assert.equal((await r.lookup('flaky.test', T + 1_000)).ok, false, 'a failure is reused for 2 s (the tries of one delivery)');
  assert.equal((await r.lookup('flaky.test', T + 2_100)).ok, true, 'and no longer');

  // Bounded: 3 entries; the oldest goes first.
  assert.equal(r.cached, 3);
  const n = mxQueries('short.test');
  await r.lookup('short.test', T + 6_000); // evicted long ago: asked again
  assert.equal(mxQueries('short.test'), n + 1);
  assert.equal(r.cached, 3);

  // Concurrent lookups of one domain share one query.
  const fresh = new MxResolver({ host: '127.0.0.1', port: dns.port });
  const m = mxQueries('long.test');
  const all = await Promise.all(Array.from({ length: 10 }, () => fresh.lookup('LONG.test')));
  assert.ok(all.every((a) => a.ok));
  assert.equal(mxQueries('long.test'), m + 1);
});

test('kind: mx: a DNS outage (SERVFAIL, a failing MX host lookup, then timeouts) defers the mail, which goes out once when DNS recovers; NXDOMAIN bounces at once', async () => {
  const port = await freePort();
  const mx = await startSink({ host: '127.0.0.10', port, hostname: 'mx.slow.test' });
  const senderMx = await startSink({ host: '127.0.0.11', port, hostname: 'mx.client.test' });
  const dns = await startDns([
    { type: 'SOA', name: 'test', minimum: 30 },
    { type: 'MX', name: 'slow.test', exchange: 'mx.slow.test', priority: 10 },
    { type: 'A', name: 'mx.slow.test', address: '127.0.0.10' },
    { type: 'MX', name: 'client.test', exchange: 'mx.client.test', priority: 10 },
    { type: 'A', name: 'mx.client.test', address: '127.0.0.11' },
  ]);
  const dir = tmpDir('mx-dns-');
  const logFile = path.join(dir, 'delivery.log');
  const lport = await freePort();
  const admin = await freePort();
  await startSmtplb(
    `hostname: gw.test
log: { level: info, format: json }
spool: ./spool
delivery_log: { file: ${logFile} }
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${lport}, mode: smtp, relay_networks: [127.0.0.1/32] }
pools:
  direct:
    kind: mx
    mx: { resolver: 127.0.0.1:${dns.port}, port: ${port}, timeout: 300ms, retries: 1 }
    tls: none
    sources:
      - { name: ip2, address: 127.0.0.2 }
routes:
  - { pool: direct }
queue: { retry: [1s], max_age: 1h }
`,
    { dir },
  );
  const lines = () =>
    fs.existsSync(logFile)
      ? fs.readFileSync(logFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { event: string; recipient_domain: string; reply: string; code: number | null })
      : [];
  const events = (domain: string, event: string) => lines().filter((l) => l.recipient_domain === domain && l.event === event);
  const send = async (to: string) => {
    const r = await sendOne({ ...base, server: `127.0.0.1:${lport}`, to: [to] }, 0);
    assert.ok(r.ok, r.ok ? '' : r.error);
  };
  const attemptsMatching = (re: RegExp) => events('slow.test', 'attempt').filter((l) => re.test(l.reply)).length;

  dns.fault('servfail', 'slow.test');
  await send('u@slow.test');
  await waitFor('two SERVFAIL attempts', () => attemptsMatching(/^4\.4\.3 .*slow\.test\/MX failed: SERVFAIL/) >= 2, 15_000);

  // The MX answers, but its host's address lookup fails.
  dns.fault(null, 'slow.test');
  dns.fault('servfail', 'mx.slow.test', 'A');
  await waitFor('an attempt failing on the MX host lookup', () => attemptsMatching(/mx\.slow\.test\/A failed: SERVFAIL/) >= 1, 15_000);

  // The resolver goes silent.
  dns.clearFaults();
  dns.fault('drop', 'slow.test');
  await waitFor('an attempt failing on a DNS timeout', () => attemptsMatching(/slow\.test\/MX failed: .*timed out/) >= 1, 20_000);

  assert.equal(mx.count(), 0);
  assert.equal(senderMx.count(), 0, 'no DSN while DNS is failing');
  assert.equal(lines().filter((l) => l.event === 'bounced' || l.event === 'expired').length, 0, 'nothing bounced');
  assert.ok(events('slow.test', 'attempt').every((l) => l.code === null && /^4\.4\.[34] /.test(l.reply)), 'every failure was temporary');

  dns.clearFaults();
  const got = await mx.settle(1, 15_000);
  assert.match(got[0], /^To: u@slow\.test/m);
  await waitFor('delivered in the log', () => events('slow.test', 'delivered').length === 1);
  // Out of the queue and nothing in flight: no second copy or DSN can still come.
  await queueIdle(admin);
  assert.equal(mx.count(), 1, 'delivered once');
  assert.equal(events('slow.test', 'delivered').length, 1);
  assert.equal(senderMx.count(), 0, 'the sender got nothing');
  assert.equal(lines().filter((l) => l.event === 'bounced').length, 0);

  // NXDOMAIN: one attempt, one bounce, one DSN to the sender.
  dns.fault('nxdomain', 'gone.test');
  await send('x@gone.test');
  const dsns = await senderMx.settle(1, 10_000);
  assert.match(dsns[0], /^Content-Type: multipart\/report/m);
  assert.match(dsns[0], /x@gone\.test/);
  assert.match(dsns[0], /NXDOMAIN/);
  // The bounced message and its DSN out of the queue, nothing in flight: no second DSN can come.
  await queueIdle(admin);
  assert.equal(senderMx.count(), 1, 'one DSN');
  assert.equal(events('gone.test', 'attempt').length, 1, 'bounced on the first attempt');
  assert.equal(events('gone.test', 'bounced').length, 1);
  assert.equal(mx.count(), 1);
});
