// Deliverability controls against real upstreams: traffic classes, per-destination shaping
// (rate, concurrency), adaptive backoff, named suspensions and warm-up caps.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, afterEach, test } from 'node:test';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { queueIdle } from './helpers/admin.js';
import { freePort, runCli, sleep, startSink, startSmtplb, stopAll, waitFor, type Sink } from './helpers/peers.js';
import { startThrottlingMta } from './helpers/throttling-mta.js';

after(stopAll);
afterEach(stopAll);

const base: Omit<SendOptions, 'server' | 'to'> = { from: 'app@client.test', headers: [], subject: 'shaping', body: 'hello', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };

/** Send `n` messages with `c` concurrent clients; every one must get 250. */
async function send(port: number, n: number, to: (i: number) => string, c = 10, headers: string[] = []): Promise<void> {
  let next = 0;
  const failures: string[] = [];
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < n) {
        const i = next++;
        const r = await sendOne({ ...base, headers, server: `127.0.0.1:${port}`, to: [to(i)] }, i);
        if (!r.ok) failures.push(r.error);
      }
    }),
  );
  assert.deepEqual(failures.slice(0, 3), [], `${failures.length} sends refused`);
}

function lbConfig(port: number, admin: number, pools: string, routes: string, extra = ''): string {
  return `hostname: gw.test
log: { level: info, format: json }
admin: { listen: 127.0.0.1:${admin}, token: test-token-1 }
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.1/32] }
pools:
${pools}
routes:
${routes}
queue: { retry: [500ms], max_age: 1h }
${extra}`;
}

const pool = (name: string, sinks: { port: number }[], extra = '', health = '{ check: tcp, interval: 1s }') =>
  `  ${name}:\n    health: ${health}\n${extra}    servers:\n${sinks.map((s, i) => `      - { name: ${name}${i + 1}, address: 127.0.0.1:${s.port} }`).join('\n')}\n`;

/** Established connections to a local port, counted at the receiving side. */
function connectionsTo(port: number): number {
  const r = spawnSync('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((l) => l.trim()).length;
}

test('two traffic classes on two pools: each class arrives only at its pool, without the class header', async () => {
  const trans = await startSink();
  const mkt = await startSink();
  const port = await freePort();
  const admin = await freePort();
  await startSmtplb(lbConfig(port, admin, pool('transactional', [trans]) + pool('marketing', [mkt]), `  - { class: marketing, pool: marketing }\n  - { pool: transactional }`, `classes: { sender_domains: { news.client.test: marketing } }\n`));
  await Promise.all([
    send(port, 500, (i) => `t${i}@dest.test`, 5, ['X-Traffic-Class: transactional']),
    send(port, 500, (i) => `m${i}@dest.test`, 5, ['X-Traffic-Class: marketing']),
  ]);
  const [t, m] = await Promise.all([trans.settle(500, 60_000), mkt.settle(500, 60_000)]);
  // Out of the queue and nothing in flight: no second copy can still come.
  await queueIdle(admin);
  assert.equal(trans.count(), 500);
  assert.equal(mkt.count(), 500);
  assert.ok(t.every((x) => /^To: t\d+@dest\.test/m.test(x)), 'only transactional mail at the transactional pool');
  assert.ok(m.every((x) => /^To: m\d+@dest\.test/m.test(x)), 'only marketing mail at the marketing pool');
  assert.ok([...t, ...m].every((x) => !/^X-Traffic-Class:/im.test(x)), 'the class header is removed before delivery');
  // The sender-domain rule classifies mail without a header.
  const r = await sendOne({ ...base, from: 'promo@news.client.test', server: `127.0.0.1:${port}`, to: ['x@dest.test'] }, 0);
  assert.ok(r.ok);
  await mkt.settle(501);
});

test('rate and concurrency per destination: the slow domain is spaced out, the others flow at full speed, concurrency is never exceeded', async () => {
  const slow = await startSink();
  const fast = await startSink();
  const busy = await startSink({ args: ['-w', '1'] });
  const port = await freePort();
  const admin = await freePort();
  const lb = await startSmtplb(
    lbConfig(
      port,
      admin,
      // No health checks on the busy pool: their connections would be counted at its sink too.
      pool('slowpool', [slow]) + pool('fastpool', [fast]) + pool('busypool', [busy], '', '{ check: none }'),
      `  - { domains: [slow.test], pool: slowpool }\n  - { domains: [busy.test], pool: busypool }\n  - { pool: fastpool }`,
      `shaping:\n  slow.test: { rate: 10/s }\n  busy.test: { concurrency: 2 }\n`,
    ),
  );
  const t0 = Date.now();
  // Watched from before the first message: on a busy machine the 8 may be delivered before the sends return.
  let maxBusy = 0;
  const watch = setInterval(() => (maxBusy = Math.max(maxBusy, connectionsTo(busy.port))), 20);
  try {
    await Promise.all([send(port, 100, (i) => `s${i}@slow.test`, 5), send(port, 100, (i) => `f${i}@fast.test`, 5), send(port, 8, (i) => `b${i}@busy.test`, 8)]);
    await waitFor('fast mail delivered', () => fast.count() >= 100, 15_000);
    const fastDone = Date.now() - t0;
    assert.ok(slow.count() < 100, `the rate-limited domain is still being spaced out when the others are done (${slow.count()} of 100 after ${fastDone} ms)`);
    // A message held back by the rate limit says so, with its next attempt time.
    const q = JSON.parse(runCli(['queue', 'list', '--domain', 'slow.test', '--json', '-c', lb.file]).stdout) as { messages: { id: string }[] };
    assert.ok(q.messages.length > 0);
    const shown = runCli(['queue', 'show', q.messages[q.messages.length - 1].id, '-c', lb.file]);
    assert.match(shown.stdout, /next attempt \d{4}-\d\d-\d\dT[\d:.]+Z, waiting for throttle: rate limit 10\/s/, shown.stdout);
    await waitFor('slow mail delivered', () => slow.count() >= 100, 30_000);
    const slowDone = Date.now() - t0;
    assert.ok(slowDone >= 9_900, `100 messages at 10/s need 99 intervals of 100 ms (took ${slowDone} ms)`);
    await waitFor('busy mail delivered', () => busy.count() >= 8, 30_000);
  } finally {
    clearInterval(watch);
  }
  assert.ok(maxBusy <= 2, `at most 2 connections at the concurrency-limited sink (saw ${maxBusy})`);
  assert.equal(maxBusy, 2, 'the limit of 2 is used');
});

test('adaptive backoff: 421 "try again later" cuts the pair\'s rate, everything still arrives, and the limits climb back after recovery', async () => {
  const mta = await startThrottlingMta(3);
  const port = await freePort();
  const admin = await freePort();
  const lb = await startSmtplb(
    lbConfig(port, admin, pool('relays', [mta]), `  - { pool: relays }`, `shaping:\n  default: { rate: 6000/min, burst: 5 }\nbackoff: { decrease: 0.5, min_factor: 0.1, increase: 0.1, suspend_after: 1000 }\n`),
  );
  let lowest = 1;
  let seenRate = Infinity;
  // Polled through the API with fetch: a CLI child per poll would stall this process's clients.
  const poll = setInterval(async () => {
    const r = await fetch(`http://127.0.0.1:${admin}/api/throttles`, { headers: { authorization: 'Bearer test-token-1' } }).catch(() => null);
    if (!r?.ok) return;
    for (const t of ((await r.json()) as { throttles: { factor: number; rate_per_minute: number | null; destination: string }[] }).throttles) {
      if (t.destination !== 'dest.test') continue;
      lowest = Math.min(lowest, t.factor);
      if (t.rate_per_minute !== null) seenRate = Math.min(seenRate, t.rate_per_minute);
    }
  }, 200);
  try {
    await send(port, 30, (i) => `u${i}@dest.test`, 3);
    await waitFor('all 30 delivered despite throttling', () => mta.accepted.length >= 30, 60_000, 100);
  } finally {
    clearInterval(poll);
  }
  assert.ok(mta.refused >= 5, `the receiver throttled (${mta.refused} refusals)`);
  // Cut, and climbing back between push-backs (refusals within a second of a cut answer
  // deliveries sent before it and do not cut again: test/unit/relay-decisions.test.ts).
  assert.ok(lowest <= 0.8, `the pair's factor dropped (lowest ${lowest})`);
  assert.ok(seenRate < 6000, `the pair's rate dropped below the configured 6000/min (lowest seen ${seenRate})`);
  const status = JSON.parse(runCli(['status', '--json', '-c', lb.file]).stdout) as { throttles: { destination: string; last_throttle_reply: string | null }[] };
  assert.match(status.throttles.find((t) => t.destination === 'dest.test')?.last_throttle_reply ?? '', /421 .*Try again later/);
  // The receiver recovers: clean deliveries raise the limits back to the configured ones.
  mta.recover();
  await send(port, 15, (i) => `v${i}@dest.test`, 3);
  await waitFor('recovered mail delivered', () => mta.accepted.length >= 45, 30_000, 100);
  const cli = runCli(['throttles', '-c', lb.file]);
  assert.equal(cli.code, 0, cli.stderr);
  await waitFor('limits back to the configured ones', () => {
    const t = (JSON.parse(runCli(['throttles', '--json', '-c', lb.file]).stdout) as { throttles: { destination: string; factor: number }[] }).throttles.find((x) => x.destination === 'dest.test');
    return !t || t.factor === 1;
  }, 10_000, 200);
  const unique = new Set(mta.accepted.map((m) => /^Message-ID: (.+)$/im.exec(m)?.[1]));
  assert.equal(unique.size, 45, 'every message exactly once');
});

test('a named suspension holds one destination on one pool until cancelled; other destinations keep flowing', async () => {
  const sink = await startSink();
  const port = await freePort();
  const admin = await freePort();
  const lb = await startSmtplb(lbConfig(port, admin, pool('relays', [sink]), `  - { pool: relays }`));
  const sus = runCli(['suspend', 'held.test', '--pool', 'relays', '--for', '2h', '--reason', 'complaint from postmaster', '--who', 'alice', '-c', lb.file]);
  assert.equal(sus.code, 0, sus.stderr);
  const id = /^suspension ([0-9a-f]+):/.exec(sus.stdout)?.[1];
  assert.ok(id, sus.stdout);
  const list = runCli(['suspensions', '-c', lb.file]);
  assert.match(list.stdout, new RegExp(`${id}  relays → held\\.test  until \\S+  by alice: complaint from postmaster`));
  await send(port, 5, (i) => `h${i}@held.test`, 5);
  await send(port, 5, (i) => `o${i}@open.test`, 5);
  await sink.settle(5);
  await sleep(1500); // stays: a window in which the suspended mail must not leave (it stays queued)
  assert.equal(sink.count(), 5, 'only the other destination was delivered');
  assert.ok(sink.messages().every((m) => /^To: o\d@open\.test/m.test(m)));
  const q = JSON.parse(runCli(['queue', 'list', '--domain', 'held.test', '--json', '-c', lb.file]).stdout) as { messages: { id: string; recipients: { waiting_for: string }[] }[] };
  assert.equal(q.messages.length, 5);
  assert.match(q.messages[0].recipients[0].waiting_for, /^suspension: relays → held\.test suspended by alice until .*: complaint from postmaster/);
  const cancel = runCli(['unsuspend', id, '-c', lb.file]);
  assert.equal(cancel.code, 0, cancel.stderr);
  await sink.settle(10);
  assert.equal(runCli(['suspensions', '-c', lb.file]).stdout.trim(), 'no suspensions in force');
});

test('an operator\'s override slows one destination on one pool until cancelled, visible with who, why and until when', async () => {
  const sink = await startSink();
  const port = await freePort();
  const admin = await freePort();
  const lb = await startSmtplb(lbConfig(port, admin, pool('relays', [sink]), `  - { pool: relays }`));
  const o = runCli(['override', 'slow.test', '--pool', 'relays', '--rate', '1/min', '--for', '1h', '--reason', 'receiver asked us to slow down', '--who', 'bob', '-c', lb.file]);
  assert.equal(o.code, 0, o.stderr);
  const id = /^override ([0-9a-f]+): relays → slow\.test: rate 1\/min until \S+ by bob: receiver asked us to slow down$/m.exec(o.stdout)?.[1];
  assert.ok(id, o.stdout);
  await send(port, 3, (i) => `s${i}@slow.test`, 3);
  await send(port, 3, (i) => `o${i}@other.test`, 3);
  await waitFor('the other destination flows', () => sink.messages().filter((m) => /^To: o\d@other\.test/m.test(m)).length === 3, 10_000);
  await sleep(1500); // stays: a window in which the 1/min rate must hold the other two back
  assert.equal(sink.messages().filter((m) => /^To: s\d@slow\.test/m.test(m)).length, 1, 'one message per minute to the overridden destination');
  const q = JSON.parse(runCli(['queue', 'list', '--domain', 'slow.test', '--json', '-c', lb.file]).stdout) as { messages: { recipients: { waiting_for: string }[] }[] };
  assert.equal(q.messages.length, 2);
  assert.match(q.messages[0].recipients[0].waiting_for, /throttle: rate limit 1\/min/);
  assert.match(runCli(['overrides', '-c', lb.file]).stdout, new RegExp(`${id}  relays → slow\\.test: rate 1/min until \\S+ by bob`));
  assert.match(runCli(['status', '-c', lb.file]).stdout, /override [0-9a-f]+: relays → slow\.test: rate 1\/min/);
  assert.equal(runCli(['unoverride', id, '-c', lb.file]).code, 0);
  await waitFor('the rest once the override is gone', () => sink.count() === 6, 20_000);
  assert.equal(runCli(['overrides', '-c', lb.file]).stdout.trim(), 'no overrides in force');
});

test('warm-up: a server capped at 50 today takes exactly 50 of 300 messages, the warmed server the rest', async () => {
  const cold = await startSink();
  const warm = await startSink();
  const port = await freePort();
  const admin = await freePort();
  const today = new Date().toISOString().slice(0, 10);
  const lb = await startSmtplb(
    lbConfig(
      port,
      admin,
      `  relays:\n    health: { check: tcp, interval: 1s }\n    servers:\n      - { name: new-ip, address: 127.0.0.1:${cold.port}, warmup: { start: ${today}, schedule: [50, 100, 500] } }\n      - { name: old-ip, address: 127.0.0.1:${warm.port} }\n`,
      `  - { pool: relays }`,
    ),
  );
  await send(port, 300, (i) => `w${i}@dest${i % 7}.test`, 10);
  await waitFor('300 delivered', () => cold.count() + warm.count() >= 300, 60_000);
  // Out of the queue and nothing in flight: no 51st can still reach the warming server.
  await queueIdle(admin);
  assert.equal(cold.count(), 50, 'the warming server got exactly its cap');
  assert.equal(warm.count(), 250);
  const status = JSON.parse(runCli(['status', '--json', '-c', lb.file]).stdout) as { pools: { servers: { name: string; warmup: { day: number; cap: number; sent: number } | null }[] }[] };
  assert.deepEqual(status.pools[0].servers.find((s) => s.name === 'new-ip')?.warmup, { day: 0, cap: 50, sent: 50, remaining: 0 });
  const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  assert.match(metrics, /smtplb_warmup_cap\{pool="relays",server="new-ip"\} 50/);
  assert.match(metrics, /smtplb_warmup_sent\{pool="relays",server="new-ip"\} 50/);
});

export type { Sink };

test('messages_per_connection and connect_rate: counted as connections at a real Postfix upstream', async () => {
  const { startPostfix } = await import('./helpers/postfix.js');
  const pf = await freePort();
  const postfix = await startPostfix([{ port: pf }]);
  const port = await freePort();
  const admin = await freePort();
  await startSmtplb(
    lbConfig(
      port,
      admin,
      `  relays:\n    health: { check: none }\n    tls: none\n    reuse: { messages: 100, seconds: 30s }\n    servers: [ { name: pf, address: 127.0.0.1:${pf} } ]\n`,
      `  - { pool: relays }`,
      `shaping:\n  per-conn.test: { messages_per_connection: 2, concurrency: 1 }\n  slow-conn.test: { messages_per_connection: 1, connect_rate: 2/s }\n`,
    ),
  );
  const connects = () => (postfix.log().match(/smtpd\[\d+\]: connect from localhost\[127\.0\.0\.1\]/g) ?? []).length;
  const sent = () => (postfix.log().match(/status=sent/g) ?? []).length;
  const before = connects(); // startup's port probe
  await send(port, 6, (i) => `p${i}@per-conn.test`, 3);
  await waitFor('6 taken by Postfix', () => sent() >= 6, 30_000, 100);
  assert.equal(connects() - before, 3, '6 messages, one at a time, at 2 per connection: 3 connections');
  const t0 = Date.now();
  await send(port, 5, (i) => `s${i}@slow-conn.test`, 5);
  await waitFor('5 more taken by Postfix', () => sent() >= 11, 30_000, 100);
  assert.equal(connects() - before, 8, 'one connection per message for slow-conn.test');
  assert.ok(Date.now() - t0 >= 2000, `5 connections at 2/s need at least 2 s (took ${Date.now() - t0} ms)`);
});
