// Hardening decisions that need a process or a thread: a DKIM worker thread that dies (a real
// worker thread, ended as a crash would end it) or hangs, and certificate warnings (openssl).
// The pure parts are in test/unit/hardening-decisions.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { configWarnings, loadConfig } from '../src/config/load.js';
import { DkimSigner, loadKeys } from '../src/signing/dkim.js';
import { runCli, selfSignedCert, stopAll, tmpDir } from './helpers/peers.js';

after(stopAll);

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
