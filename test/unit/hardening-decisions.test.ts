// The pure parts of hardening: client keys (IPv6 per /64), bounded tables, identity binding,
// and which errors the last resort survives. The DKIM worker threads and the certificate
// warnings (they run the CLI and openssl) are in test/hardening-decisions.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BoundedMap, clientKey } from '../../src/policy/client-key.js';
import { identity } from '../../src/policy/identity.js';
import { survivable } from '../../src/runtime/last-resort.js';

test('client keys: IPv4 as is, IPv4-mapped as IPv4, IPv6 by its /64 in any spelling', () => {
  assert.equal(clientKey('192.0.2.7'), '192.0.2.7');
  assert.equal(clientKey('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(clientKey('2001:db8:1:2::1'), '2001:db8:1:2::/64');
  assert.equal(clientKey('2001:0db8:0001:0002:ffff:0:0:9'), '2001:db8:1:2::/64');
  assert.notEqual(clientKey('2001:db8:1:3::1'), clientKey('2001:db8:1:2::1'));
  assert.equal(clientKey('::1'), '0:0:0:0::/64');
});

test('a bounded table drops stale entries first, then the oldest, and never grows past its ceiling', () => {
  const m = new BoundedMap<{ until: number }>(100, (v) => v.until < 1000);
  for (let i = 0; i < 10_000; i++) m.set(`k${i}`, { until: i % 2 ? 5000 : 0 });
  assert.ok(m.size <= 100);
  assert.ok(m.has('k9999'));
});

test('identity: sender_domains bind the header From; relay clients sign only for an aligned From', () => {
  const user = { name: 'app', sender_domains: ['a.test', '*.a.test'] };
  const one = (domain: string) => ({ kind: 'ok' as const, domain, domains: [domain] });
  assert.deepEqual(identity({ user, author: one('b.test'), senderDomain: 'a.test', rule: 'aligned' }), { ok: false, code: 550, text: '5.7.1 user app may not send as b.test (header From)' });
  assert.deepEqual(identity({ user, author: one('news.a.test'), senderDomain: 'a.test', rule: 'aligned' }), { ok: true, signFor: ['news.a.test'] });
  assert.deepEqual(identity({ user, author: { kind: 'bad', rule: 'more than one From header (RFC 5322 3.6)' }, senderDomain: 'a.test', rule: 'aligned' }), { ok: false, code: 550, text: '5.7.1 user app: more than one From header (RFC 5322 3.6)' });
  assert.deepEqual(identity({ user, author: { kind: 'ok', domain: 'a.test', domains: ['b.test', 'a.test'] }, senderDomain: 'a.test', rule: 'aligned' }), { ok: false, code: 550, text: '5.7.1 user app may not send as b.test (header From/Sender)' });
  assert.deepEqual(identity({ author: one('b.test'), senderDomain: 'a.test', rule: 'aligned' }), { ok: true, signFor: ['a.test'] });
  assert.deepEqual(identity({ author: one('mail.a.test'), senderDomain: 'a.test', rule: 'aligned' }), { ok: true, signFor: ['mail.a.test', 'a.test'] });
  assert.deepEqual(identity({ author: one('b.test'), senderDomain: 'a.test', rule: 'any' }), { ok: true, signFor: ['b.test', 'a.test'] });
  // A From that does not parse, or shows two domains, is never signed for.
  assert.deepEqual(identity({ author: { kind: 'bad', rule: 'x' }, senderDomain: 'a.test', rule: 'any' }), { ok: true, signFor: [undefined, 'a.test'] });
  assert.deepEqual(identity({ author: { kind: 'ok', domain: 'a.test', domains: ['a.test', 'b.test'] }, senderDomain: 'a.test', rule: 'any' }), { ok: true, signFor: [undefined, 'a.test'] });
});

test('the last resort: bugs and refused writes are survived; a spool database that cannot be trusted, a failed sync or a broken invariant is not', () => {
  assert.equal(survivable(new TypeError("Cannot read properties of undefined (reading 'x')")), true);
  assert.equal(survivable(new URIError('URI malformed')), true);
  assert.equal(survivable('a string thrown'), true);
  assert.equal(survivable(undefined), true);
  assert.equal(survivable(Object.assign(new Error('database disk image is malformed'), { code: 'SQLITE_CORRUPT' })), false);
  // A write the filesystem refused was rolled back: the spool refuses mail and probes (spool-readonly.test.ts).
  assert.equal(survivable(Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_WRITE' })), true);
  // A failed sync leaves the disk's content unknown.
  assert.equal(survivable(Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_FSYNC' })), false);
  assert.equal(survivable(Object.assign(new Error('syncing the spool index failed after a commit'), { code: 'SPOOL_FATAL' })), false);
  assert.equal(survivable(Object.assign(new Error('file is not a database'), { code: 'SQLITE_NOTADB' })), false);
  assert.equal(survivable(Object.assign(new Error('invariant'), { code: 'ERR_ASSERTION' })), false);
  assert.equal(survivable(Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' })), true);
});
