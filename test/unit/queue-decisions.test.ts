// The queue manager's bounded-input rules as pure functions: backoff patterns that could take
// the event loop are refused; upstream reply text is cut before it is matched, stored or
// quoted; queue ids, the due heap and the spool's due list. No process, no socket (the spool
// is a SQLite file in a temporary directory). The parts that run the CLI or a socket are in
// test/queue-decisions.test.ts.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Pool } from '../../src/balancing/pool.js';
import { poolSchema, riskyPattern } from '../../src/config/schema.js';
import { avoided } from '../../src/delivery/deliver.js';
import { cutReply, REPLY_MAX, SmtpError } from '../../src/delivery/upstream.js';
import { silentServers } from '../../src/scheduler/scheduler.js';
import { isThrottleReply } from '../../src/scheduler/throttle.js';
import { idAt, idTime, Spool } from '../../src/spool/spool.js';
import { DueHeap } from '../../src/spool/due-heap.js';
import fc from 'fast-check';
import { stopAll, tmpDir } from '../helpers/peers.js';

after(stopAll);

test('backoff patterns: nested repeats, repeated alternatives and back-references are refused; plain ones pass', () => {
  for (const p of ['(a+)+$', '(\\w*x?)*', '(a|a)*', '(x+){2,}', '(.)\\1', '((ab)*c)+']) assert.ok(riskyPattern(p), `${p} refused`);
  for (const p of ['mailbox busy', 'try (again )?later', 'exceeded.*(rate|limit)', '[a+]+', '\\(a+\\)+', '(ab){2}', 'TSS0\\d']) assert.equal(riskyPattern(p), null, `${p} allowed`);
});

test('reply text is cut to 4 KB before it is matched, stored or quoted; matching a 1 MB reply stays cheap', () => {
  const huge = `451 4.7.1 ${'a'.repeat(1024 * 1024)} try again later`;
  assert.equal(cutReply(huge).length, REPLY_MAX + 1);
  assert.equal(new SmtpError('x', 451, 'DATA', huge).text.length, REPLY_MAX + 1);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 20; i++) isThrottleReply(451, `${'exceeded '.repeat(100_000)}`, [/x.*y.*z/i]);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  assert.ok(ms < 500, `20 matches of a 900 KB reply took ${ms} ms`);
});

test('queue ids sort by creation time and carry it', () => {
  const t = Date.UTC(2026, 10, 28, 6, 0, 0);
  assert.equal(idTime(`${idAt(t)}ABCDEF001`), t);
  assert.ok(idAt(t) < idAt(t + 1) && idAt(t + 1) < idAt(t + 86_400_000));
});

test('a server that went silent on a message (no reply: outcome unknown) is tried last for it, except from direct-to-MX sources (greylisting)', () => {
  const rows = [
    { attempts: 1, last_code: null, last_server: 'a' },
    { attempts: 1, last_code: 451, last_server: 'b' },
    { attempts: 0, last_code: null, last_server: null },
  ];
  assert.deepEqual([...(silentServers(rows, 'relay') ?? [])], ['a']);
  assert.equal(silentServers(rows, 'mx'), undefined);
  assert.equal(silentServers([{ attempts: 2, last_code: 421, last_server: 'a' }], 'relay'), undefined);
});

test('the due heap gives entries back earliest first, whatever the order they came in', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 1000 }), { maxLength: 300 }), (ats) => {
      const h = new DueHeap();
      ats.forEach((at, i) => h.push(at, `k${i}`));
      const out: number[] = [];
      for (let e = h.pop(); e; e = h.pop()) out.push(e.at);
      assert.deepEqual(out, [...ats].sort((a, b) => a - b));
    }),
  );
});

test("the spool's due list: only due destinations are taken, each once; a later time and the next due row come back through it", async () => {
  const spool = new Spool(tmpDir('due-'));
  const env = (domain: string) => ({ sender: 'a@b.test', recipients: [{ address: `u@${domain}`, domain, pool: 'p', route: 0 }], listener: 'l', client: '127.0.0.1' });
  const put = async (domain: string) => {
    const inc = await spool.incoming();
    await inc.write(Buffer.from('Subject: x\r\n\r\nbody\r\n'));
    return spool.commitIncoming(inc, env(domain), null);
  };
  for (let i = 0; i < 50; i++) await put(`d${i}.test`);
  await put('d0.test');
  const now = Date.now() + 10;
  const due = spool.index.takeDue(now);
  assert.equal(due.length, 50, 'each destination once, though d0 has two messages');
  assert.deepEqual(spool.index.takeDue(now), [], 'taken off the list');
  assert.equal(spool.index.nextDueAt(), Infinity);
  spool.index.markDue('p', 'd7.test', now + 1000);
  spool.index.markDue('p', 'nothing-queued.test', now);
  assert.equal(spool.index.nextDueAt(), now + 1000);
  assert.deepEqual(spool.index.takeDue(now), [], 'not before its time');
  assert.deepEqual(spool.index.takeDue(now + 1000).map((d) => d.domain), ['d7.test']);
  // Every row of d3 taken (leased) and the next due time looked up: none due, off the list.
  const rows = spool.dueFor('p', 'd3.test', now, 10);
  await spool.lease(rows);
  assert.equal(spool.refreshDue('p', 'd3.test'), null);
  assert.equal(spool.index.nextDueAt(), Infinity);
  spool.close();
});

test('a server avoided on the retry is passed over only for another primary that is up: never for a backup or the fallback pool', () => {
  const pool = (servers: object[]) => new Pool('p', poolSchema.parse({ servers }));
  const none = new Set<string>();
  const two = pool([{ name: 'a', address: '127.0.0.1:1' }, { name: 'c', address: '127.0.0.1:3' }]);
  assert.deepEqual([...avoided(none, new Set(['a']), two)], [two.servers[0].key], 'another primary: a is passed over');
  const withBackup = pool([{ name: 'a', address: '127.0.0.1:1' }, { name: 'b', address: '127.0.0.1:2', backup: true }]);
  assert.equal(avoided(none, new Set(['a']), withBackup).size, 0, 'only a backup besides it: a is used');
  const downOther = pool([{ name: 'a', address: '127.0.0.1:1' }, { name: 'c', address: '127.0.0.1:3' }]);
  downOther.servers[1].health.up = false;
  assert.equal(avoided(none, new Set(['a']), downOther).size, 0, 'the other primary is down: a is used');
});

test("a destination whose last queued row was held comes back on the due list when it is released, whatever its time", async () => {
  const spool = new Spool(tmpDir('due-held-'));
  const inc = await spool.incoming();
  await inc.write(Buffer.from('Subject: x\r\n\r\nbody\r\n'));
  const id = await spool.commitIncoming(inc, { sender: 'a@b.test', recipients: [{ address: 'u@held.test', domain: 'held.test', pool: 'p', route: 0 }], listener: 'l', client: '127.0.0.1' }, null);
  const t0 = Date.now() + 10;
  assert.equal(spool.index.takeDue(t0).length, 1);
  assert.equal(await spool.setState(id, ['queued'], 'held', t0, 'held by operator'), 1);
  assert.deepEqual(spool.index.takeDue(t0 + 1000), []);
  // Released later than the time it had: it must still come back.
  assert.equal(await spool.setState(id, ['held'], 'queued', t0 + 5000, 'released by operator'), 1);
  assert.deepEqual(spool.index.takeDue(t0 + 5000).map((d) => d.domain), ['held.test']);
  spool.close();
});
