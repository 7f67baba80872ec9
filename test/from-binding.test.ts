// The header From as RFC 5322 reads it (src/cleanup/from-header.ts): the forms that walked
// around a text match, read by two independent parsers (Python's `email`, run as a child
// process, and the `email-addresses` package, which implements the RFC's grammar). The pure
// parts (clean forms, what does not parse, a generated corpus) are in test/unit/from-binding.test.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import addrs from 'email-addresses';
import { authorOf } from '../src/cleanup/from-header.js';
import { identity } from '../src/policy/identity.js';
import { WALKAROUNDS } from './helpers/from-forms.js';

const user = { name: 'app', sender_domains: ['a.test'] };
const decide = (head: string) => identity({ user, author: authorOf(head), senderDomain: 'a.test', rule: 'aligned' }).ok;

test('the five walk-arounds: Python and email-addresses read b.test in From, and smtplb refuses each', () => {
  const py = spawnSync('python3', ['-c', `
import sys, email, email.policy
for raw in sys.stdin.read().split('\\0'):
    m = email.message_from_string(raw + '\\r\\n', policy=email.policy.default)
    doms = [a.domain for f in m.get_all('From') for a in f.addresses]
    print(','.join(doms))
`], { input: Object.values(WALKAROUNDS).join('\0'), encoding: 'utf8' });
  assert.equal(py.status, 0, py.stderr);
  const pyDomains = py.stdout.trim().split('\n');
  Object.entries(WALKAROUNDS).forEach(([what, head], i) => {
    assert.ok(pyDomains[i].split(',').includes('b.test'), `Python reads b.test in "${what}": ${pyDomains[i]}`);
    const value = head.split(/\r\n/).filter((l) => l).map((l) => l.slice(5));
    assert.ok(value.some((v) => (addrs.parseFrom(v) ?? []).some((m) => m.type === 'mailbox' && m.domain === 'b.test')), `email-addresses reads b.test in "${what}"`);
    assert.equal(decide(head), false, `refused: ${what}`);
  });
});

