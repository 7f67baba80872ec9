// Pure decisions of the relay: route choice, retry schedule, reply classes, transport maps,
// throttle arithmetic, backoff, warm-up caps and traffic classes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRate, parseSize } from '../../src/config/units.js';
import { classify } from '../../src/delivery/deliver.js';
import { buildDsn } from '../../src/delivery/dsn.js';
import { chooseRoute, domainMatches } from '../../src/routing/route.js';
import { parseRoutesFromTransport } from '../../src/routing/transport.js';
import { expired, nextAttempt, retryDelay } from '../../src/scheduler/retry.js';
import { afterReply, effectiveLimits, isThrottleReply, newPair, pairAdmits, pairLimits, rateReadyAt, rateTake, rateTokens, ruleKeyFor, type PairState } from '../../src/scheduler/throttle.js';
import { nextDay, warmupCap, warmupProgress } from '../../src/scheduler/warmup.js';
import { classOf, takeHeader } from '../../src/policy/classify.js';
import { enhancedCode, replyLine } from '../../src/delivery/delivery-log.js';

test('domain patterns: exact, *.sub (subdomains only), .sub (Postfix), any case', () => {
  assert.ok(domainMatches('gmail.com', 'GMAIL.com'));
  assert.ok(!domainMatches('gmail.com', 'mail.gmail.com'));
  assert.ok(domainMatches('*.gmail.com', 'mail.gmail.com'));
  assert.ok(!domainMatches('*.gmail.com', 'gmail.com'));
  assert.ok(!domainMatches('*.gmail.com', 'notgmail.com'));
  assert.ok(domainMatches('.example.com', 'a.b.example.com'));
});

test('routes: first match wins, every given key must match, a keyless route is the default', () => {
  const rules = [
    { domains: ['gmail.com'], class: 'marketing', pool: 'bulk' },
    { domains: ['gmail.com'], pool: 'google' },
    { sender_domains: ['shop.test'], pool: 'shop' },
    { user: 'billing', pool: 'tx' },
    { listener: 'internal', pool: 'int' },
    { pool: 'default' },
  ];
  assert.equal(chooseRoute(rules, { domain: 'gmail.com', class: 'marketing' })!.rule.pool, 'bulk');
  assert.equal(chooseRoute(rules, { domain: 'gmail.com', class: 'transactional' })!.rule.pool, 'google');
  assert.equal(chooseRoute(rules, { domain: 'x.org', senderDomain: 'shop.test' })!.rule.pool, 'shop');
  assert.equal(chooseRoute(rules, { domain: 'x.org', user: 'billing' })!.rule.pool, 'tx');
  assert.equal(chooseRoute(rules, { domain: 'x.org', listener: 'internal' })!.rule.pool, 'int');
  const d = chooseRoute(rules, { domain: 'x.org' })!;
  assert.equal(d.rule.pool, 'default');
  assert.deepEqual(d.why, ['default route (no match keys)']);
  assert.equal(chooseRoute([{ domains: ['a.test'], pool: 'p' }], { domain: 'b.test' }), null);
});

test('retry schedule: the last interval repeats; the last try lands at max_age, then it expires', () => {
  const sched = [1000, 5000, 30000];
  assert.equal(retryDelay(sched, 1), 1000);
  assert.equal(retryDelay(sched, 2), 5000);
  assert.equal(retryDelay(sched, 9), 30000);
  assert.equal(nextAttempt(sched, 1, 0, 60_000, 100), 1100);
  assert.equal(nextAttempt(sched, 5, 0, 60_000, 50_000), 60_000);
  assert.equal(nextAttempt(sched, 6, 0, 60_000, 60_000), null);
  assert.ok(expired(0, 1000, 1000));
  assert.ok(!expired(0, 1000, 999));
});

test('reply classes: 2xx delivered, 5xx failed, 4xx and no answer deferred', () => {
  assert.equal(classify(250), 'delivered');
  assert.equal(classify(550), 'failed');
  assert.equal(classify(421), 'deferred');
  assert.equal(classify(null), 'deferred');
});

test('Postfix transport lines become next hops; bad lines name their line number', () => {
  assert.deepEqual(parseRoutesFromTransport('# c\nexample.com smtp:[10.0.0.1]:2525\n.example.com  smtp:[10.0.0.1]:2525\nfoo.org relay:mx.foo.org\n'), [
    { domains: ['example.com'], host: '10.0.0.1', port: 2525, line: 2 },
    { domains: ['.example.com'], host: '10.0.0.1', port: 2525, line: 3 },
    { domains: ['foo.org'], host: 'mx.foo.org', port: 25, line: 4 },
  ]);
  assert.throws(() => parseRoutesFromTransport('a.test local:\n'), /line 1: cannot read next hop "local:"/);
});

test('sizes parse with units', () => {
  assert.equal(parseSize('25MB'), 25 * 1024 * 1024);
  assert.equal(parseSize('512k'), 512 * 1024);
  assert.equal(parseSize(1000), 1000);
  assert.throws(() => parseSize('big'), /not a valid size/);
});

test('a DSN is a multipart/report naming each recipient, with the original headers only', () => {
  const dsn = buildDsn({
    hostname: 'gw.test',
    queueId: 'Q1',
    sender: 'a@s.test',
    arrival: new Date(0),
    recipients: [{ rcpt: 'x@d.test', action: 'failed', code: 550, text: '550 5.1.1 no such user', server: 'mx1' }],
    reason: 'rejected',
    original: Buffer.from('Subject: hi\r\nX-A: 1\r\n\r\nsecret body\r\n'),
  }).toString();
  assert.match(dsn, /report-type=delivery-status/);
  assert.match(dsn, /Status: 5\.1\.1/);
  assert.match(dsn, /Remote-MTA: dns; mx1/);
  assert.match(dsn, /Subject: hi\r\nX-A: 1/);
  assert.doesNotMatch(dsn, /secret body/);
});

test('rate limiter (GCRA): a burst, then one message per interval', () => {
  const interval = 100;
  let tat = 0;
  const now = 1_000;
  // burst 3: three go at once, the fourth waits one interval
  for (let i = 0; i < 3; i++) {
    assert.equal(rateReadyAt(tat, interval, 3, now), now);
    tat = rateTake(tat, interval, now);
  }
  assert.equal(rateTokens(tat, interval, 3, now), 0);
  assert.equal(rateReadyAt(tat, interval, 3, now), now + interval);
  assert.equal(rateTokens(tat, interval, 3, now + 250), 2);
  assert.equal(rateReadyAt(0, 0, 1, now), now, 'no rate: always ready');
});

test('a pair admits within concurrency and rate; backoff halves and recovers step by step, repeated throttling at the floor suspends', () => {
  const rule = { burst: 1, concurrency: 4, rate: { count: 600, perMs: 60_000 } };
  const policy = { patterns: [/custom slow down/i], decrease: 0.5, min_factor: 0.1, increase: 0.1, suspend_after: 3, window: 60_000, suspend_for: 600_000 };
  let p = newPair();
  assert.deepEqual(effectiveLimits(rule, 1, 20), { concurrency: 4, interval: 100, connectInterval: 0 });
  assert.equal(pairAdmits(p, effectiveLimits(rule, 1, 20), 1, 0, true).ok, true);
  assert.match((pairAdmits({ ...p, inflight: 4 }, effectiveLimits(rule, 1, 20), 1, 0, true) as { reason: string }).reason, /concurrency limit 4/);
  p = afterReply({ ...p, inflight: 4 }, 421, '4.7.0 Try again later', policy, 1000);
  assert.equal(p.factor, 0.5);
  assert.deepEqual(effectiveLimits(rule, p.factor, 20), { concurrency: 2, interval: 200, connectInterval: 0 });
  p = afterReply(p, 250, '2.0.0 Ok', policy, 2000);
  assert.equal(p.factor, 0.6);
  p = afterReply(p, 550, '5.1.1 unknown user', policy, 2000);
  assert.equal(p.factor, 0.6, 'a permanent failure is no throttling news');
  p = afterReply(p, 451, 'custom slow down please', policy, 3000);
  assert.equal(p.factor, 0.3);
  p = afterReply(p, 450, '4.7.0 [TSS04] Messages from 1.2.3.4 temporarily deferred', policy, 3500);
  assert.equal(p.factor, 0.3, 'a reply within a second of the last cut answers a delivery sent before it: no second cut');
  for (const t of [4000, 5000]) p = afterReply(p, 421, '4.7.0 Try again later', policy, t);
  assert.equal(p.factor, 0.1, 'cut to the floor (min_factor)');
  assert.equal(p.strikes.length, 0, 'cuts that could still help are no strikes');
  for (const t of [6000, 7000]) p = afterReply(p, 421, '4.7.0 Try again later', policy, t);
  assert.equal(p.suspendedUntil, 0);
  p = afterReply(p, 421, '4.7.0 Try again later', policy, 8000);
  assert.equal(p.suspendedUntil, 8000 + 600_000, 'the third push-back at the floor within the window suspends the pair');
  assert.match((pairAdmits(p, effectiveLimits(rule, p.factor, 20), 1, 9000, false) as { reason: string }).reason, /suspended/);
  assert.ok(p.factor >= policy.min_factor);
});

test('a configured concurrency (and its rate) is never cut below min_factor, however many deliveries drew the push-back', () => {
  const rule = { burst: 1, concurrency: 20, rate: { count: 600, perMs: 60_000 } };
  const policy = { patterns: [], decrease: 0.5, min_factor: 0.1, increase: 0.05, suspend_after: 3, window: 60_000, suspend_for: 600_000 };
  let p: PairState = { ...newPair(), inflight: 20 };
  for (let t = 1000; t <= 6000; t += 1000) p = afterReply(p, 421, '4.7.0 Try again later', policy, t, rule);
  assert.equal(p.factor, 0.1, 'the floor is min_factor of the configured limits');
  assert.deepEqual(pairLimits(rule, p), { concurrency: 2, interval: 1000, connectInterval: 0 }, '2 of 20 at once, 60 of 600 a minute');
  assert.equal(p.suspendedUntil, 0);
  for (let t = 7000; t <= 9000; t += 1000) p = afterReply(p, 421, '4.7.0 Try again later', policy, t, rule);
  assert.equal(p.factor, 0.1);
  assert.ok(p.suspendedUntil > 0, 'pushing back at the floor suspends');
});

test('no configured concurrency: the deliveries in flight at the first push-back are the base to cut; a suspension ends with one probe, then the pair climbs', () => {
  const rule = { burst: 1 };
  const policy = { patterns: [], decrease: 0.5, min_factor: 0.1, increase: 0.05, suspend_after: 2, window: 60_000, suspend_for: 600_000 };
  let p: PairState = { ...newPair(), inflight: 13 };
  assert.equal(pairLimits(rule, p).concurrency, Infinity, 'nothing configured, no push-back: no limit');
  p = afterReply(p, 421, '4.7.0 Error: too many connections from 127.0.0.1', policy, 1000);
  assert.equal(p.base, 13);
  assert.equal(pairLimits(rule, p).concurrency, 6, 'half of the 13 that drew the 421');
  // Eleven more 421s from the same burst of connections: one push-back, not eleven.
  for (let i = 0; i < 11; i++) p = afterReply(p, 421, '4.7.0 Error: too many connections', policy, 1100 + i * 10);
  assert.equal(pairLimits(rule, p).concurrency, 6);
  assert.equal(p.suspendedUntil, 0);
  // Still pushing back, a second apart: down to one delivery at a time (below min_factor when that is what one is).
  for (let t = 2000; t <= 4000; t += 1000) p = afterReply(p, 421, '4.7.0 Error: too many connections', policy, t);
  assert.equal(pairLimits(rule, p).concurrency, 1);
  assert.equal(p.suspendedUntil, 0, 'the cuts went to the floor without a strike');
  p = afterReply(p, 421, '4.7.0 Error: too many connections', policy, 5000);
  assert.equal(p.suspendedUntil, 0);
  p = afterReply(p, 421, '4.7.0 Error: too many connections', policy, 6000);
  assert.equal(p.suspendedUntil, 6000 + 600_000, 'at one delivery at a time and still refused: suspended');
  assert.equal(p.probe, true);
  const after = 6000 + 600_001;
  assert.equal(pairAdmits({ ...p, inflight: 0 }, pairLimits(rule, p), 1, after, true).ok, true, 'the suspension over: one probe delivery');
  assert.match((pairAdmits({ ...p, inflight: 1 }, pairLimits(rule, p), 1, after, true) as { reason: string }).reason, /concurrency limit 1/, 'and only one');
  assert.equal(afterReply(p, 550, '5.1.1 no such user', policy, after + 100).probe, false, 'a permanent failure is an answer too: the probe is over');
  assert.equal(afterReply(p, null, 'connection refused', policy, after + 100).probe, true, 'no answer: still probing');
  p = afterReply(p, 250, '2.0.0 Ok', policy, after + 100);
  assert.equal(p.probe, false);
  const climbed = [];
  for (let i = 0; i < 4; i++) {
    p = afterReply(p, 250, '2.0.0 Ok', policy, after + 200 + i);
    climbed.push(pairLimits(rule, p).concurrency);
  }
  assert.ok(climbed[3] > climbed[0] && climbed[3] <= 13, `climbs back one step per clean delivery: ${climbed}`);
  while (p.factor < 1) p = afterReply(p, 250, '2.0.0 Ok', policy, after + 1000);
  assert.equal(p.base, undefined, 'recovered: no limit again');
  assert.equal(pairLimits(rule, p).concurrency, Infinity);
});

test('throttling replies: the built-in table and configured patterns, only on 421/450/451', () => {
  assert.ok(isThrottleReply(421, '4.7.0 Try again later', []));
  assert.ok(isThrottleReply(421, '4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume', []));
  assert.ok(isThrottleReply(451, '4.7.500 Server busy. Please try again later. (S3150)', []));
  assert.ok(isThrottleReply(450, '4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages', [/at a rate that prevents/]));
  assert.ok(isThrottleReply(421, 'Too many concurrent SMTP connections', []));
  assert.equal(isThrottleReply(450, '4.2.0 Mailbox full', []), false);
  assert.equal(isThrottleReply(550, '5.7.1 rate limited', []), false, 'a 5xx is never throttling');
});

test('warm-up caps by day since start; nothing before the start; warm after the plan', () => {
  const start = Date.UTC(2026, 10, 20);
  const plan = { start, schedule: [50, 100, 500], overflow: 'spill' as const };
  assert.equal(warmupCap(plan, start - 1), 0);
  assert.equal(warmupCap(plan, start + 3_600_000), 50);
  assert.equal(warmupCap(plan, start + 86_400_000 + 5), 100);
  assert.equal(warmupCap(plan, start + 3 * 86_400_000), null);
  assert.equal(nextDay(start + 5), start + 86_400_000);
  assert.deepEqual(warmupProgress(plan, 30, start + 10), { day: 0, cap: 50, sent: 30, remaining: 20 });
});

test('classes: user over header over sender domain over listener; the class header is taken out, folded lines too', () => {
  const by = { 'news.example.com': 'marketing', '*.bulk.example.com': 'marketing' };
  assert.equal(classOf({ userClass: 'transactional', headerClass: 'marketing' }, by), 'transactional');
  assert.equal(classOf({ headerClass: 'marketing', senderDomain: 'x.test', listenerClass: 'transactional' }, by), 'marketing');
  assert.equal(classOf({ senderDomain: 'News.Example.com', listenerClass: 'transactional' }, by), 'marketing');
  assert.equal(classOf({ senderDomain: 'a.bulk.example.com' }, by), 'marketing');
  assert.equal(classOf({ senderDomain: 'x.test', listenerClass: 'transactional' }, by), 'transactional');
  const msg = Buffer.from('From: a@b\r\nX-Traffic-Class: mark\r\n eting\r\nSubject: hi\r\n\r\nX-Traffic-Class: body stays\r\n');
  const t = takeHeader(msg, 'X-Traffic-Class');
  assert.equal(t.value, 'mark eting');
  assert.equal(t.message.toString(), 'From: a@b\r\nSubject: hi\r\n\r\nX-Traffic-Class: body stays\r\n');
  assert.equal(takeHeader(Buffer.from('Subject: x\n\nbody'), 'X-Traffic-Class').value, undefined);
});

test('shaping rules: exact domain, then the longest *.parent, then default; enhanced codes are read from replies', () => {
  const keys = ['default', 'gmail.com', '*.example.com', '*.mail.example.com'];
  assert.equal(ruleKeyFor('Gmail.com', keys), 'gmail.com');
  assert.equal(ruleKeyFor('a.mail.example.com', keys), '*.mail.example.com');
  assert.equal(ruleKeyFor('x.example.com', keys), '*.example.com');
  assert.equal(ruleKeyFor('yahoo.com', keys), 'default');
  assert.equal(ruleKeyFor('yahoo.com', ['gmail.com']), undefined);
  assert.equal(enhancedCode('250 2.0.0 Ok: queued as X'), '2.0.0');
  assert.equal(enhancedCode('4.7.0 Try again later'), '4.7.0');
  assert.equal(enhancedCode('550 no such user'), null);
  // Delivery log lines say the code once (it was "250 250 2.0.0 Ok").
  assert.equal(replyLine(250, '250 2.0.0 Ok: queued as X'), '250 2.0.0 Ok: queued as X');
  assert.equal(replyLine(451, '4.4.1 connection refused'), '451 4.4.1 connection refused');
  assert.equal(replyLine(250, '250-first line'), '250-first line');
  assert.equal(replyLine(null, 'connection timed out'), '- connection timed out');
  assert.deepEqual(parseRate('600/min'), { count: 600, perMs: 60_000 });
  assert.throws(() => parseRate('fast'), /not a valid rate/);
});
