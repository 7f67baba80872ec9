// Complaints (ARF, RFC 5965; issue 25): feedback-loop reports about delivered messages, sent
// with swaks to the feedback address on a listener that relays for nobody. A generic ARF
// report (Original-Rcpt-To, the original as message/rfc822) and a Microsoft JMRP-style one (no
// Original-Rcpt-To: the recipient and smtplb's queue id from the original's headers, as
// text/rfc822-headers). Each suppresses its recipient for the sender's domain and emits
// `complained` with the original's tags; the complaint rate metric moves; at `pause_at` the
// class is paused by a named suspension that says why, and its new mail gets 451.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, test } from 'node:test';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { api, metric, TOKEN } from './helpers/admin.js';
import { freePort, runCli, startSink, startSmtplb, stopAll, swaks, tmpDir, waitFor } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);

const base: Omit<SendOptions, 'server' | 'to' | 'from'> = { headers: ['X-Smtplb-Tags: campaign=spring'], subject: 'news', body: 'Spring news.', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };

function arf(original: string, opts: { rcpt?: string; agent: string; headersOnly?: boolean }): string {
  const b = 'arf-boundary-1';
  const orig = opts.headersOnly ? original.slice(0, original.search(/\r?\n\r?\n/) + 2) : original;
  return [
    'From: <staff@fbl.provider.test>',
    'To: <fbl@gw.test>',
    'Subject: complaint about message from 127.0.0.1',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=feedback-report; boundary="${b}"`,
    '',
    `--${b}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    'This is an email abuse report for an email message received from IP 127.0.0.1.',
    '',
    `--${b}`,
    'Content-Type: message/feedback-report',
    '',
    'Feedback-Type: abuse',
    `User-Agent: ${opts.agent}`,
    'Version: 1',
    'Original-Mail-From: <news@news.test>',
    ...(opts.rcpt ? [`Original-Rcpt-To: <${opts.rcpt}>`] : []),
    'Arrival-Date: Thu, 3 Dec 2026 10:00:00 +0000',
    'Source-IP: 127.0.0.1',
    '',
    `--${b}`,
    `Content-Type: ${opts.headersOnly ? 'text/rfc822-headers' : 'message/rfc822'}`,
    'Content-Disposition: inline',
    '',
    orig.replace(/\r?\n/g, '\r\n').trimEnd(),
    '',
    `--${b}--`,
    '',
  ].join('\r\n');
}

test('ARF reports at the feedback address: recipient suppressed, complained with the original\'s tags, the rate moves; at pause_at the class is paused with the reason', async () => {
  const dir = tmpDir('fbl-');
  const sink = await startSink();
  const port = await freePort();
  const inbound = await freePort();
  const admin = await freePort();
  const events = path.join(dir, 'events.jsonl');
  const lb = await startSmtplb(
    `hostname: gw.test
log: { level: warn, format: json }
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
spool: ./spool
listeners:
  - { name: submit, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.1/32] }
  - { name: inbound, listen: 127.0.0.1:${inbound}, mode: smtp }
pools:
  out: { tls: none, health: { check: none }, servers: [{ name: sink, address: 127.0.0.1:${sink.port} }] }
routes:
  - { pool: out }
classes: { sender_domains: { news.test: bulk } }
feedback: { addresses: [fbl@gw.test] }
complaints: { pause_at: 30%, min_delivered: 3 }
events: { file: ${events} }
`,
    { waitPorts: [port, inbound, admin] },
  );
  // Four messages of one recipient each, and one to two recipients: 6 delivered.
  for (const to of [['r1'], ['r2'], ['r3'], ['r4'], ['m1', 'm2']]) {
    const s = await sendOne({ ...base, server: `127.0.0.1:${port}`, from: 'news@news.test', to: to.map((r) => `${r}@dest.test`) }, 0);
    assert.ok(s.ok, s.ok ? '' : s.error);
  }
  const delivered = await sink.settle(5, 20_000);
  const of = (r: string) => delivered.find((m) => new RegExp(`^To: .*${r}@dest\\.test`, 'm').test(m))!.replace(/^X-(Client-Addr|Mail-Args|Rcpt-Args):.*\r?\n/gm, '');

  // The inbound listener relays for nobody; its feedback address takes reports.
  const denied = await swaks(['--server', `127.0.0.1:${inbound}`, '--from', 'x@else.test', '--to', 'someone@dest.test', '--quit-after', 'RCPT']);
  assert.match(denied.stdout + denied.stderr, /554 5\.7\.1/);
  const report = (name: string, text: string) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, text);
    return swaks(['--server', `127.0.0.1:${inbound}`, '--from', 'staff@fbl.provider.test', '--to', 'fbl@gw.test', '--data', `@${f}`]);
  };
  const suppressed = async (a: string) => (await api<{ suppressions: { scope: string; source: string; reason: string }[] }>(admin, `/api/suppressions?address=${a}`)).suppressions;

  // A generic ARF report, with Original-Rcpt-To and the whole original.
  const one = await report('one.eml', arf(of('r1'), { rcpt: 'r1@dest.test', agent: 'Yahoo!-Mail-Feedback/2.0' }));
  assert.match(one.stdout, /250 2\.0\.0 Report taken: r1@dest\.test suppressed/, one.stdout + one.stderr);
  const e1 = await suppressed('r1@dest.test');
  assert.equal(e1.length, 1);
  assert.equal(e1[0].scope, 'news.test');
  assert.equal(e1[0].source, 'complaint');
  const oneSixth = await metric(admin, 'smtplb_complaint_rate', { kind: 'class', key: 'bulk' });
  assert.ok(Math.abs(oneSixth - 1 / 6) < 1e-6, `1 of 6: ${oneSixth}`);
  assert.equal(await metric(admin, 'smtplb_complaints_total', { feedback_type: 'abuse', matched: 'true' }), 1);
  const status = await api<{ suspensions: { destination: string }[]; complaints: { kind: string; key: string; complaints: number }[] }>(admin, '/api/status');
  assert.deepEqual(status.suspensions, [], '1 of 6 is under pause_at 30%');

  // The same report again (a provider that sends twice): taken, and counted once.
  const again = await report('one-again.eml', arf(of('r1'), { rcpt: 'r1@dest.test', agent: 'Yahoo!-Mail-Feedback/2.0' }));
  assert.match(again.stdout, /250 2\.0\.0 Report taken \(this complaint was already recorded\)/, again.stdout + again.stderr);
  assert.equal(await metric(admin, 'smtplb_complaint_rate', { kind: 'class', key: 'bulk' }), oneSixth, 'a repeated report does not move the rate');

  // A headers-only report of the message to two recipients, naming neither: nobody is suppressed.
  const both = await report('both.eml', arf(of('m1'), { agent: 'Microsoft JMRP', headersOnly: true }));
  assert.match(both.stdout, /250 2\.0\.0 Report taken; the original went to 2 recipients and the report does not say which one complained/, both.stdout + both.stderr);
  assert.deepEqual(await suppressed('m1@dest.test'), []);
  assert.deepEqual(await suppressed('m2@dest.test'), []);
  assert.equal(await metric(admin, 'smtplb_complaint_rate', { kind: 'class', key: 'bulk' }), oneSixth);
  assert.equal(status.complaints.find((c) => c.kind === 'domain' && c.key === 'news.test')?.complaints, 1, 'the rate per sender domain in status');

  // Microsoft JMRP style: no Original-Rcpt-To, the original's headers only; its To and smtplb's
  // Received line (the queue id) find the delivery and its tags.
  const two = await report('two.eml', arf(of('r2'), { agent: 'Microsoft JMRP', headersOnly: true }));
  assert.match(two.stdout, /250 2\.0\.0 Report taken: r2@dest\.test suppressed/, two.stdout + two.stderr);
  assert.equal((await suppressed('r2@dest.test')).length, 1);

  const ev = await waitFor('two complained events', () => {
    const list = (fs.existsSync(events) ? fs.readFileSync(events, 'utf8') : '').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; recipient: string; tags: Record<string, string>; queue_id: string | null }).filter((e) => e.type === 'complained');
    return list.length >= 2 ? list : undefined;
  });
  for (const e of ev) assert.deepEqual(e.tags, { campaign: 'spring' }, `${e.recipient}: the original's tags`);
  assert.ok(ev.every((e) => e.queue_id), 'the original found by its queue id');
  assert.equal(ev.length, 2, 'one event per complaint: the repeated report and the unmatched one tell nothing');

  // 2 of 6 = 33% reached pause_at 30%: the class is paused, the suspension says why.
  const after2 = await api<{ suspensions: { destination: string; reason: string; who: string }[] }>(admin, '/api/suspensions');
  const pause = after2.suspensions.find((s) => s.destination === 'class:bulk');
  assert.ok(pause, JSON.stringify(after2.suspensions));
  assert.match(pause.reason, /complaint rate 33\.33% over 24 h \(2 complaints, 6 delivered\) reached pause_at 30\.00%/);
  assert.match(runCli(['suspensions', '-c', lb.file]).stdout, /class:bulk .*complaint rate/);
  const held = await sendOne({ ...base, server: `127.0.0.1:${port}`, from: 'news@news.test', to: ['r5@dest.test'] }, 0);
  assert.equal(held.ok, false);
  assert.match(held.ok ? '' : held.error, /451 4\.7\.1 Sending of class:bulk is paused/);
  const other = await sendOne({ ...base, headers: [], server: `127.0.0.1:${port}`, from: 'ops@other.test', to: ['r5@dest.test'] }, 0);
  assert.ok(other.ok, 'another class is not paused');

  // Not a report: refused, nothing suppressed.
  const junk = await report('junk.eml', 'Subject: hello\r\n\r\njust text\r\n');
  assert.match(junk.stdout, /550 5\.6\.0 Not a feedback report/);
});
