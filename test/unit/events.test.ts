// Events as plain data: ids stable across a resend and distinct between events, tags bounded,
// signatures over the exact body, outcome events with their fields.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { eventId, outcomeEvent, parseTags, receivedEvents, signBody, storedTags, suppressedEvent } from '../../src/events/event.js';

test('an event id is the same for the same event and differs for any other', () => {
  assert.equal(eventId('Q1', 'a@x.test', 'deferred', 2), eventId('Q1', 'a@x.test', 'deferred', 2));
  const ids = new Set([eventId('Q1', 'a@x.test', 'deferred', 2), eventId('Q1', 'a@x.test', 'deferred', 3), eventId('Q1', 'b@x.test', 'deferred', 2), eventId('Q2', 'a@x.test', 'deferred', 2), eventId('Q1', 'a@x.test', 'bounced', 2)]);
  assert.equal(ids.size, 5);
  // Two refusals at RCPT of the same address are two events (no queue id: time and sender tell them apart).
  const a = JSON.parse(suppressedEvent({ id: null, sender: 's@a.test' }, 'r@x.test', '550', 'in', 1000)) as { id: string; queue_id: null };
  const b = JSON.parse(suppressedEvent({ id: null, sender: 's@a.test' }, 'r@x.test', '550', 'in', 2000)) as { id: string };
  assert.notEqual(a.id, b.id);
  assert.equal(a.queue_id, null);
});

test('tags: k=v pairs, at most 10, keys and values bounded, the rest left out', () => {
  assert.deepEqual(parseTags(' campaign = spring , tenant=42,bad key=x, =y, novalue'), { campaign: 'spring', tenant: '42' });
  assert.equal(Object.keys(parseTags(Array.from({ length: 30 }, (_, i) => `k${i}=v`).join(','))).length, 10);
  assert.equal(parseTags(`k=${'v'.repeat(1000)}`).k.length, 256);
  assert.deepEqual(parseTags('k=caf\u00e9\u0007'), { k: 'caf' });
  assert.deepEqual(parseTags(undefined), {});
  assert.deepEqual(storedTags('{"a":"b"}'), { a: 'b' });
  assert.deepEqual(storedTags('not json'), {});
});

test('the signature is the HMAC-SHA256 of the exact body', () => {
  const body = '[{"id":"x"}]';
  assert.equal(signBody('secret', body), `sha256=${createHmac('sha256', 'secret').update(body).digest('hex')}`);
  assert.notEqual(signBody('secret', `${body} `), signBody('secret', body));
});

test('received and outcome events carry the message, the reply (bounded), its enhanced code, class, attempt and delay', () => {
  const m = { id: 'Q1', message_id: '<m@x>', sender: 's@a.test', created: 1_000, tags: { t: '1' } };
  const [r] = receivedEvents(m, ['r@x.test'], 'in').map((e) => JSON.parse(e.body) as Record<string, unknown>);
  assert.equal(r.type, 'received');
  assert.equal(r.server, 'in');
  const o = JSON.parse(outcomeEvent(m, { rcpt: 'r@x.test', type: 'bounced', code: 550, text: `550 5.1.1 ${'x'.repeat(5000)}`, server: 'out/s1', attempt: 2, class: 'invalid-recipient' }, 4_000).body) as Record<string, unknown>;
  assert.equal(o.enhanced_code, '5.1.1');
  assert.equal((o.reply as string).length, 1000);
  assert.equal(o.queue_delay_ms, 3_000);
  assert.equal(o.class, 'invalid-recipient');
  assert.deepEqual(o.tags, { t: '1' });
  assert.equal(o.id, eventId('Q1', 'r@x.test', 'bounced', 2));
});
