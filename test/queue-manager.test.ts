// The queue manager under the conditions real senders live in: mail waiting on a suspension
// still expires, a reload's routes apply to mail already queued, cut-through never answers 4xx
// after an upstream took part of a message, and status comes from counters. Real peers:
// smtp-sink upstreams, swaks clients, smtplb as a child process.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { api, queueIdle, reload, TOKEN } from './helpers/admin.js';
import type { GatewayStatus, RelayStatus } from '../src/admin/api-types.js';
import { after, afterEach, test } from 'node:test';
import { freePort, greeting, runCli, smtpSource, startSink, startSmtplb, stopAll, swaks, timingTest, waitFor } from './helpers/peers.js';
import { startSmtplbSink } from './helpers/sink.js';

after(stopAll);
afterEach(stopAll);

/** `/api/status` with the relay's part (src/admin/api-types.ts, the API's contract). */
type QueueStatus = GatewayStatus & RelayStatus;

test('a suspended destination past max_age bounces once; other mail keeps flowing', async () => {
  const [port, admin] = [await freePort(), await freePort()];
  const dest = await startSink();
  const bounces = await startSink();
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: d1, address: 127.0.0.1:${dest.port} } ] }
  back: { servers: [ { name: b1, address: 127.0.0.1:${bounces.port} } ] }
routes:
  - { domains: [sender.test], pool: back }
  - { pool: out }
queue: { retry: [1s], max_age: 3s }
`);
  const s = runCli(['suspend', 'held.test', '--pool', 'out', '--for', '2h', '--reason', 'complaints', '-c', lb.file]);
  assert.equal(s.code, 0, s.stderr);
  const r = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@sender.test', '--to', 'x@held.test', '--header', 'Subject: waits on a suspension']);
  assert.match(r.stdout, /<- {2}250 /);
  const other = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@sender.test', '--to', 'y@open.test']);
  assert.match(other.stdout, /<- {2}250 /);
  await dest.settle(1);
  const [dsn] = await bounces.settle(1, 15_000);
  assert.match(dsn, /Final-Recipient: rfc822; ?x@held\.test/i);
  assert.match(dsn, /Action: failed/);
  assert.match(dsn, /suspen/i, 'the DSN says why it waited');
  assert.match(dsn, /Subject: waits on a suspension/);
  // Once the queue is empty (the bounced message and its DSN gone) and nothing is in flight, no
  // later sweep can bounce it again or send it out.
  await queueIdle(admin);
  assert.equal(bounces.count(), 1, 'one bounce, not one per sweep');
  assert.equal(dest.count(), 1, 'the held message never went out');
  const st = await api<QueueStatus>(admin, '/api/status');
  assert.equal(st.queue.destinations.length, 0, JSON.stringify(st.queue));
});

test('a reload that removes a pool and routes its domain elsewhere delivers the queued mail through the new pool', async () => {
  const [port, admin, dead] = [await freePort(), await freePort(), await freePort()];
  const fresh = await startSink();
  const config = (routes: string, pools: string) => `hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
${pools}
  fresh: { servers: [ { name: f1, address: 127.0.0.1:${fresh.port} } ] }
routes:
${routes}
  - { pool: fresh }
queue: { retry: [1s], max_age: 1h }
`;
  const lb = await startSmtplb(config('  - { domains: [moving.test], pool: old }', `  old: { retries: 0, servers: [ { name: o1, address: 127.0.0.1:${dead} } ] }`));
  for (let i = 0; i < 5; i++) {
    const r = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@client.test', '--to', `u${i}@moving.test`]);
    assert.match(r.stdout, /<- {2}250 /);
  }
  // Tried on the old pool and deferred; the counters say so without a scan.
  await waitFor('deferred on the old pool', async () => {
    const st = await api<QueueStatus>(admin, '/api/status');
    const d = st.queue.destinations.find((x) => x.pool === 'old' && x.destination === 'moving.test');
    return d?.queued === 5 && st.queue.counts.queued === 5;
  }, 30_000);
  const q = JSON.parse(runCli(['queue', 'list', '--domain', 'moving.test', '--json', '-c', lb.file]).stdout) as { messages: { recipients: { attempts: number }[] }[] };
  await waitFor('attempted', () => q.messages.every((m) => m.recipients[0].attempts >= 1) || JSON.parse(runCli(['queue', 'list', '--domain', 'moving.test', '--json', '-c', lb.file]).stdout).messages.every((m: { recipients: { attempts: number }[] }) => m.recipients[0].attempts >= 1));
  assert.equal(fresh.count(), 0);

  fs.writeFileSync(lb.file, config('  - { domains: [moving.test], pool: fresh }', ''));
  lb.reload();
  await fresh.settle(5, 10_000);
  const explain = runCli(['route', 'explain', 'u1@moving.test', '-c', lb.file]);
  assert.match(explain.stdout, /fresh/);
  await waitFor('queue empty', async () => (await api<QueueStatus>(admin, '/api/status')).queue.counts.queued === 0);
  // Nothing queued and no delivery in flight: no second copy can still be on its way.
  await queueIdle(admin);
  assert.equal(fresh.count(), 5, 'each message once');
});

test('cut-through to two destinations: never a 4xx after an upstream accepted, no recipient gets two copies', async () => {
  const [port, admin, dead] = [await freePort(), await freePort(), await freePort()];
  const one = await startSink();
  const config = (minFree: string) => `hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, delivery: cutthrough, relay_networks: [127.0.0.0/8] }
pools:
  one: { servers: [ { name: s1, address: 127.0.0.1:${one.port} } ] }
  two: { retries: 0, servers: [ { name: s2, address: 127.0.0.1:${dead} } ] }
routes:
  - { domains: [one.test], pool: one }
  - { pool: two }
queue: { retry: [1h], max_age: 2h, min_free: ${minFree} }
`;
  // The spool cannot take the part that two.test would leave behind.
  const lb = await startSmtplb(config('1000000GB'));
  const send = () => swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@client.test', '--to', 'a@one.test,b@two.test']);
  const first = await send();
  assert.match(first.stdout, /<\*\* 452 4\.3\.1/, first.stdout);
  // Stays: a window for a relay that should not happen (nothing is queued to wait on).
  await new Promise((res) => setTimeout(res, 500));
  assert.equal(one.count(), 0, 'nothing relayed to one.test before the rest could be made durable');

  // Space again: the client retries, one.test gets its copy at once, two.test waits in the queue.
  fs.writeFileSync(lb.file, config('0'));
  assert.equal(await reload(lb, admin), 'applied');
  const second = await send();
  assert.match(second.stdout, /<- {2}250 .*1 relayed at once, 1 queued/, second.stdout);
  await one.settle(1);
  const st = await api<QueueStatus>(admin, '/api/status');
  assert.deepEqual(st.queue.destinations.map((d) => [d.pool, d.destination, d.queued]), [['two', 'two.test', 1]]);
  // Stays: two.test's part stays queued (retry 1h), so there is no empty queue to wait for.
  await new Promise((res) => setTimeout(res, 1000));
  assert.equal(one.count(), 1, 'a@one.test got exactly one copy');
});

test('cut-through: an operator deletes the message while its upstream is taking it; the client still gets 250, the process keeps serving', async () => {
  const [port, admin] = [await freePort(), await freePort()];
  const slow = await startSmtplbSink({ rules: ['domain=slow.test,data_delay=2s'] });
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, delivery: cutthrough, relay_networks: [127.0.0.0/8] }
pools:
  slow: { servers: [ { name: s1, address: 127.0.0.1:${slow.port} } ] }
routes: [ { pool: slow } ]
`);
  const sending = swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@client.test', '--to', 'a@slow.test,b@slow.test']);
  const id = await waitFor('the message in the queue, in flight', async () => (await api<{ messages: { id: string }[] }>(admin, '/api/queue')).messages[0]?.id, 5000);
  const del = await fetch(`http://127.0.0.1:${admin}/api/queue/${id}/delete`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(del.status, 200);
  const r = await sending;
  assert.match(r.stdout, /<- {2}250 /, r.stdout);
  assert.doesNotMatch(r.stdout, /<\*\* 4/, 'never a 4xx after the upstream accepted');
  assert.equal((await slow.stats()).messages, 1, 'the upstream got it once');
  assert.equal(lb.proc.exitCode, null);
  assert.match(await greeting(port), /^220 /);
});

timingTest('20,000 queued for a destination at concurrency 1 on a slow upstream: 10 messages to another domain arrive within 2 s, on the same pool and on another', async () => {
  const [port, admin] = [await freePort(), await freePort()];
  const slow = await startSink({ args: ['-w', '1'] }); // answers each DATA after 1 s
  const fast = await startSink();
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  slow: { servers: [ { name: s1, address: 127.0.0.1:${slow.port} } ] }
  fast: { servers: [ { name: f1, address: 127.0.0.1:${fast.port} } ] }
routes:
  - { domains: [other.test], pool: fast }
  - { pool: slow }
shaping:
  dest.test: { concurrency: 1 }
queue: { retry: [1h], max_age: 2h }
`);
  // 20 sessions that each send their share (-d): 20,000 connections would leave as many
  // TIME_WAIT sockets to the same port, and the clients below need local ports too.
  const load = await smtpSource(port, 20_000, 20, ['-d']);
  assert.equal(load.code, 0, load.stderr);
  const st = await api<QueueStatus>(admin, '/api/status');
  const backlog = st.queue.destinations.find((d) => d.destination === 'dest.test');
  assert.ok(backlog && backlog.queued >= 19_900, `the backlog is there: ${JSON.stringify(st.queue.destinations)}`);
  const slowBefore = slow.count();
  const sends = [];
  for (let i = 0; i < 10; i++) {
    sends.push(swaks(['--server', `127.0.0.1:${port}`, '--from', 'reset@client.test', '--to', `same${i}@samepool.test`, '--header', 'Subject: password reset']));
    sends.push(swaks(['--server', `127.0.0.1:${port}`, '--from', 'reset@client.test', '--to', `other${i}@other.test`, '--header', 'Subject: password reset']));
  }
  for (const r of await Promise.all(sends)) assert.match(r.stdout, /<- {2}250 /, `swaks exited ${r.code}: ${r.stderr}`);
  // From the moment the last client heard 250 (swaks start-up time is not the queue's).
  const started = Date.now();
  await waitFor('10 at the other pool', () => fast.count() >= 10, 2_000, 20);
  // The same slow pool: its other destination has its own slots; each reply takes the sink's 1 s.
  await waitFor('10 of the other domain on the same pool', () => slow.messages().filter((m) => /^To: same\d@samepool\.test/m.test(m)).length >= 10, 2_500, 20);
  const took = Date.now() - started;
  assert.ok(took < 2_000, `took ${took} ms`);
  assert.ok(slow.count() - slowBefore <= 25, 'the backlog still goes one at a time');
  await lb.stop();
});

timingTest('a 1 MB reply line and a 1,000-line reply from an upstream: another listener greets within 100 ms throughout, and the stored reply is cut', async () => {
  const [port, other, admin] = [await freePort(), await freePort(), await freePort()];
  const mta = await startSmtplbSink({ rules: ['domain=long.test,long_reply=1MB', 'domain=many.test,multiline_reply=1000'] });
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
  - { name: other, listen: 127.0.0.1:${other}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: m1, address: 127.0.0.1:${mta.port} } ] }
routes:
  - { pool: out }
queue: { retry: [500ms], max_age: 1h }
`);
  for (let i = 0; i < 5; i++) {
    for (const d of ['long.test', 'many.test']) assert.match((await swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@client.test', '--to', `u${i}@${d}`])).stdout, /<- {2}250 /);
  }
  let worst = 0;
  const until = Date.now() + 5_000;
  while (Date.now() < until) {
    const t = Date.now();
    assert.match(await greeting(other), /^220 /);
    worst = Math.max(worst, Date.now() - t);
    await new Promise((res) => setTimeout(res, 20));
  }
  assert.ok(worst < 100, `slowest greeting ${worst} ms`);
  const dataReplies = (await mta.stats()).replies;
  assert.ok(Object.values(dataReplies).reduce((n, x) => n + x, 0) >= 20, `the upstream answered many times over: ${JSON.stringify(dataReplies)}`);
  const q = JSON.parse(runCli(['queue', 'list', '--json', '-c', lb.file]).stdout) as { messages: { recipients: { last_reply: string | null }[] }[] };
  assert.equal(q.messages.length, 10);
  for (const m of q.messages) assert.ok((m.recipients[0].last_reply ?? '').length <= 4200, `stored reply cut: ${(m.recipients[0].last_reply ?? '').length}`);
  assert.equal(lb.proc.exitCode, null);
});

test('queue.max_deliveries bounds the deliveries in flight over all destinations: 12 destinations, a 1 s upstream, a limit of 3', async () => {
  const [port, admin] = [await freePort(), await freePort()];
  const slow = await startSmtplbSink({ rules: ['rcpt=*,data_delay=1s'] });
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${slow.port} } ] }
routes: [ { pool: out } ]
queue: { retry: [1s], max_age: 1h, max_deliveries: 3 }
`);
  // Queued while the destinations are suspended (one suspension covers *.test), then released together.
  assert.equal(runCli(['suspend', '*.test', '--pool', 'out', '--for', '1h', '--reason', 'hold', '-c', lb.file]).code, 0);
  const sent = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@client.test', '--to', Array.from({ length: 12 }, (_, i) => `u@d${i}.test`).join(',')]);
  assert.equal(sent.code, 0, sent.stdout);
  const ids = (await api<{ suspensions: { id: string }[] }>(admin, '/api/suspensions')).suspensions.map((s) => s.id);
  const t0 = Date.now();
  for (const id of ids) assert.equal(runCli(['unsuspend', id, '-c', lb.file]).code, 0);
  let most = 0;
  await waitFor('all 12 delivered', async () => {
    const st = await api<{ pools: { name: string; servers: { name: string; active: number }[] }[] }>(admin, '/api/status');
    most = Math.max(most, st.pools.find((p) => p.name === 'out')?.servers[0]?.active ?? 0);
    return (await slow.stats()).messages === 12;
  }, 30_000, 50);
  // Three at a time, one second each: four rounds at least (twelve at once would take one).
  assert.ok(Date.now() - t0 >= 3_500, `took ${Date.now() - t0} ms`);
  assert.ok(most <= 3, `${most} connections in use at once`);
});
