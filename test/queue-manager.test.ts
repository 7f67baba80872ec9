// The queue manager under the conditions real senders live in: mail waiting on a suspension
// still expires, a reload's routes apply to mail already queued, cut-through never answers 4xx
// after an upstream took part of a message, and status comes from counters. Real peers:
// smtp-sink upstreams, swaks clients, smtplb as a child process.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, afterEach, test } from 'node:test';
import { freePort, runCli, smtpSource, startSink, startSmtplb, stopAll, swaks, waitFor } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);

const TOKEN = 'test-token-1';

async function api<T>(admin: number, path: string): Promise<T> {
  return (await (await fetch(`http://127.0.0.1:${admin}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as T;
}

interface QueueStatus { queue: { counts: Record<string, number>; destinations: { pool: string; destination: string; queued: number }[] } }

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
  await new Promise((res) => setTimeout(res, 2500));
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
  });
  const q = JSON.parse(runCli(['queue', 'list', '--domain', 'moving.test', '--json', '-c', lb.file]).stdout) as { messages: { recipients: { attempts: number }[] }[] };
  await waitFor('attempted', () => q.messages.every((m) => m.recipients[0].attempts >= 1) || JSON.parse(runCli(['queue', 'list', '--domain', 'moving.test', '--json', '-c', lb.file]).stdout).messages.every((m: { recipients: { attempts: number }[] }) => m.recipients[0].attempts >= 1));
  assert.equal(fresh.count(), 0);

  fs.writeFileSync(lb.file, config('  - { domains: [moving.test], pool: fresh }', ''));
  lb.reload();
  await fresh.settle(5, 10_000);
  const explain = runCli(['route', 'explain', 'u1@moving.test', '-c', lb.file]);
  assert.match(explain.stdout, /fresh/);
  await waitFor('queue empty', async () => (await api<QueueStatus>(admin, '/api/status')).queue.counts.queued === 0);
  await new Promise((res) => setTimeout(res, 1500));
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
  await new Promise((res) => setTimeout(res, 500));
  assert.equal(one.count(), 0, 'nothing relayed to one.test before the rest could be made durable');

  // Space again: the client retries, one.test gets its copy at once, two.test waits in the queue.
  fs.writeFileSync(lb.file, config('0'));
  lb.reload();
  await new Promise((res) => setTimeout(res, 800));
  const second = await send();
  assert.match(second.stdout, /<- {2}250 .*1 relayed at once, 1 queued/, second.stdout);
  await one.settle(1);
  const st = await api<QueueStatus>(admin, '/api/status');
  assert.deepEqual(st.queue.destinations.map((d) => [d.pool, d.destination, d.queued]), [['two', 'two.test', 1]]);
  await new Promise((res) => setTimeout(res, 1000));
  assert.equal(one.count(), 1, 'a@one.test got exactly one copy');
});

test('20,000 queued for a destination at concurrency 1 on a slow upstream: 10 messages to another domain arrive within 2 s, on the same pool and on another', async () => {
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
  const load = await smtpSource(port, 20_000, 20);
  assert.equal(load.code, 0, load.stderr);
  const st = await api<QueueStatus>(admin, '/api/status');
  const backlog = st.queue.destinations.find((d) => d.destination === 'dest.test');
  assert.ok(backlog && backlog.queued >= 19_900, `the backlog is there: ${JSON.stringify(st.queue.destinations)}`);
  const slowBefore = slow.count();
  const started = Date.now();
  const sends = [];
  for (let i = 0; i < 10; i++) {
    sends.push(swaks(['--server', `127.0.0.1:${port}`, '--from', 'reset@client.test', '--to', `same${i}@samepool.test`, '--header', 'Subject: password reset']));
    sends.push(swaks(['--server', `127.0.0.1:${port}`, '--from', 'reset@client.test', '--to', `other${i}@other.test`, '--header', 'Subject: password reset']));
  }
  for (const r of await Promise.all(sends)) assert.match(r.stdout, /<- {2}250 /);
  await waitFor('10 at the other pool', () => fast.count() >= 10, 2_000, 20);
  // The same slow pool: its other destination has its own slots; each reply takes the sink's 1 s.
  await waitFor('10 of the other domain on the same pool', () => slow.messages().filter((m) => /^To: same\d@samepool\.test/m.test(m)).length >= 10, 2_500, 20);
  const took = Date.now() - started;
  assert.ok(took < 2_500, `took ${took} ms`);
  assert.ok(slow.count() - slowBefore <= 25, 'the backlog still goes one at a time');
  await lb.stop();
});
