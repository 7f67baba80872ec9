// The pure parts of hardening: client keys (IPv6 per /64), bounded tables, identity binding,
// and a DKIM worker thread that dies (a real worker thread, ended as a crash would end it).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { BoundedMap, clientKey } from '../src/policy/client-key.js';
import { identity } from '../src/policy/identity.js';
import { configWarnings, loadConfig } from '../src/config/load.js';
import { survivable } from '../src/runtime/last-resort.js';
import { DkimSigner, loadKeys } from '../src/signing/dkim.js';
import { runCli, selfSignedCert, stopAll, tmpDir } from './helpers/peers.js';

after(stopAll);

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

test('a DKIM worker that dies fails its jobs with an error (never a hang), and is replaced', async () => {
  const dir = tmpDir();
  const file = path.join(dir, 'k.pem');
  assert.equal(runCli(['dkim', 'keygen', '--domain', 'a.test', '--selector', 's', '--out', file]).code, 0);
  const signer = new DkimSigner(loadKeys({ domains: { 'a.test': { selector: 's', key_file: file, algorithm: 'rsa-sha256' } }, threads: 1 }), undefined, 1);
  const msg = Buffer.from('From: x@a.test\r\nSubject: t\r\n\r\nbody\r\n');
  assert.match((await signer.sign(msg, 'a.test')).toString(), /^DKIM-Signature:/);
  const big = Buffer.alloc(20 * 1024 * 1024, 'a');
  const pending = signer.sign(Buffer.concat([msg, big]), 'a.test');
  await signer.crashOne();
  await assert.rejects(pending, /DKIM worker exited/);
  assert.match((await signer.sign(msg, 'a.test')).toString(), /^DKIM-Signature:/, 'a new worker signs again');
  await signer.close();
  fs.rmSync(file);
});

test('dkim.threads changed by a reload: the pool grows, and shrinks without failing the jobs of the workers it retires', async () => {
  const dir = tmpDir();
  const file = path.join(dir, 'k.pem');
  assert.equal(runCli(['dkim', 'keygen', '--domain', 'a.test', '--selector', 's', '--out', file]).code, 0);
  const keys = loadKeys({ domains: { 'a.test': { selector: 's', key_file: file, algorithm: 'rsa-sha256' } }, threads: 1 });
  const signer = new DkimSigner(keys, undefined, 1);
  signer.setKeys(keys, undefined, 3);
  assert.equal(signer.threads, 3);
  const msg = Buffer.from('From: x@a.test\r\nSubject: t\r\n\r\nbody\r\n');
  // Jobs on every worker, then the pool shrinks under them: each still gets its signature.
  const jobs = Array.from({ length: 6 }, () => signer.sign(Buffer.concat([msg, Buffer.alloc(2 * 1024 * 1024, 'a')]), 'a.test'));
  signer.setKeys(keys, undefined, 1);
  assert.equal(signer.threads, 1);
  for (const signed of await Promise.all(jobs)) assert.match(signed.toString('latin1', 0, 20), /^DKIM-Signature:/);
  assert.match((await signer.sign(msg, 'a.test')).toString(), /^DKIM-Signature:/);
  await signer.close();
});

test('a DKIM worker that hangs fails its job after the timeout and is replaced (test hook SMTPLB_TEST_DKIM_FAULT)', async () => {
  const dir = tmpDir();
  const file = path.join(dir, 'k.pem');
  const fault = path.join(dir, 'fault');
  assert.equal(runCli(['dkim', 'keygen', '--domain', 'a.test', '--selector', 's', '--out', file]).code, 0);
  process.env.SMTPLB_TEST_DKIM_FAULT = fault; // read by each worker (and its replacements) as it starts
  after(() => delete process.env.SMTPLB_TEST_DKIM_FAULT);
  const signer = new DkimSigner(loadKeys({ domains: { 'a.test': { selector: 's', key_file: file, algorithm: 'rsa-sha256' } }, threads: 1 }), undefined, 1, { timeoutMs: 500 });
  const msg = Buffer.from('From: x@a.test\r\nSubject: t\r\n\r\nbody\r\n');
  // The worker has started (a job's time limit runs from then): it signs.
  assert.match((await signer.sign(msg, 'a.test')).toString(), /^DKIM-Signature:/);
  fs.writeFileSync(fault, 'hang');
  const t0 = Date.now();
  await assert.rejects(signer.sign(msg, 'a.test'), /DKIM signing took over 500 ms/);
  assert.ok(Date.now() - t0 < 3000);
  assert.match((await signer.sign(msg, 'a.test')).toString(), /^DKIM-Signature:[^]*d=a\.test/, 'a new worker signs again');
  fs.writeFileSync(fault, 'exit');
  await assert.rejects(signer.sign(msg, 'a.test'), /DKIM worker exited/);
  assert.match((await signer.sign(msg, 'a.test')).toString(), /^DKIM-Signature:/);
  await signer.close();
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

test('certificate warnings: expiring within 30 days, and expired', () => {
  const dir = tmpDir();
  const { cert, key } = selfSignedCert(dir, 'gw.test'); // valid for 2 days
  const file = path.join(dir, 'smtplb.yaml');
  fs.writeFileSync(file, `hostname: gw.test\nlisteners:\n  - { name: sub, listen: 127.0.0.1:2587, mode: smtp, tls: { cert: ${cert}, key: ${key} } }\npools:\n  out: { servers: [ { name: s1, address: 127.0.0.1:2525 } ] }\nroutes: [ { pool: out } ]\n`);
  const loaded = loadConfig(file);
  assert.match(configWarnings(loaded).join('\n'), /smtplb\.yaml:3:\d+: listeners\[0\]\.tls\.cert: .*cert\.pem expires in [01] days/);
  assert.match(configWarnings(loaded, Date.now() + 5 * 86_400_000).join('\n'), /smtplb\.yaml:3:\d+: listeners\[0\]\.tls\.cert: .*cert\.pem expired on /);
  assert.deepEqual(configWarnings(loaded, Date.now() - 60 * 86_400_000), []);
});
