// The pure parts of issue 25: MX sites, unsubscribe tokens and headers, complaint rates and
// pauses, ARF reading.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hostMatches, siteOf } from '../../src/routing/sites.js';
import { PROVIDER_SHAPING, PROVIDER_SITES } from '../../src/routing/providers.js';
import { makeToken, readToken } from '../../src/unsubscribe/token.js';
import { hasOneClick, unsubscribeDecision } from '../../src/unsubscribe/headers.js';
import { isOneClickBody } from '../../src/unsubscribe/endpoint.js';
import { pausedBy, toPause, withRates } from '../../src/feedback/rates.js';
import { parseArf } from '../../src/feedback/arf.js';
import { complianceProblem } from '../../src/compliance/gate.js';
import { isThrottleReply } from '../../src/scheduler/throttle.js';
import { configSchema } from '../../src/config/schema.js';

test('sites: MX hosts reduced by the rules, sorted; hosts no rule covers are the site themselves', () => {
  assert.ok(hostMatches('*.google.com', 'ASPMX.L.google.com.'));
  assert.equal(hostMatches('*.google.com', 'google.com'), false);
  assert.equal(hostMatches('*.google.com', 'evilgoogle.com'), false);
  assert.equal(siteOf(['aspmx.l.google.com', 'alt1.aspmx.l.google.com'], PROVIDER_SITES), 'google');
  assert.equal(siteOf(['acme-com.mail.protection.outlook.com'], PROVIDER_SITES), 'microsoft');
  assert.equal(siteOf(['mta5.am0.yahoodns.net'], PROVIDER_SITES), 'yahoo');
  assert.equal(siteOf(['mx2.example.net', 'mx1.example.net'], PROVIDER_SITES), 'mx1.example.net,mx2.example.net', 'unnamed: the sorted hosts');
  assert.equal(siteOf(['mx.shared.test'], { shared: ['mx.shared.test'] }), 'shared');
  assert.equal(siteOf([], PROVIDER_SITES), null);
  // An operator's longer pattern wins (Outlook.com split off Microsoft 365).
  assert.equal(siteOf(['outlook-com.olc.protection.outlook.com'], { ...PROVIDER_SITES, outlook: ['*.olc.protection.outlook.com'] }), 'outlook');
  for (const key of Object.keys(PROVIDER_SHAPING)) assert.ok(PROVIDER_SITES[key.replace(/^site:/, '')], `${key} names a shipped site`);
});

test('shaping: { preset: providers } expands under the operator\'s entries, field by field', () => {
  const base = { listeners: [{ name: 'l', listen: '127.0.0.1:2525' }] };
  const c = configSchema.parse({ ...base, shaping: { preset: 'providers', 'site:google': { concurrency: 3 } } });
  assert.equal(c.shaping['site:google'].concurrency, 3);
  assert.equal(c.shaping['site:google'].messages_per_connection, PROVIDER_SHAPING['site:google'].messages_per_connection);
  assert.ok(c.shaping['site:microsoft']);
  assert.equal('preset' in c.shaping, false);
  assert.deepEqual(configSchema.parse(base).shaping, {});
});

test('unsubscribe tokens: round trip; one altered character, another secret, or age past max_age is refused', () => {
  const claim = { recipient: 'alice@dest.test', senderDomain: 'news.test', tags: { campaign: 'spring' }, issued: 1_700_000_000_000 };
  const t = makeToken('secret-one-of-16+', claim);
  assert.deepEqual(readToken('secret-one-of-16+', t, claim.issued + 1000, 86_400_000), { ok: true, claim });
  for (let i = 0; i < t.length; i += 7) {
    if (t[i] === '.') continue;
    const altered = t.slice(0, i) + (t[i] === 'A' ? 'B' : 'A') + t.slice(i + 1);
    assert.equal(readToken('secret-one-of-16+', altered, claim.issued, 86_400_000).ok, false, `altered at ${i}`);
  }
  assert.equal(readToken('another-secret-xx', t, claim.issued, 86_400_000).ok, false);
  assert.deepEqual(readToken('secret-one-of-16+', t, claim.issued + 2 * 86_400_000, 86_400_000), { ok: false, reason: 'token expired' });
  assert.equal(readToken('secret-one-of-16+', 'x'.repeat(5000), 0, 1).ok, false);
});

test('unsubscribe headers per class: added to one recipient, kept when the application has its own, required', () => {
  const settings = { base_url: 'https://u.example.com/', secret: 'secret-one-of-16+', mailto: 'unsub@example.com', classes: { bulk: { add: true, require: false }, strict: { add: false, require: true } } };
  const a = { header: 'From: a@news.test\r\nSubject: x\r\n\r\n', cls: 'bulk', recipients: ['alice@dest.test'], senderDomain: 'news.test', tags: {}, now: 0, settings };
  const add = unsubscribeDecision(a);
  assert.equal(add.kind, 'add');
  assert.match(add.kind === 'add' ? add.fields : '', /^List-Unsubscribe: <https:\/\/u\.example\.com\/u\/[^>]+>,\r\n <mailto:unsub@example\.com\?subject=unsubscribe%20[^>]+>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n$/);
  assert.equal(unsubscribeDecision({ ...a, header: 'List-Unsubscribe: <mailto:x@y>\r\n\r\n' }).kind, 'none');
  assert.equal(unsubscribeDecision({ ...a, recipients: ['a@x.test', 'b@x.test'] }).kind, 'not-added');
  assert.equal(unsubscribeDecision({ ...a, cls: 'transactional' }).kind, 'none');
  assert.equal(unsubscribeDecision({ ...a, cls: 'strict' }).kind, 'refuse');
  const own = 'List-Unsubscribe: <https://app/u/1>,\r\n <mailto:u@app>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n';
  assert.ok(hasOneClick(own));
  assert.equal(unsubscribeDecision({ ...a, cls: 'strict', header: own }).kind, 'none');
  assert.equal(unsubscribeDecision({ ...a, cls: 'strict', header: 'List-Unsubscribe: <mailto:u@app>\r\n\r\n' }).kind, 'refuse', 'mailto alone is no one-click');
  assert.ok(isOneClickBody('application/x-www-form-urlencoded', 'List-Unsubscribe=One-Click'));
  assert.ok(isOneClickBody('multipart/form-data; boundary=b', '--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b--\r\n'));
  assert.equal(isOneClickBody('application/x-www-form-urlencoded', 'List-Unsubscribe=Yes'), false);

  // Bounded: 40 long tags are left out of the token, every line stays within 998 characters and the token readable.
  const tags = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`tag${i}`, 'v'.repeat(120)]));
  const many = unsubscribeDecision({ ...a, tags });
  assert.equal(many.kind, 'add');
  const lines = (many.kind === 'add' ? many.fields : '').split('\r\n');
  assert.ok(lines.every((l) => l.length <= 998), lines.map((l) => l.length).join(','));
  const token = /\/u\/([^>]+)>/.exec(lines[0])![1];
  const read = readToken(settings.secret, token, 0, 1000);
  assert.ok(read.ok && read.claim.recipient === 'alice@dest.test' && Object.keys(read.claim.tags).length === 0);
  // A base URL too long for one line: not added (refused when required).
  const longUrl = { ...settings, base_url: `https://u.example.com/${'p'.repeat(990)}`, classes: { ...settings.classes, both: { add: true, require: true } } };
  assert.equal(unsubscribeDecision({ ...a, settings: longUrl }).kind, 'not-added');
  assert.equal(unsubscribeDecision({ ...a, cls: 'both', settings: longUrl }).kind, 'refuse');
  // An application's own List-Unsubscribe-Post without List-Unsubscribe is not doubled.
  const postOnly = unsubscribeDecision({ ...a, header: 'List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n' });
  assert.equal(postOnly.kind === 'add' && /List-Unsubscribe-Post/.test(postOnly.fields), false);
});

test('complaint rates: a class or tag at pause_at with enough deliveries is paused, never a sender domain; pauses match case-insensitively', () => {
  const rows = withRates([
    { kind: 'class', key: 'bulk', delivered: 1000, complaints: 4 },
    { kind: 'tag', key: 'campaign=spring', delivered: 100, complaints: 3 },
    { kind: 'tag', key: 'campaign=fall', delivered: 5000, complaints: 1 },
    { kind: 'domain', key: 'news.test', delivered: 1000, complaints: 9 },
  ]);
  const p = toPause(rows, { pause_at: 0.003, min_delivered: 500 });
  assert.deepEqual(p.map((x) => x.destination), ['class:bulk']);
  assert.match(p[0].reason, /complaint rate 0\.40% over 24 h \(4 complaints, 1000 delivered\) reached pause_at 0\.30%/);
  const pauses = [{ destination: 'tag:campaign=spring' }, { destination: 'class:bulk' }];
  assert.equal(pausedBy(pauses, 'BULK', {})?.destination, 'class:bulk');
  assert.equal(pausedBy(pauses, 'transactional', { campaign: 'Spring' })?.destination, 'tag:campaign=spring');
  assert.equal(pausedBy(pauses, 'transactional', { campaign: 'fall' }), undefined);
});

test('ARF: a report without a feedback-report part is none; fields and the original\'s queue id are read', async () => {
  assert.equal(await parseArf(Buffer.from('Subject: hi\r\n\r\ntext\r\n')), null);
  const b = 'b1';
  const raw = ['MIME-Version: 1.0', `Content-Type: multipart/report; report-type=feedback-report; boundary="${b}"`, '', `--${b}`, 'Content-Type: message/feedback-report', '', 'Feedback-Type: abuse', 'Original-Rcpt-To: <Z@D.test>', 'Original-Mail-From: <news@news.test>', '', `--${b}`, 'Content-Type: message/rfc822', '', 'Received: from c ([127.0.0.1])\r\n\tby gw.test (smtplb) with ESMTPS id Q1w2E3\r\n\tfor <z@d.test>; Thu, 3 Dec 2026', 'Message-ID: <a@b>', 'To: z@d.test', '', 'body', `--${b}--`, ''].join('\r\n');
  const c = await parseArf(Buffer.from(raw));
  assert.deepEqual({ ...c }, { feedbackType: 'abuse', recipient: 'Z@D.test', to: 'z@d.test', sender: 'news@news.test', queueId: 'Q1w2E3', messageId: '<a@b>', listUnsubscribe: null, userAgent: null });
});

test('ARF: a 2 MB To field of address characters without an @ is read in bounded work (it once took a minute)', async () => {
  const b = 'b2';
  const long = 'a'.repeat(2 * 1024 * 1024);
  const raw = ['MIME-Version: 1.0', `Content-Type: multipart/report; report-type=feedback-report; boundary="${b}"`, '', `--${b}`, 'Content-Type: message/feedback-report', '', 'Feedback-Type: abuse', `Original-Mail-From: ${long.slice(0, 300_000)}`, '', `--${b}`, 'Content-Type: text/rfc822-headers', '', `To: ${long}`, `From: ${long.slice(0, 200_000)}x@`, '', `--${b}--`, ''].join('\r\n');
  const started = process.hrtime.bigint();
  const c = await parseArf(Buffer.from(raw));
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  assert.equal(c?.to, null);
  assert.equal(c?.recipient, null);
  // Quadratic work on these fields is minutes; linear work is milliseconds. 5 s leaves room for a slow machine.
  assert.ok(ms < 5000, `parsing took ${ms.toFixed(0)} ms`);
});

test('compliance gate: DKIM and DMARC errors of the sending domain (or its parent) and PTR errors of the pool\'s egress hold; lookup failures and other pools do not', () => {
  const f = (subject: string, check: 'dkim' | 'dmarc' | 'ptr' | 'spf', code: string, severity: 'error' | 'warning' = 'error') => ({ subject, check, code, severity, problem: `${code} problem`, why: '', fix: '' });
  const facts = {
    subjects: [
      { subject: 'news.test', kind: 'domain' as const, about: 'dkim; sent through out' },
      { subject: 'ok.test', kind: 'domain' as const, about: 'dkim; sent through out' },
      { subject: 'out1.gw.test', kind: 'egress' as const, about: 'pool out, source ip1, 192.0.2.1, EHLO out1.gw.test' },
      { subject: 'other.gw.test', kind: 'egress' as const, about: 'pool other, source ip9, 192.0.2.9' },
    ],
    findings: [f('news.test', 'dkim', 'dkim-key-mismatch'), f('ok.test', 'spf', 'spf-not-authorised'), f('ok.test', 'dmarc', 'dmarc-lookup-failed', 'warning'), f('other.gw.test', 'ptr', 'ptr-missing')],
  };
  assert.match(complianceProblem('news.test', 'out', facts) ?? '', /^compliance: news\.test dkim-key-mismatch/);
  assert.match(complianceProblem('mail.news.test', 'out', facts) ?? '', /dkim-key-mismatch/, 'a subdomain under its parent');
  assert.equal(complianceProblem('ok.test', 'out', facts), null, 'SPF and lookup failures do not hold');
  assert.match(complianceProblem('ok.test', 'other', facts) ?? '', /other\.gw\.test ptr-missing/, 'the egress of the pool it goes through');
  assert.equal(complianceProblem('unknown.test', 'out', facts), null, 'a domain the doctor does not check');
  assert.equal(complianceProblem('news.test', 'out', undefined), null);
});

test('the providers\' throttling replies cut the pair (Gmail 4.7.28, Microsoft 4.7.650 and RP-001, Yahoo TS03, Apple HCM1, Comcast RL, Orange); a full mailbox does not', () => {
  for (const [code, text] of [
    [421, '4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from your IP address'],
    [451, '4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. (S775)'],
    [421, 'RP-001 (BAY004-MC1F1) Unfortunately, some messages from 192.0.2.1 weren\'t sent.'],
    [421, '4.7.0 [TS03] Messages from 192.0.2.1 permanently deferred; Retrying will NOT succeed.'],
    [421, '4.7.1 [HCM1] Your mail from 192.0.2.1 was deferred'],
    [421, 'RL000010 Domain has been throttled'],
    [421, 'mwinf5c10 ME Trop de connexions, veuillez verifier votre configuration.'],
  ] as const) assert.ok(isThrottleReply(code, text, []), text);
  assert.equal(isThrottleReply(452, '4.2.2 The email account that you tried to reach is over quota', []), false);
  assert.equal(isThrottleReply(550, '5.7.28 unusual rate of unsolicited mail', []), false, 'only 421/450/451 cut');
});

test('mail to smtplb\'s own addresses: each message within 4 MB, all of them at once within the process\'s budget (then 452), the budget given back', async () => {
  const { ByteBudget, readLocal } = await import('../../src/listeners/local-intake.js');
  const chunks = (n: number, size: number) => (async function* () {
    for (let i = 0; i < n; i++) yield Buffer.alloc(size, 97);
  })();
  const budget = new ByteBudget(10_000);
  const a = await readLocal(chunks(6, 1000), budget, 8000);
  assert.ok(a.ok);
  assert.equal(a.ok && a.raw.length, 6000);
  assert.equal(budget.inUse, 6000, 'held while the first is being handled');
  const b = await readLocal(chunks(5, 1000), budget, 8000);
  assert.deepEqual(b, { ok: false, why: 'busy' }, 'a second one past the budget is drained and refused');
  assert.equal(budget.inUse, 6000, 'the refused one gives back what it took');
  if (a.ok) a.release();
  assert.equal(budget.inUse, 0);
  const big = await readLocal(chunks(9, 1000), budget, 8000);
  assert.deepEqual(big, { ok: false, why: 'too-big' });
  assert.equal(budget.inUse, 0);
  const c = await readLocal(chunks(5, 1000), budget, 8000);
  assert.ok(c.ok, 'taken again once the first is done');
});

test('compliance: the first doctor run is waited for only while it runs and nothing failed; compliance with doctor.interval 0 is refused naming the key', async () => {
  const { awaitFirstCheck } = await import('../../src/compliance/gate.js');
  const { parseConfig } = await import('../../src/config/load.js');
  assert.equal(awaitFirstCheck({ checked_at: null, running: true, enabled: true, last_error: null }), true);
  assert.equal(awaitFirstCheck({ checked_at: null, running: false, enabled: true, last_error: 'resolver unreachable' }), false, 'a failed first run holds nothing');
  assert.equal(awaitFirstCheck({ checked_at: null, running: true, enabled: true, last_error: 'resolver unreachable' }), false, 'nor does its retry');
  assert.equal(awaitFirstCheck({ checked_at: null, running: false, enabled: false, last_error: null }), false, 'checks off hold nothing');
  assert.equal(awaitFirstCheck({ checked_at: '2026-12-05T00:00:00Z', running: true, enabled: true, last_error: null }), false);
  const text = 'listeners:\n  - { name: r, listen: 127.0.0.1:2525, mode: smtp, relay_networks: [127.0.0.1/32] }\npools:\n  out: { servers: [{ address: 127.0.0.1:2526 }] }\nroutes:\n  - { pool: out }\ncompliance: { mode: hold, classes: [bulk] }\ndoctor: { interval: 0 }\n';
  assert.throws(() => parseConfig(text, 'smtplb.yaml'), /smtplb\.yaml:8.*doctor\.interval: compliance: gates on the identity checks/s);
  assert.doesNotThrow(() => parseConfig(text.replace('interval: 0', 'interval: 1h'), 'smtplb.yaml'));
});

test('site keys: a domain on a named site counts under the site, unless the domain has a shaping entry of its own', async () => {
  const { SiteKeys } = await import('../../src/scheduler/site-keys.js');
  let lookups = 0;
  const keys = new SiteKeys({
    sites: () => ({ prov: ['*.prov.test'] }),
    shaping: () => ({ 'site:prov': { concurrency: 2 }, 'b.test': { concurrency: 5 }, 'c.test': { messages_per_connection: 10 } }),
    lookup: async () => {
      lookups++;
      return { ok: true as const, targets: [{ host: 'mx1.prov.test', ip: '127.0.0.1', preference: 10 }] };
    },
  });
  const pool = { name: 'direct', cfg: { kind: 'mx' } } as unknown as Parameters<typeof keys.keyFor>[0];
  assert.equal(keys.keyFor(pool, 'a.test'), null, 'not known yet: waits for the MX');
  assert.equal((await keys.resolve(pool, 'a.test')).key, 'site:prov');
  assert.equal(keys.keyFor(pool, 'a.test'), 'site:prov');
  assert.equal(keys.keyFor(pool, 'B.test'), 'B.test', 'its own entry wins, without a lookup');
  assert.equal(keys.knownKey(pool, 'b.test'), 'b.test');
  assert.equal((await keys.resolve(pool, 'c.test')).key, 'site:prov', 'an entry without concurrency or rate keeps the domain on its site');
  assert.equal(lookups, 3, 'a.test looked up (once by keyFor, once by resolve), c.test once; b.test never');
});
