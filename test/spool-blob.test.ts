// The spool keeps small bodies in its index (a BLOB in the message's row, committed with the
// envelope) and only large ones in files:
// - a spool written before that (test/fixtures/spool-v1: bodies in files, no body column; see
//   make-fixture.mjs there) is picked up on start and every message delivered once, intact;
// - small messages make no file at all, and under strace each one's bytes reach the WAL, and
//   the WAL is fdatasync'd, before its 250 (the durability order that
//   test/durability-order.test.ts proves for messages with a file);
// - a message past INLINE_MAX still goes through a file and arrives intact.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, test } from 'node:test';
import Database from 'better-sqlite3';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { INLINE_MAX } from '../src/spool/spool.js';
import { startUnderStrace, type Call } from './helpers/strace.js';
import { queueIdle } from './helpers/admin.js';
import { ROOT, freePort, haveCommand, runCli, startSink, startSmtplb, stopAll, tmpDir, waitFor } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);

const TOKEN = 'test-token-blob';
const FIXTURE = path.join(ROOT, 'test/fixtures/spool-v1');

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** A message as smtp-sink dumped it: its recipients (X-Rcpt-Args), Message-Id and body (after the first blank line, CRLF). */
function parseDump(text: string): { rcpts: string[]; messageId: string; body: string } {
  const t = text.replace(/\r?\n/g, '\r\n');
  const rcpts = [...t.matchAll(/^X-Rcpt-Args: <([^>]+)>/gim)].map((m) => m[1].toLowerCase());
  const messageId = /^Message-Id:\s*(<[^>]+>)/im.exec(t)?.[1] ?? '';
  const at = t.indexOf('\r\n\r\n');
  // smtp-sink ends each dump with an empty line of its own.
  return { rcpts, messageId, body: at < 0 ? '' : t.slice(at + 4).replace(/\r\n$/, '') };
}

/** Files under the spool's message directory (bodies kept outside the index). */
function messageFiles(spool: string): string[] {
  const dir = path.join(spool, 'messages');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => fs.statSync(path.join(dir, f)).isFile() && f !== 'probe');
}

const config = (port: number, upstream: number, admin?: number) => `hostname: gw.test
log: { level: warn }
spool: ./spool
${admin ? `admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }\n` : ''}listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${upstream} } ] }
routes: [ { pool: out } ]
queue: { retry: [1s], max_age: 36500d, min_free: 0 }
`;

test('a spool written by the previous version (bodies in files, no body column) is delivered after upgrade: every message once, bodies intact', async () => {
  const dir = tmpDir();
  const spool = path.join(dir, 'spool');
  fs.mkdirSync(spool);
  const db = new Database(path.join(spool, 'queue.db'));
  db.exec(fs.readFileSync(path.join(FIXTURE, 'queue.sql'), 'utf8'));
  db.close();
  fs.cpSync(path.join(FIXTURE, 'messages'), path.join(spool, 'messages'), { recursive: true });
  const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'manifest.json'), 'utf8')) as { tag: string; messageId: string; recipients: string[]; bodyBytes: number; bodySha256: string }[];
  const recipients = manifest.flatMap((m) => m.recipients);

  const sink = await startSink();
  const admin = await freePort();
  const lb = await startSmtplb(config(await freePort(), sink.port, admin), { dir });
  // One delivery per message and destination domain.
  const deliveries = manifest.reduce((n, m) => n + new Set(m.recipients.map((r) => r.split('@')[1])).size, 0);
  await sink.settle(deliveries, 30_000);
  await waitFor('queue empty', () => JSON.parse(runCli(['queue', 'list', '--json', '-c', lb.file]).stdout).messages.length === 0, 15_000, 300);
  // Anything sent twice would be here once nothing is in flight either.
  await queueIdle(admin, 15_000, TOKEN);

  const got = sink.messages().map(parseDump);
  assert.equal(got.length, deliveries, 'no delivery twice');
  const seen = got.flatMap((g) => g.rcpts).sort();
  assert.deepEqual(seen, [...recipients].map((r) => r.toLowerCase()).sort(), 'each recipient exactly once');
  for (const g of got) {
    const m = manifest.find((x) => x.messageId === g.messageId);
    assert.ok(m, `a message from the fixture: ${g.messageId}`);
    assert.equal(Buffer.byteLength(g.body), m!.bodyBytes, `${m!.tag}: body length`);
    assert.equal(sha(g.body), m!.bodySha256, `${m!.tag}: body intact`);
    assert.ok(g.rcpts.every((r) => m!.recipients.includes(r)), `${m!.tag}: sent to its own recipients`);
  }
  assert.deepEqual(messageFiles(spool), [], 'the old message files are removed once delivered');
});

test('small messages leave no file in the spool (their bodies are in the index); one past INLINE_MAX goes through a file; all arrive intact once released', async () => {
  const dir = tmpDir();
  const spool = path.join(dir, 'spool');
  const [port, admin] = [await freePort(), await freePort()];
  const sink = await startSink();
  let lb = await startSmtplb(config(port, sink.port, admin), { dir });
  // Held: the mail stays queued while we look at the spool.
  const held = runCli(['suspend', 'blob.test', '--pool', 'out', '--for', '1h', '--reason', 'look at the spool', '-c', lb.file]);
  assert.equal(held.code, 0, held.stderr);
  const base: SendOptions = { server: `127.0.0.1:${port}`, from: 'app@client.test', to: [], headers: [], subject: 'blob', body: '', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };
  const N = 30;
  const small = Array.from({ length: N }, (_, i) => `small body ${i}\r\n${'0123456789abcdef'.repeat(64 * (i + 1))}`);
  const sent = await Promise.all(small.map((body, i) => sendOne({ ...base, to: [`s${i}@blob.test`], body }, i)));
  for (const r of sent) assert.ok(r.ok, r.ok ? '' : r.error);
  assert.deepEqual(messageFiles(spool), [], `${N} small messages, no body file`);
  // The spool is its process's alone: a second smtplb on it is refused, with the reason, and
  // the first one goes on (two queue managers on one spool would deliver the same mail twice).
  const other = path.join(dir, 'other.yaml');
  fs.writeFileSync(other, config(await freePort(), sink.port, await freePort()).replace(/spool: .*/, `spool: ${spool}`));
  const second = runCli(['start', '-c', other], { cwd: dir, timeoutMs: 20_000 });
  assert.notEqual(second.code, 0, 'the second process exits');
  assert.match(second.stderr + second.stdout, /cannot open the spool at .*: .* is in use by another process/);
  assert.doesNotMatch(second.stderr, /\n\s+at /, 'no stack trace');
  // Read the index with its owner stopped, then start it again on the same spool.
  await lb.stop();
  const ro = new Database(path.join(spool, 'queue.db'), { readonly: true });
  const rows = ro.prepare(`SELECT file, length(body) AS n FROM messages`).all() as { file: string; n: number | null }[];
  ro.close();
  assert.equal(rows.length, N);
  assert.ok(rows.every((r) => r.file === '' && (r.n ?? 0) > 0), 'every body is in its row');
  lb = await startSmtplb(config(port, sink.port, admin), { dir });

  const line = (i: number) => `large line ${String(i).padStart(6, '0')} ${'x'.repeat(60)}`;
  const large = Array.from({ length: Math.ceil((INLINE_MAX + 100_000) / 80) }, (_, i) => line(i)).join('\r\n');
  const big = await sendOne({ ...base, to: ['big@blob.test'], body: large }, N);
  assert.ok(big.ok, big.ok ? '' : big.error);
  assert.equal(messageFiles(spool).length, 1, 'the large message has its file');

  const sus = (await (await fetch(`http://127.0.0.1:${admin}/api/suspensions`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { suspensions: { id: string }[] };
  assert.equal(runCli(['unsuspend', sus.suspensions[0].id, '-c', lb.file]).code, 0);
  await sink.settle(N + 1, 30_000);
  await waitFor('queue empty', () => JSON.parse(runCli(['queue', 'list', '--json', '-c', lb.file]).stdout).messages.length === 0, 15_000, 300);
  // Out of the queue and nothing in flight: no second copy can still come.
  await queueIdle(admin, 15_000, TOKEN);
  const got = sink.messages().map(parseDump);
  assert.equal(got.length, N + 1, 'each message once');
  const byRcpt = new Map(got.map((g) => [g.rcpts[0], g]));
  for (let i = 0; i < N; i++) assert.equal(byRcpt.get(`s${i}@blob.test`)?.body, `${small[i]}\r\n`, `small ${i} intact`);
  assert.equal(sha(byRcpt.get('big@blob.test')?.body ?? ''), sha(`${large}\r\n`), 'the large message intact');
  assert.deepEqual(messageFiles(spool), [], 'the large message file is removed once delivered');
});

test('under strace: a small message makes no file, its bytes are written to the WAL and the WAL fdatasync\'d before its 250', { skip: haveCommand('strace') ? false : 'strace is not installed' }, async () => {
  const dir = tmpDir();
  const [port, down] = [await freePort(), await freePort()];
  const file = path.join(dir, 'smtplb.yaml');
  fs.writeFileSync(file, config(port, down));
  const traced = await startUnderStrace(file, port, { dir, calls: 'openat,fsync,fdatasync,pwrite64,write,writev', strsize: 8192 });
  const base: SendOptions = { server: `127.0.0.1:${port}`, from: 'a@client.test', to: [], headers: [], subject: 'durable', body: '', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };
  const sent: { id: string; marker: string }[] = [];
  for (let i = 0; i < 12; i++) {
    const marker = `inline-body-marker-${i}-${Date.now().toString(36)}`;
    const r = await sendOne({ ...base, to: [`u${i}@dest.test`], body: marker }, i);
    assert.ok(r.ok, r.ok ? '' : r.error);
    sent.push({ id: /queued as (\w+)/.exec(r.response)![1], marker });
  }
  const calls = await traced.finish();
  const walFds = new Set(calls.filter((c) => c.name === 'openat' && /queue\.db-wal"/.test(c.args) && Number(c.ret) >= 0).map((c) => c.ret));
  assert.ok(walFds.size > 0, 'the WAL is opened');
  const fd = (c: Call) => c.args.split(/[^\d]/)[0];
  assert.deepEqual(calls.filter((c) => c.name === 'openat' && c.args.includes('/messages/') && /O_CREAT/.test(c.args)), [], 'no message file created');
  for (const { id, marker } of sent) {
    const reply = calls.find((c) => (c.name === 'write' || c.name === 'writev') && c.args.includes(`queued as ${id}`));
    assert.ok(reply, `the 250 for ${id} is in the trace`);
    const bodyWrite = calls.find((c) => c.name === 'pwrite64' && walFds.has(fd(c)) && c.args.includes(marker) && c.at < reply!.at);
    assert.ok(bodyWrite, `${id}: its body is written to the WAL before the 250`);
    const walSync = calls.find((c) => c.name === 'fdatasync' && walFds.has(fd(c)) && c.ret === '0' && c.at > bodyWrite!.at && c.at < reply!.at);
    assert.ok(walSync, `${id}: the WAL is fdatasync'd after the body was written and before the 250`);
  }
  // Between the first 250 and the last, nothing but the WAL is synced: no message file, no directory.
  const first = calls.find((c) => (c.name === 'write' || c.name === 'writev') && c.args.includes(`queued as ${sent[0].id}`))!;
  const last = calls.find((c) => (c.name === 'write' || c.name === 'writev') && c.args.includes(`queued as ${sent.at(-1)!.id}`))!;
  const others = calls.filter((c) => (c.name === 'fdatasync' || c.name === 'fsync') && !walFds.has(fd(c)) && c.at > first.at && c.at < last.at);
  assert.deepEqual(others, [], 'no sync but the WAL\'s');
});
