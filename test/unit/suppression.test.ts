// The suppression list's pure parts: what may feed it, scopes, the RCPT reply, CSV.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { importRows, parseCsv } from '../../src/suppression/csv.js';
import { ADDRESS_CLASSES, bounceEntry, feedsList, lookupScopes, normalAddress, parseScope, refusal, scopeOf, type SuppressionPolicy } from '../../src/suppression/rules.js';
import { OUTCOME_CLASSES } from '../../src/outcomes/reply-class.js';

const policy: SuppressionPolicy = { enabled: true, scope: 'sender_domain', action: 'refuse', from_classes: ['invalid-recipient', 'inactive-mailbox', 'bad-domain'], bounce_ttl: 0 };

test('only a 5xx whose class says the address is bad feeds the list; never a 4xx, the sender\'s or the path\'s problems', () => {
  for (const cls of OUTCOME_CLASSES) {
    for (const code of [421, 450, 451, 452, 550, 551, 552, 553, 554]) {
      const want = code >= 500 && ['invalid-recipient', 'inactive-mailbox', 'bad-domain'].includes(cls);
      assert.equal(feedsList(policy, code, cls), want, `${code} ${cls}`);
    }
    assert.equal(feedsList(policy, null, cls), false, `no reply: ${cls}`);
  }
  for (const cls of ['rate-limit', 'reputation', 'auth-policy', 'network', 'protocol'] as const) {
    assert.equal((ADDRESS_CLASSES as readonly string[]).includes(cls), false, `${cls} can never be configured to feed the list`);
  }
  assert.equal(feedsList({ ...policy, enabled: false }, 550, 'invalid-recipient'), false);
  assert.equal(feedsList({ ...policy, from_classes: ['invalid-recipient', 'mailbox-full'] }, 552, 'mailbox-full'), true);
});

test('scopes: the sender\'s domain then global; a null sender and scope: global see the global list only', () => {
  assert.deepEqual(lookupScopes(policy, 'News@A.Test'), ['a.test', 'global']);
  assert.deepEqual(lookupScopes(policy, ''), ['global']);
  assert.deepEqual(lookupScopes({ scope: 'global' }, 'news@a.test'), ['global']);
  assert.equal(scopeOf(policy, 'x@sub.a.test'), 'sub.a.test');
  assert.equal(parseScope('GLOBAL'), 'global');
  assert.equal(parseScope('a.test'), 'a.test');
  assert.equal(parseScope('a test'), null);
  assert.equal(normalAddress('  Bob@Example.COM '), 'bob@example.com');
});

test('an entry from a bounce, and the RCPT reply: 550 5.1.1 with a bounded printable reason', () => {
  const e = bounceEntry({ ...policy, bounce_ttl: 1000 }, 'a@A.test', 'Bob@X.test', 'invalid-recipient', '550 5.1.1\r\n user unknown', 5);
  assert.deepEqual(e, { scope: 'a.test', address: 'bob@x.test', reason: 'invalid-recipient: 550 5.1.1 user unknown', class: 'invalid-recipient', source: 'bounce', created: 5, expires: 1005 });
  const r = refusal('bob@x.test', { reason: `bad\u0007 ${'x'.repeat(500)}`, source: 'operator' });
  assert.equal(r.code, 550);
  assert.match(r.text, /^5\.1\.1 <bob@x\.test>: recipient suppressed \(bad\? x+\)$/);
  assert.ok(r.text.length < 200);
});

test('CSV: quoted fields with commas, quotes and line breaks; a header names the columns, else the address comes first', () => {
  assert.deepEqual(parseCsv('a,"b, c","say ""hi""\nthere"\r\n\nd\n'), [['a', 'b, c', 'say "hi"\nthere'], ['d']]);
  assert.deepEqual(importRows('reason,address\nmoved,x@y.test\n'), { rows: [{ address: 'x@y.test', scope: undefined, reason: 'moved', expires: undefined }] });
  assert.deepEqual(importRows('x@y.test,a.test\n'), { rows: [{ address: 'x@y.test', scope: 'a.test', reason: undefined, expires: undefined }] });
  assert.deepEqual(importRows('address\nx@y.test\n,\n'), { rows: [{ address: 'x@y.test', scope: undefined, reason: undefined, expires: undefined }] });
  assert.deepEqual(importRows('address,scope\n,a.test\n'), { error: 'line 2: no address' });
});
