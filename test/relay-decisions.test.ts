// Pure decisions of the relay: route choice, retry schedule, reply classes, transport maps.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSize } from '../src/config/units.js';
import { classify } from '../src/delivery/deliver.js';
import { buildDsn } from '../src/delivery/dsn.js';
import { chooseRoute, domainMatches } from '../src/routing/route.js';
import { parseRoutesFromTransport } from '../src/routing/transport.js';
import { expired, nextAttempt, retryDelay } from '../src/scheduler/retry.js';

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
