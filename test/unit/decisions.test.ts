// Pure decision functions: balancer picks, eligibility, health transitions, ejection,
// slow start, PROXY codec, value parsing, SRV mapping. No sockets.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eligible, type ServerView } from '../../src/balancing/eligible.js';
import { leastConn, pick, random2, smoothWeighted, sourceHash, type Candidate } from '../../src/balancing/pick.js';
import { parseAddress, parseCidr, cidrContains, parseDuration } from '../../src/config/units.js';
import { srvToServers } from '../../src/discovery/dns.js';
import { initialHealth, nextEjection, nextHealth, NO_EJECTION, slowstartWeight } from '../../src/health/state.js';
import { encodeV1, encodeV2, parseProxyHeader } from '../../src/protocol/proxy-protocol.js';

const cand = (key: string, weight = 1, active = 0): Candidate => ({ key, weight, active, current: 0 });

function runWrr(weights: number[], n: number): number[] {
  let cands = weights.map((w, i) => cand(`s${i}`, w));
  const counts = weights.map(() => 0);
  const seq: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = smoothWeighted(cands);
    counts[r.pick]++;
    seq.push(r.pick);
    cands = cands.map((c, j) => ({ ...c, current: r.currents[j] }));
  }
  return n <= 7 ? seq : counts;
}

test('smooth weighted round-robin interleaves 5:1:1 as nginx does', () => {
  assert.deepEqual(runWrr([5, 1, 1], 7), [0, 0, 1, 0, 2, 0, 0]);
  assert.deepEqual(runWrr([3, 1], 400), [300, 100]);
  assert.deepEqual(runWrr([1, 1], 10).length, 2);
  assert.deepEqual(runWrr([1, 1], 1000), [500, 500]);
});

test('leastconn picks the server with the fewest connections per weight, rotating ties', () => {
  assert.equal(leastConn([cand('a', 1, 5), cand('b', 1, 2), cand('c', 1, 9)]), 1);
  assert.equal(leastConn([cand('a', 2, 3), cand('b', 1, 2)]), 0); // 4/2 < 3/1
  assert.equal(leastConn([cand('a'), cand('b')], 1), 1);
});

test('random2 takes the less loaded of two random candidates', () => {
  const c = [cand('a', 1, 10), cand('b', 1, 0), cand('c', 1, 5)];
  assert.equal(random2(c, 0.0, 0.0), 1); // a vs b → b
  assert.equal(random2(c, 0.9, 0.0), 2); // c vs a → c
  assert.equal(random2([cand('x')], 0.5, 0.5), 0);
});

test('source hashing is stable and only moves the clients of a removed server', () => {
  const all = [cand('a'), cand('b'), cand('c')];
  const ips = Array.from({ length: 300 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
  const before = ips.map((ip) => all[sourceHash(all, ip)].key);
  assert.deepEqual(ips.map((ip) => all[sourceHash(all, ip)].key), before);
  const counts = new Map<string, number>();
  for (const k of before) counts.set(k, (counts.get(k) ?? 0) + 1);
  for (const k of ['a', 'b', 'c']) assert.ok(counts.get(k)! > 60, `spread: ${[...counts]}`);
  const without = [all[0], all[2]];
  ips.forEach((ip, i) => {
    if (before[i] !== 'b') assert.equal(without[sourceHash(without, ip)].key, before[i]);
  });
});

test('pick dispatches; first takes the first candidate', () => {
  assert.equal(pick('first', [cand('a'), cand('b')]).pick, 0);
  assert.equal(pick('roundrobin', []).pick, -1);
});

const view = (key: string, o: Partial<ServerView> = {}): ServerView => ({
  key, weight: 1, backup: false, active: 0, current: 0, admin: 'ready', health: initialHealth(), ejection: NO_EJECTION, ...o,
});

test('eligibility: backups only when no primary is usable; busy is not down', () => {
  const down = { ...initialHealth(), up: false };
  const r1 = eligible([view('a'), view('b', { backup: true })], 1000, 0);
  assert.equal(r1.status, 'ok');
  assert.deepEqual(r1.status === 'ok' && r1.indices, [0]);
  const r2 = eligible([view('a', { health: down }), view('b', { backup: true })], 1000, 0);
  assert.deepEqual(r2.status === 'ok' && r2.indices, [1]);
  assert.equal(eligible([view('a', { health: down }), view('b', { backup: true, health: down })], 1000, 0).status, 'down');
  assert.equal(eligible([view('a', { maxconn: 2, active: 2 })], 1000, 0).status, 'busy');
  assert.equal(eligible([view('a', { admin: 'drain' })], 1000, 0).status, 'down');
  assert.equal(eligible([view('a', { ejection: { consecutive: 0, count: 1, until: 2000 } })], 1000, 0).status, 'down');
  assert.equal(eligible([view('a')], 1000, 0, new Set(['a'])).status, 'down');
  assert.equal(eligible([view('a', { weight: 0 })], 1000, 0).status, 'down');
});

test('health: fall failures take a server down, rise successes bring it back', () => {
  let h = initialHealth();
  h = nextHealth(h, false, 2, 3, 1, 'x');
  h = nextHealth(h, false, 2, 3, 2, 'x');
  assert.equal(h.up, true);
  h = nextHealth(h, true, 2, 3, 3); // a success resets the failure streak
  h = nextHealth(h, false, 2, 3, 4, 'x');
  h = nextHealth(h, false, 2, 3, 5, 'x');
  assert.equal(h.up, true);
  h = nextHealth(h, false, 2, 3, 6, 'refused');
  assert.equal(h.up, false);
  assert.equal(h.since, 6);
  assert.equal(h.lastError, 'refused');
  h = nextHealth(h, true, 2, 3, 7);
  assert.equal(h.up, false);
  h = nextHealth(h, true, 2, 3, 8);
  assert.equal(h.up, true);
  assert.equal(h.since, 8);
});

test('passive ejection grows with repeated ejections and is capped', () => {
  const cfg = { consecutive_failures: 2, ejection: 1000, max_ejection: 3000 };
  let e = nextEjection(NO_EJECTION, false, cfg, 0);
  assert.equal(e.until, 0);
  e = nextEjection(e, false, cfg, 0);
  assert.equal(e.until, 1000);
  e = nextEjection(nextEjection(e, false, cfg, 1500), false, cfg, 1500);
  assert.equal(e.until, 1500 + 2000);
  e = nextEjection(nextEjection(e, false, cfg, 4000), false, cfg, 4000);
  assert.equal(e.until, 4000 + 3000);
  assert.equal(nextEjection(e, true, cfg, 8000).count, 0);
});

test('slow start ramps the weight linearly after recovery', () => {
  assert.equal(slowstartWeight(10, 0, 0, 5), 10);
  assert.equal(slowstartWeight(10, 1000, 10_000, 6000), 5);
  assert.equal(slowstartWeight(10, 1000, 10_000, 1000), 1);
  assert.equal(slowstartWeight(10, 1000, 10_000, 20_000), 10);
});

test('PROXY v1 and v2 round-trip, with trailing bytes kept', () => {
  const a4 = { family: 4 as const, source: '192.0.2.7', sourcePort: 40000, dest: '127.0.0.1', destPort: 25 };
  const a6 = { family: 6 as const, source: '2001:db8::7', sourcePort: 1, dest: '::1', destPort: 587 };
  for (const enc of [encodeV1, encodeV2]) {
    for (const a of [a4, a6]) {
      const buf = Buffer.concat([enc(a), Buffer.from('EHLO x\r\n')]);
      assert.equal(parseProxyHeader(buf.subarray(0, 5)).state, 'more');
      const r = parseProxyHeader(buf);
      assert.equal(r.state, 'done');
      if (r.state === 'done') {
        assert.deepEqual(r.addresses, a);
        assert.equal(r.rest.toString(), 'EHLO x\r\n');
      }
    }
  }
  assert.equal(parseProxyHeader(Buffer.from('EHLO foo\r\n')).state, 'error');
  assert.equal(parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4 nope 1 2\r\n')).state, 'error');
  const unknown = parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'));
  assert.ok(unknown.state === 'done' && unknown.addresses === null);
});

test('durations, addresses and networks parse or explain why not', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('2s'), 2000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('5d'), 432_000_000);
  assert.throws(() => parseDuration('5 minutes'), /not a valid duration/);
  assert.deepEqual(parseAddress('127.0.0.1:25'), { host: '127.0.0.1', port: 25 });
  assert.deepEqual(parseAddress('[::1]:587'), { host: '::1', port: 587 });
  assert.throws(() => parseAddress('127.0.0.1'), /host:port/);
  assert.throws(() => parseAddress('127.0.0.1:70000'), /out of range/);
  assert.ok(cidrContains(parseCidr('127.0.0.0/8'), '127.0.0.2'));
  assert.ok(!cidrContains(parseCidr('127.0.0.1/32'), '127.0.0.2'));
  assert.ok(cidrContains(parseCidr('::1'), '::1'));
  assert.ok(cidrContains(parseCidr('10.0.0.0/8'), '::ffff:10.1.2.3'));
  assert.throws(() => parseCidr('10.0.0.0/33'), /not a valid network/);
});

test('SRV answers: best priority serves, the rest are backups, weights kept', () => {
  const servers = srvToServers(
    [
      { priority: 10, weight: 3, port: 2601, target: 'a.test' },
      { priority: 10, weight: 1, port: 2602, target: 'b.test' },
      { priority: 20, weight: 0, port: 2603, target: 'c.test' },
    ],
    (t) => ({ 'a.test': ['127.0.0.1'], 'b.test': ['127.0.0.2'], 'c.test': ['127.0.0.3'] })[t] ?? [],
  );
  assert.deepEqual(servers.map((s) => [s.address.host, s.address.port, s.weight, s.backup]), [
    ['127.0.0.1', 2601, 3, false],
    ['127.0.0.2', 2602, 1, false],
    ['127.0.0.3', 2603, 1, true],
  ]);
});
