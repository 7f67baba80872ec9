// The header From as RFC 5322 reads it (src/cleanup/from-header.ts): clean forms, what does
// not parse, and a generated corpus on which smtplb's decision must equal the one the
// `email-addresses` package (which implements the RFC's grammar) gives. The walk-arounds read
// by Python's `email` as a second parser (a child process) are in test/from-binding.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import addrs from 'email-addresses';
import { authorOf, type Author } from '../../src/cleanup/from-header.js';
import { identity } from '../../src/policy/identity.js';

const user = { name: 'app', sender_domains: ['a.test'] };
const decide = (head: string) => identity({ user, author: authorOf(head), senderDomain: 'a.test', rule: 'aligned' }).ok;

test('clean forms of an allowed From are accepted, with the domain that binds', () => {
  const ok = (head: string, domain: string) => assert.deepEqual(authorOf(head), { kind: 'ok', domain, domains: [domain] }, head);
  ok('From: news@a.test\r\n', 'a.test');
  ok('From: "Smith, John" <john@A.Test>\r\n', 'a.test');
  ok('From: =?utf-8?q?J=C3=B6rg?= <j@a.test>\r\n', 'a.test');
  ok('From: John (the boss) Smith <john(comment)@(another)a.test>\r\n', 'a.test');
  ok('From: "quoted @ b.test" <x@a.test>\r\n', 'a.test');
  ok('From: <@b.test,@c.test:x@a.test>\r\n', 'a.test');
  ok('from : x@a.test\r\nSubject: b.test\r\n', 'a.test');
  ok('From: Jörg <jörg@a.test>\r\n', 'a.test');
  ok('From: Folded\r\n <x@a.test>\r\n', 'a.test');
  // Several authors with one Sender: Sender binds, and every domain shown must be allowed.
  assert.deepEqual(authorOf('From: a@a.test, b@a.test\r\nSender: s@a.test\r\n'), { kind: 'ok', domain: 'a.test', domains: ['a.test'] });
  assert.equal(decide('From: a@a.test, b@b.test\r\nSender: s@a.test\r\n'), false);
  assert.equal(decide('From: a@a.test\r\nSender: s@b.test\r\n'), false);
  assert.equal(authorOf('Subject: none\r\n').kind, 'none');
});

test('what does not parse is refused, naming the rule', () => {
  const bad = (head: string, rule: RegExp) => {
    const a = authorOf(head);
    assert.equal(a.kind, 'bad', head);
    assert.match((a as { rule: string }).rule, rule, head);
  };
  bad('From: x@a.test <ceo@b.test>\r\n', /display name/);
  bad('From: a@a.test, b@a.test\r\n', /needs a Sender/);
  bad('From: a@a.test\r\nSender: s@a.test, t@a.test\r\n', /one mailbox/);
  bad('From: Team: a@a.test, b@a.test;\r\n', /group/);
  bad('From: x@[192.0.2.1]\r\n', /address literal/);
  bad('From: "unclosed@a.test\r\n', /unclosed quoted/);
  bad('From: (unclosed x@a.test\r\n', /unclosed comment/);
  bad('From: x@a.test>\r\n', /after the domain|">"/);
  bad('From: <x@a.test\r\n', /">"/);
  bad('From: x@@a.test\r\n', /no domain/);
  bad('From: x@a..test\r\n', /empty domain label/);
  bad('From: \r\n', /no mailbox/);
  bad('From: ceo@b.test\r\nfrom: x@a.test\r\n', /more than one From/);
});

/** What email-addresses makes of a From value, as the same verdict. */
function reference(value: string): Author {
  const list = addrs.parseFrom({ input: value, rfc6532: true, rejectTLD: false } as never) as (addrs.ParsedMailbox | addrs.ParsedGroup)[] | null;
  if (!list || !list.length || list.some((m) => m.type !== 'mailbox')) return { kind: 'bad', rule: '' };
  const domains = (list as addrs.ParsedMailbox[]).map((m) => m.domain.toLowerCase());
  if (domains.some((d) => d.startsWith('['))) return { kind: 'bad', rule: '' };
  if (domains.length > 1) return { kind: 'bad', rule: '' }; // several authors and no Sender in this corpus
  return { kind: 'ok', domain: domains[0], domains };
}

test('generated From headers: smtplb decides as the RFC 5322 grammar of email-addresses reads them', () => {
  const label = fc.constantFrom('a', 'b', 'mail', 'x1', 'test', 'c-d');
  const domain = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('a.test', 'b.test', 'sub.a.test', 'a.test.b.test', 'A.TEST') },
    { weight: 2, arbitrary: fc.array(label, { minLength: 1, maxLength: 3 }).map((l) => l.join('.')) },
    { weight: 1, arbitrary: fc.constantFrom('[192.0.2.1]', 'a..test', '', '.a.test') },
  );
  const cfws = fc.constantFrom('', '', ' ', ' (c) ', '(x@a.test)', '\r\n ', ' (nested (c)) ');
  const atomText = fc.constantFrom('x', 'ceo', 'john.smith', 'a+b', 'o\'neil', '=?utf-8?q?J=C3=B6rg?=', 'x@a.test', 'a.test', 'no-reply');
  const quoted = fc.constantFrom('"x@a.test"', '"Smith, John"', '"a\\"b"', '"x y"', '"@a.test"', '"<a@a.test>"');
  const local = fc.oneof(atomText, quoted, fc.tuple(atomText, quoted).map(([a, q]) => `${a}.${q}`));
  const addrSpec = fc.tuple(local, cfws, fc.constantFrom('@', '@', '@@', ''), cfws, domain).map(([l, c1, at, c2, d]) => `${l}${c1}${at}${c2}${d}`);
  const route = fc.oneof(fc.constant(''), fc.array(domain, { minLength: 1, maxLength: 2 }).map((ds) => `${ds.map((d) => `@${d}`).join(',')}:`));
  const display = fc.oneof(fc.constant(''), atomText, quoted, fc.tuple(atomText, atomText).map(([a, b]) => `${a} ${b}`), fc.constantFrom('John Q. Public', 'Dr. X', 'x@a.test'));
  const nameAddr = fc.tuple(display, cfws, route, addrSpec, cfws, fc.constantFrom('>', '>', '', '>>')).map(([n, c1, r, a, c2, close]) => `${n}${c1}<${r}${a}${close}${c2}`);
  const mailbox = fc.oneof(addrSpec, nameAddr);
  const value = fc.oneof(
    { weight: 5, arbitrary: mailbox },
    { weight: 1, arbitrary: fc.array(mailbox, { minLength: 2, maxLength: 3 }).map((m) => m.join(', ')) },
    { weight: 1, arbitrary: fc.tuple(atomText, mailbox).map(([g, m]) => `${g}: ${m};`) },
  );
  let accepted = 0;
  let refused = 0;
  fc.assert(
    fc.property(value, (v) => {
      const ref = reference(v);
      const ours = authorOf(`From: ${v}\r\n`);
      const want = ref.kind === 'ok' && ref.domain === 'a.test';
      assert.equal(decide(`From: ${v}\r\n`), want, `From: ${JSON.stringify(v)}: email-addresses ${JSON.stringify(ref)}, smtplb ${JSON.stringify(ours)}`);
      if (ref.kind === 'ok') assert.deepEqual(ours, ref, `From: ${JSON.stringify(v)}`);
      if (want) accepted++;
      else refused++;
    }),
    { numRuns: 5000, seed: 5322 },
  );
  // The corpus holds both kinds in number: a generator that produced only refusals proves nothing.
  assert.ok(accepted > 300 && refused > 300, `accepted ${accepted}, refused ${refused}`);
});
