// The admin API of a primary whose workers hold the queue (workers: N, mode: smtp): queue
// tools, status, metrics and the dashboard show every shard as one queue, and a shard that
// does not answer gives a clear partial answer, never a hang. The merge rules on plain data;
// a primary's AdminServer over two real single-process smtplb as its shards; a real
// `workers: 2` smtplb through the CLI.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { after, afterEach, test } from 'node:test';
import pino from 'pino';
import { AdminServer } from '../src/admin/server.js';
import { HistorySampler, type HistorySnapshot } from '../src/admin/history.js';
import { Metrics } from '../src/admin/metrics.js';
import { mergeQueueList, mergeRelayStatus, mergeThrottles, ownerAnswer, type RelayStatus, type ShardAnswer, type ThrottleView } from '../src/admin/fanout.js';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { TOKEN, api, metric } from './helpers/admin.js';
import { BIN, freePort, onStop, run, startSink, startSmtplb, stopAll, tmpDir, waitFor } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);

const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
const base: Omit<SendOptions, 'server' | 'to'> = { from: 'app@client.test', headers: [], subject: 'workers', body: 'hello', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };

/** A relay whose only upstream is `upstream` (nothing listens there yet: mail waits), retries an hour apart. */
function relayConfig(port: number, admin: number, upstream: number, extra = ''): string {
  return `hostname: gw.test
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
spool: ./spool
${extra}listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.1/32] }
pools:
  out: { health: { check: tcp, interval: 500ms, rise: 1, fall: 1 }, servers: [ { name: mx1, address: 127.0.0.1:${upstream} } ] }
routes:
  - { pool: out }
queue: { retry: [1h], max_age: 5d }
`;
}

/** One message on its own connection; its queue id. */
async function send(port: number, to: string, n = 0): Promise<string> {
  const r = await sendOne({ ...base, server: `127.0.0.1:${port}`, to: [to] }, n);
  assert.ok(r.ok, r.ok ? '' : r.error);
  const id = /queued as ([A-Za-z0-9]+)/.exec(r.response)?.[1];
  assert.ok(id, r.response);
  return id;
}

async function req(port: number, path: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown> & { error?: string; warning?: string; shards_unreachable?: number[] } }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) } });
  return { status: r.status, body: (await r.json()) as never };
}

const ok = (shard: number, body: unknown, status = 200): ShardAnswer => ({ shard, ok: true, status, body });
const dead = (shard: number): ShardAnswer => ({ shard, ok: false, error: 'connection refused', maybeApplied: false });

test('merge rules: one queue in id order with counts summed, the owner of a message answers, throttles once per pair, status in the shape of one process', () => {
  const list = mergeQueueList([ok(0, { messages: [{ id: 'A1' }, { id: 'A3' }], counts: [{ state: 'queued', n: 2 }] }), ok(1, { messages: [{ id: 'A2' }], counts: [{ state: 'queued', n: 1 }, { state: 'held', n: 1 }] }), dead(2)], 2);
  assert.equal(list.status, 200);
  const lb = list.body as { messages: { id: string }[]; counts: unknown; shards_unreachable: number[]; warning: string };
  assert.deepEqual(lb.messages.map((m) => m.id), ['A1', 'A2']);
  assert.deepEqual(lb.counts, [{ state: 'queued', n: 3 }, { state: 'held', n: 1 }]);
  assert.deepEqual(lb.shards_unreachable, [2]);
  assert.match(lb.warning, /shard 2 \(connection refused\)/);
  // A bad filter is a 400 at every shard: passed through. No shard at all: 503.
  assert.equal(mergeQueueList([ok(0, { error: 'bad' }, 400), ok(1, { error: 'bad' }, 400)]).status, 400);
  assert.equal(mergeQueueList([dead(0), dead(1)]).status, 503);

  const notHere = { error: 'no message X in the queue' };
  assert.deepEqual(ownerAnswer([ok(0, notHere, 404), ok(1, { id: 'X' })]), { status: 200, body: { id: 'X' } });
  assert.deepEqual(ownerAnswer([ok(0, notHere, 404), ok(1, notHere, 404)]), { status: 404, body: notHere });
  // Not in the shards that answered while one did not: it may be there, so not a 404.
  const maybe = ownerAnswer([ok(0, notHere, 404), dead(1)]);
  assert.equal(maybe.status, 503);
  assert.match((maybe.body as { error: string }).error, /shard 1.*may hold it/);

  const t = (server: string, factor: number, inflight: number, suspended: string | null, reply: string | null): ThrottleView => ({ pool: 'p', server, destination: 'd.test', factor, inflight, concurrency: 4, rate_per_minute: null, configured_rate_per_minute: null, suspended_until: suspended, last_throttle_reply: reply });
  const merged = mergeThrottles([[t('a', 0.5, 2, null, '421 slow down'), t('b', 1, 1, null, null)], [t('a', 0.75, 3, '2030-01-01T00:00:00.000Z', null)]]);
  assert.equal(merged.length, 2);
  const a = merged.find((x) => x.server === 'a')!;
  assert.deepEqual([a.factor, a.inflight, a.suspended_until, a.last_throttle_reply], [0.5, 5, '2030-01-01T00:00:00.000Z', '421 slow down']);

  const part = (counts: Record<string, number>, dests: RelayStatus['queue']['destinations'], writable = true): RelayStatus => ({ queue: { counts, destinations: dests, destination_count: dests.length }, spool: { writable, full: false, error: writable ? null : 'EROFS', since: null }, throttles: [], suspensions: [{ id: 's1', pool: 'p', destination: 'x.test', until: '2030-01-01T00:00:00.000Z', reason: 'maintenance', who: 'ops', created: '2026-01-01T00:00:00.000Z' }], overrides: [], last_errors: [] });
  const st = mergeRelayStatus([
    part({ queued: 2 }, [{ pool: 'p', destination: 'x.test', queued: 2, oldest_seconds: 10, waiting_for: null }]),
    part({ queued: 3, held: 1 }, [{ pool: 'p', destination: 'x.test', queued: 1, oldest_seconds: 40, waiting_for: 'no server up' }, { pool: 'p', destination: 'y.test', queued: 3, oldest_seconds: 5, waiting_for: null }], false),
  ]);
  assert.deepEqual(st.queue.counts, { queued: 5, held: 1 });
  assert.deepEqual(st.queue.destinations, [
    { pool: 'p', destination: 'x.test', queued: 3, oldest_seconds: 40, waiting_for: 'no server up' },
    { pool: 'p', destination: 'y.test', queued: 3, oldest_seconds: 5, waiting_for: null },
  ]);
  assert.equal(st.queue.destination_count, 2);
  assert.equal(st.spool.writable, false);
  assert.equal(st.suspensions.length, 1);
});

/** A primary's admin API (no relay) whose shards are `ports`, as gateway.ts builds it under workers. */
async function primary(shards: () => { shard: number; port: number }[]) {
  const metrics = new Metrics();
  const pools = new Map([['out', {} as never]]);
  const history = new HistorySampler({ metrics, relay: () => undefined, pools: () => pools, events: () => [], deliveryLog: () => undefined }, 60_000);
  const srv = new AdminServer({
    token: TOKEN,
    metrics,
    log: pino({ level: 'silent' }),
    pools: () => pools,
    status: () => ({ hostname: 'primary.test', role: 'primary', listeners: [], pools: [{ name: 'out', servers: [{ name: 'mx1', warmup: null }] }], health_history: [] }),
    serverAction: () => {},
    relay: () => undefined,
    history,
    shards,
  });
  const port = await freePort();
  await srv.listen({ host: '127.0.0.1', port });
  onStop(() => srv.close());
  return { port, history };
}

test('a primary over two shards (single-process smtplb): one queue, messages found in either shard, shared state sent once; a dead or silent shard gives a partial answer in about 2 s', { timeout: 45_000 }, async () => {
  const upstream = await freePort(); // nothing listens: the mail waits in each shard
  const [p0, a0, p1, a1] = [await freePort(), await freePort(), await freePort(), await freePort()];
  await Promise.all([startSmtplb(relayConfig(p0, a0, upstream), { dir: tmpDir('shard0-') }), startSmtplb(relayConfig(p1, a1, upstream), { dir: tmpDir('shard1-') })]);
  const ids0 = [await send(p0, 'u0@a.test', 0), await send(p0, 'u1@a.test', 1), await send(p0, 'u2@b.test', 2)];
  const ids1 = [await send(p1, 'u3@a.test', 3), await send(p1, 'u4@c.test', 4)];
  let shards = [{ shard: 0, port: a0 }, { shard: 1, port: a1 }];
  const { port, history } = await primary(() => shards);

  const q = await req(port, '/api/queue');
  assert.equal(q.status, 200);
  const ids = (q.body.messages as { id: string }[]).map((m) => m.id);
  assert.deepEqual(ids, [...ids0, ...ids1].sort(), 'every message once, in id order');
  assert.deepEqual(q.body.counts, [{ state: 'queued', n: 5 }, { state: 'held', n: 0 }, { state: 'failed', n: 0 }]);
  assert.equal(q.body.shards_unreachable, undefined);
  // Filters are the shards' own.
  assert.equal(((await req(port, '/api/queue?domain=a.test')).body.messages as unknown[]).length, 3);
  assert.equal((await req(port, '/api/queue?older_than=soon')).status, 400);

  // One message, wherever it is.
  const show = await req(port, `/api/queue/${ids1[1]}`);
  assert.equal(show.status, 200);
  assert.equal((show.body.recipients as { address: string }[])[0].address, 'u4@c.test');
  assert.equal((await req(port, '/api/queue/NOSUCHID')).status, 404);
  assert.equal((await req(port, `/api/queue/${ids1[0]}/hold`, { method: 'POST' })).body.recipients, 1);
  assert.deepEqual((await req(port, '/api/queue')).body.counts, [{ state: 'queued', n: 4 }, { state: 'held', n: 1 }, { state: 'failed', n: 0 }]);
  assert.equal((await req(port, `/api/queue/${ids1[0]}/release`, { method: 'POST' })).body.recipients, 1);
  assert.equal((await req(port, `/api/queue/${ids0[2]}/delete`, { method: 'POST' })).status, 200);
  assert.equal((await req(port, `/api/queue/${ids0[2]}`)).status, 404);

  // Status: the primary's own part, the relay's merged, and the shards.
  const st = await req(port, '/api/status');
  assert.equal(st.body.hostname, 'primary.test');
  assert.deepEqual((st.body.queue as { counts: unknown }).counts, { queued: 4, held: 0, failed: 0 });
  const dests = (st.body.queue as { destinations: { destination: string; queued: number }[] }).destinations;
  assert.deepEqual(Object.fromEntries(dests.map((d) => [d.destination, d.queued])), { 'a.test': 3, 'c.test': 1 });
  assert.deepEqual((st.body.shards as { shard: number; reachable: boolean; queue: number }[]).map((s) => [s.shard, s.reachable, s.queue]), [[0, true, 2], [1, true, 2]]);

  // Shared state goes to one shard (the first that answers).
  const sus = await req(port, '/api/suspensions', { method: 'POST', body: JSON.stringify({ destination: 'a.test', pool: 'out', for: '1h', reason: 'test' }) });
  assert.equal(sus.status, 200, JSON.stringify(sus.body));
  assert.equal(((await req(a0, '/api/suspensions')).body.suspensions as unknown[]).length, 1);
  assert.equal(((await req(a1, '/api/suspensions')).body.suspensions as unknown[]).length, 0);
  assert.equal((await req(port, '/api/route?address=x@a.test')).body.route !== null, true);

  // The dashboard: a destination's page and the charts' queue over both shards.
  const page = await req(port, '/api/destinations/a.test');
  assert.equal(page.status, 200);
  assert.deepEqual((page.body.queue as { pool: string; queued: number }[]).map((x) => [x.pool, x.queued]), [['out', 3]]);
  assert.equal((page.body.messages as unknown[]).length, 3);
  await history.tick();
  const h = (await req(port, '/api/history')).body as unknown as HistorySnapshot;
  assert.equal(h.pools.out.queued.at(-1), 4);
  assert.equal(h.destinations.find((d) => d.destination === 'a.test')?.queued.at(-1), 3);
  assert.ok(h.marks.some((m) => m.kind === 'suspend'), 'the suspension is marked from the shards');

  // A dead shard (nothing listens) and a silent one (accepts, never answers).
  const silent = net.createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const held: net.Socket[] = [];
  silent.on('connection', (s) => held.push(s));
  onStop(() => {
    for (const s of held) s.destroy();
    silent.close();
  });
  shards = [...shards, { shard: 2, port: await freePort() }, { shard: 3, port: (silent.address() as net.AddressInfo).port }];
  let t0 = Date.now();
  const partial = await req(port, '/api/queue');
  assert.ok(Date.now() - t0 < 3500, `answered in ${Date.now() - t0} ms`);
  assert.equal(partial.status, 200);
  assert.equal((partial.body.messages as unknown[]).length, 4);
  assert.deepEqual(partial.body.shards_unreachable, [2, 3]);
  assert.match(partial.body.warning!, /shard 2 \(connection refused\).*shard 3 \(no answer within 2000 ms\)/);
  t0 = Date.now();
  const pst = await req(port, '/api/status');
  assert.ok(Date.now() - t0 < 3500);
  assert.deepEqual((pst.body.shards as { shard: number; reachable: boolean }[]).map((s) => s.reachable), [true, true, false, false]);
  assert.deepEqual((pst.body.queue as { counts: unknown }).counts, { queued: 4, held: 0, failed: 0 });
  // None answers: 503 for the queue, status still answers with the primary's part.
  shards = shards.slice(2, 3);
  const none = await req(port, '/api/queue');
  assert.equal(none.status, 503);
  assert.match(none.body.error!, /no worker's queue answered/);
  const bare = await req(port, '/api/status');
  assert.equal(bare.status, 200);
  assert.equal(bare.body.hostname, 'primary.test');
  assert.equal(bare.body.queue, undefined);
});

/** Send `n` messages over up to `c` connections at once (so the kernel hands connections to both workers); queue id → Message-ID. */
async function sendMany(port: number, n: number, from: number, c = 6): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let next = from;
  await Promise.all(
    Array.from({ length: Math.min(c, n) }, async () => {
      while (next < from + n) {
        const i = next++;
        const r = await sendOne({ ...base, server: `127.0.0.1:${port}`, to: [`u${i}@dest.test`] }, i);
        assert.ok(r.ok, r.ok ? '' : r.error);
        out.set(/queued as ([A-Za-z0-9]+)/.exec(r.response)![1], r.id);
      }
    }),
  );
  return out;
}

/** The CLI without blocking this process (spawnSync would stall the keep-alive connections of fetch). */
const cli = (args: string[]) => run(process.execPath, [BIN, ...args], 60_000);

/** The ids `smtplb queue list` prints (a message's first line starts with its id). */
const listedIds = (stdout: string) => stdout.split('\n').filter((l) => /^[A-Za-z0-9]{10,}\s/.test(l)).map((l) => l.split(/\s/)[0]);

test('workers: 2: queue list / show / hold / release / delete / flush, status, metrics and the dashboard see both shards as one queue; a stopped worker gives a partial answer', { timeout: 90_000 }, async () => {
  const soft = await startSink({ args: ['-r', 'RCPT'] }); // 450 to every RCPT: each message is tried once, then waits an hour
  const [port, admin] = [await freePort(), await freePort()];
  const dir = tmpDir('workers-admin-');
  const lb = await startSmtplb(relayConfig(port, admin, soft.port, 'workers: 2\nlog: { level: warn }\n'), { dir, env: { SMTPLB_HISTORY_STEP_MS: '500' } });
  await waitFor('both workers serving their shard', async () => ((await api<{ shards?: unknown[] }>(admin, '/api/status')).shards?.length ?? 0) === 2, 15_000);
  // Parallel connections until both workers took some.
  const sent = new Map<string, string>();
  const firstSent = Date.now();
  for (let round = 0; round < 5; round++) {
    for (const [k, v] of await sendMany(port, 12, sent.size)) sent.set(k, v);
    const st = await api<{ shards: { queue: number }[] }>(admin, '/api/status');
    // Two each at least: one message per shard is deleted below, and a stopped worker's partial
    // answer must still list the other shard's mail (11 and 1 made it 0 of 11 once).
    if (st.shards.every((s) => s.queue > 1)) break;
  }
  const total = sent.size;
  const status = () => api<{ queue: { counts: Record<string, number> }; shards: { shard: number; queue: number; reachable: boolean }[] }>(admin, '/api/status');
  const shardSizes = (await status()).shards.map((s) => s.queue);
  assert.ok(shardSizes.every((n) => n > 1), `both shards hold two messages or more: ${shardSizes}`);
  // Every message tried once and deferred (its next attempt an hour away).
  await waitFor('every message deferred once', async () => {
    const q = await api<{ messages: { recipients: { attempts: number }[] }[] }>(admin, '/api/queue');
    return q.messages.length === total && q.messages.every((m) => m.recipients.every((r) => r.attempts >= 1));
  }, 20_000);

  // The CLI lists every message once.
  const list = await cli(['queue', 'list', '-c', lb.file]);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(listedIds(list.stdout).sort(), [...sent.keys()].sort());
  const json = JSON.parse((await cli(['queue', 'list', '--json', '-c', lb.file])).stdout) as { counts: { state: string; n: number }[] };
  assert.equal(json.counts.find((c) => c.state === 'queued')?.n, total);
  assert.equal((await status()).queue.counts.queued, total);
  assert.equal(await metric(admin, 'smtplb_queue_state_recipients', { state: 'queued' }), total);

  // A message of each shard (ids carry their process's salt): show, hold, release, delete.
  const bySalt = new Map<string, string>();
  for (const id of sent.keys()) bySalt.set(id.slice(9, 15), id);
  assert.equal(bySalt.size, 2, 'queue ids from two processes');
  const [a, b] = [...bySalt.values()];
  for (const id of [a, b]) {
    const show = await cli(['queue', 'show', id, '-c', lb.file]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, new RegExp(`^${id}\\s`));
    assert.match(show.stdout, /history:/);
  }
  assert.match((await cli(['queue', 'hold', a, '-c', lb.file])).stdout, /hold done \(1 recipients\)/);
  assert.match((await cli(['queue', 'hold', b, '-c', lb.file])).stdout, /hold done \(1 recipients\)/);
  assert.equal((await status()).queue.counts.held, 2);
  assert.match((await cli(['queue', 'release', a, '-c', lb.file])).stdout, /release done \(1 recipients\)/);
  assert.match((await cli(['queue', 'delete', b, '-c', lb.file])).stdout, /delete done/);
  const gone = await cli(['queue', 'show', b, '-c', lb.file]);
  assert.notEqual(gone.code, 0);
  assert.match(gone.stderr, /404/);
  sent.delete(b);
  const left = total - 1;
  const counts = (await status()).queue.counts;
  assert.deepEqual([counts.queued, counts.held], [left, 0]);
  assert.equal(await metric(admin, 'smtplb_queue_state_recipients', { state: 'queued' }), left);
  assert.equal(await metric(admin, 'smtplb_queue_recipients', { pool: 'out', destination: 'dest.test' }), left);
  // Not summed over the workers: an age is the oldest shard's, a flag is 1.
  const oldest = await metric(admin, 'smtplb_queue_oldest_seconds', { pool: 'out', destination: 'dest.test' });
  assert.ok(oldest > 0 && oldest <= (Date.now() - firstSent) / 1000 + 1, `oldest ${oldest} s`);
  assert.equal(await metric(admin, 'smtplb_spool_writable'), 1);
  assert.match((await cli(['status', '-c', lb.file])).stdout, new RegExp(`queue: queued ${left}\\b`));

  // The dashboard: its queue chart and the destination page.
  await waitFor('the queue chart at the queue size', async () => (await api<HistorySnapshot>(admin, '/api/history')).pools.out?.queued.at(-1) === left, 10_000);
  const page = await api<{ queue: { pool: string; queued: number }[]; messages: unknown[] }>(admin, '/api/destinations/dest.test');
  assert.deepEqual(page.queue.map((q) => [q.pool, q.queued]), [['out', left]]);
  assert.equal(page.messages.length, Math.min(50, left));

  if (chromium) {
    const { chromium: pw } = await import('playwright-core');
    const browser = await pw.launch({ executablePath: chromium, args: ['--no-sandbox', '--disable-gpu'] });
    onStop(() => browser.close());
    const tab = await browser.newPage();
    await tab.goto(`http://127.0.0.1:${admin}/dashboard#token=${TOKEN}`);
    await tab.waitForFunction((n) => new RegExp(`queued: ${n} .*by worker shard: 0: \\d+, 1: \\d+`).test(document.querySelector('#qcounts')?.textContent ?? ''), left, { timeout: 10_000 });
    await browser.close();
  }

  // A stopped worker: its shard is missing from a clear partial answer, in about 2 s.
  const worker = Number(spawnSync('pgrep', ['-P', String(lb.proc.pid)], { encoding: 'utf8' }).stdout.split('\n')[0]);
  process.kill(worker, 'SIGSTOP');
  try {
    const t0 = Date.now();
    const api0 = await fetch(`http://127.0.0.1:${admin}/api/queue`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(api0.status, 200);
    assert.ok(Date.now() - t0 < 4500, `answered in ${Date.now() - t0} ms`);
    assert.equal(((await api0.json()) as { shards_unreachable: number[] }).shards_unreachable.length, 1);
    const partial = await cli(['queue', 'list', '-c', lb.file]);
    assert.equal(partial.code, 0, partial.stderr);
    assert.match(partial.stderr, /warning: no answer from shard \d \(no answer within 2000 ms\)/);
    const n = listedIds(partial.stdout).length;
    assert.ok(n > 0 && n < left, `${n} of ${left} listed`);
    assert.match((await cli(['status', '-c', lb.file])).stdout, /warning: no answer from shard/);
  } finally {
    process.kill(worker, 'SIGCONT');
  }

  // The upstream takes mail again: flush delivers everything, each message once.
  const upstreamUp = async () => (await api<{ pools: { servers: { up: boolean }[] }[] }>(admin, '/api/status')).pools[0].servers[0].up;
  await soft.stop();
  await waitFor('the upstream seen down', async () => !(await upstreamUp()), 10_000);
  const sink = await startSink({ port: soft.port });
  await waitFor('the upstream seen up', upstreamUp, 10_000);
  const flush = await cli(['queue', 'flush', '-c', lb.file]);
  assert.equal(flush.code, 0, flush.stderr);
  assert.match(flush.stdout, new RegExp(`flushed ${left} messages`));
  const msgs = await sink.settle(left, 20_000);
  const seen = new Map<string, number>();
  for (const m of msgs) {
    const id = /^Message-ID: (.+)$/im.exec(m)?.[1]?.trim() ?? '';
    seen.set(id, (seen.get(id) ?? 0) + 1);
  }
  assert.deepEqual([...seen.keys()].sort(), [...sent.values()].sort());
  assert.ok([...seen.values()].every((n) => n === 1), 'each message once');
  await waitFor('the queue empty', async () => (await status()).queue.counts.queued === 0, 10_000);
  assert.equal(await metric(admin, 'smtplb_queue_state_recipients', { state: 'queued' }), 0);

  // Shared state: a suspension made through the primary is in force at both workers, listed once, and cancelled everywhere.
  const sus = await cli(['suspend', 'dest.test', '--pool', 'out', '--for', '1h', '--reason', 'workers test', '-c', lb.file]);
  assert.equal(sus.code, 0, sus.stderr);
  const sid = /^suspension (\w+):/.exec(sus.stdout)![1];
  const ports = (await status()).shards.map((s) => (s as unknown as { port: number }).port);
  await waitFor('the suspension at both workers', async () => {
    const lists = await Promise.all(ports.map((p) => api<{ suspensions: { id: string }[] }>(p, '/api/suspensions')));
    return lists.every((l) => l.suspensions.some((x) => x.id === sid));
  }, 5000);
  assert.equal([...(await cli(['status', '-c', lb.file])).stdout.matchAll(new RegExp(`suspension ${sid}:`, 'g'))].length, 1);
  assert.equal((await cli(['unsuspend', sid, '-c', lb.file])).code, 0);
  await waitFor('the suspension gone at both workers', async () => {
    const lists = await Promise.all(ports.map((p) => api<{ suspensions: { id: string }[] }>(p, '/api/suspensions')));
    return lists.every((l) => l.suspensions.length === 0);
  }, 5000);
});
