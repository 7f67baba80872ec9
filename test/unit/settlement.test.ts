// The settlement decision (src/spool/settlement.ts): which outcomes apply to a message's rows and
// whether the message leaves the queue with them. Pure; the spool applies it in one transaction.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { owed, planSettlement } from '../../src/spool/settlement.js';
import type { RecipientRow } from '../../src/spool/records.js';

const row = (rcpt: string, state: RecipientRow['state'], leased = 0): RecipientRow & { leased: number } => ({ msg: 'M1', rcpt, domain: 'x.test', pool: 'p', route: 0, state, attempts: 0, next_at: 0, last_code: null, last_reply: null, last_server: null, updated: 0, leased });
const upd = (rcpt: string, state: RecipientRow['state']): RecipientRow => ({ ...row(rcpt, state), attempts: 1 });

test('an outcome is recorded once: a row already final keeps its state; an open one takes the update', () => {
  const rows = [row('a@x.test', 'delivered'), row('b@x.test', 'queued'), row('c@x.test', 'queued')];
  const p = planSettlement(rows, [upd('a@x.test', 'bounced'), upd('b@x.test', 'delivered')], false);
  assert.deepEqual(p.applied.map((a) => [a.prev.rcpt, a.was, a.u.state]), [['b@x.test', 'queued', 'delivered']]);
  assert.equal(p.leaves, false, 'c is still queued');
  assert.equal(rows[1].state, 'queued', 'the rows read are not changed (the counter moves come off their states)');
});

test('the message leaves the queue when no recipient stays open; a leased row is skipped when asked', () => {
  const rows = [row('a@x.test', 'queued'), row('b@x.test', 'failed', 1)];
  assert.equal(planSettlement(rows, [upd('a@x.test', 'delivered'), upd('b@x.test', 'bounced')], false).leaves, true);
  const skip = planSettlement(rows, [upd('a@x.test', 'delivered'), upd('b@x.test', 'bounced')], true);
  assert.deepEqual(skip.applied.map((a) => a.prev.rcpt), ['a@x.test']);
  assert.equal(skip.leaves, false, 'the leased row stays open');
});

test('two updates for one recipient: the second sees the first (was = its state), the first final one ends it', () => {
  const rows = [row('a@x.test', 'failed')];
  const p = planSettlement(rows, [upd('a@x.test', 'queued'), upd('a@x.test', 'delivered'), upd('a@x.test', 'bounced')], false);
  assert.deepEqual(p.applied.map((a) => [a.was, a.u.state]), [['failed', 'queued'], ['queued', 'delivered']]);
  assert.equal(p.leaves, true);
  assert.equal(rows[0].state, 'failed', 'removing the message takes the counter off the stored state');
});

test('bounced recipients become failed when their DSN is owed', () => {
  assert.deepEqual(owed([upd('a@x.test', 'bounced'), upd('b@x.test', 'delivered')]).map((u) => u.state), ['failed', 'delivered']);
});
