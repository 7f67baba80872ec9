// `smtplb sink`, the misbehaving test MTA, run as the real CLI and driven by real clients:
// nodemailer's SMTPConnection, raw pipelined sockets and Postfix's smtp-source.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import { runCli, session, sleep, smtpSource, stopAll, waitFor } from './helpers/peers.js';
import { startSmtplbSink, type SmtplbSink } from './helpers/sink.js';
import { ruleFromFlag, SinkConfigError } from '../src/sink/rules.js';

after(stopAll);

interface SendResult { accepted: string[]; rejected: { address: string; code: number | undefined; response: string }[]; response: string }
type SmtpErr = Error & { responseCode?: number; response?: string };

/** One message over one nodemailer connection. Throws the SMTP error when the message fails. */
async function send(port: number, to: string[], from = 'sender@x.test'): Promise<SendResult> {
  const conn = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: 15_000 });
  // nodemailer reports a connection lost mid-command as an 'error' / 'end' event, not always
  // through the pending callback.
  const lost = new Promise<never>((_, reject) => {
    conn.on('error', reject);
    conn.on('end', () => reject(Object.assign(new Error('connection closed by the sink'), { code: 'ECONNECTION' })));
  });
  lost.catch(() => {});
  await Promise.race([lost, new Promise<void>((resolve, reject) => conn.connect((err) => (err ? reject(err) : resolve())))]);
  try {
    const info = await Promise.race([
      lost,
      new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) =>
        conn.send({ from, to }, `From: ${from}\r\nTo: ${to.join(', ')}\r\nSubject: sink test\r\n\r\nHello.\r\n`, (err, i) => (err ? reject(err) : resolve(i))),
      ),
    ]);
    return {
      accepted: info.accepted.map(String),
      rejected: (info.rejectedErrors ?? []).map((e) => ({ address: String((e as SmtpErr & { recipient?: string }).recipient), code: e.responseCode, response: e.response ?? '' })),
      response: info.response,
    };
  } finally {
    conn.quit();
  }
}

/** Open a raw session, read the greeting and EHLO. */
async function raw(port: number) {
  const s = session(port);
  assert.match(await s.reply(), /^220 /);
  assert.match(await s.send('EHLO client.test'), /^250[ -]/);
  return s;
}

// A broken sink tends to hang a client rather than answer wrongly: the timeouts turn that into a failure.
describe('smtplb sink', { timeout: 30_000 }, () => {
  let sink: SmtplbSink;

  before(async () => {
    sink = await startSmtplbSink({
      rules: [
        'rcpt=bad*@*,reply=550 5.1.1 User unknown',
        'rcpt=later@*,reply=451 4.7.1 Try again later',
        'rcpt=yahoo@*,preset=yahoo-tss04',
        'rcpt=gmail@*,data_preset=gmail-unsolicited',
        'domain=slow.test,data_delay=1s',
        'rcpt=long@*,long_reply=1MB',
        'rcpt=many@*,multiline_reply=1000',
        'rcpt=cut@*,close=mid-data,close_after=4KB',
        'rcpt=drop@*,close=after-rcpt',
        'rcpt=lost@*,close=after-data',
        // a value with a comma in it: only ",key=" starts a new pair
        'domain=*.defer.test,data_reply=451 4.3.0 Please try again, later',
      ],
    });
  });

  test('greets, advertises PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES and enforces SIZE', async () => {
    const s = session(sink.port);
    assert.match(await s.reply(), /^220 smtplb-sink ESMTP/);
    const ehlo = await s.send('EHLO client.test');
    for (const ext of ['PIPELINING', 'SIZE 52428800', '8BITMIME', 'ENHANCEDSTATUSCODES']) assert.match(ehlo, new RegExp(`^250[ -]${ext}\\r?$`, 'm'), ehlo);
    assert.match(await s.send('MAIL FROM:<a@x.test> SIZE=999999999'), /^552 5\.3\.4 /);
    assert.match(await s.send('RCPT TO:<a@y.test>'), /^503 /);
    assert.match(await s.send('QUIT'), /^221 /);
    s.close();
  });

  test('answers each recipient by its rule: 250 / 550 / 451 in one transaction, and counts one copy for the accepted one', async () => {
    await sink.reset();
    const r = await send(sink.port, ['good@x.test', 'bad@x.test', 'later@x.test']);
    assert.deepEqual(r.accepted, ['good@x.test']);
    const codes = Object.fromEntries(r.rejected.map((e) => [e.address, e.code]));
    assert.deepEqual(codes, { 'bad@x.test': 550, 'later@x.test': 451 });
    assert.match(r.rejected.find((e) => e.address === 'bad@x.test')!.response, /^550 5\.1\.1 User unknown/);
    assert.match(r.response, /^250 2\.0\.0 Ok: queued as /);
    const st = await sink.stats();
    assert.deepEqual(st.recipients, { 'good@x.test': 1 });
    assert.equal(st.messages, 1);
    assert.equal(st.recipients_total, 1);
    assert.deepEqual(st.rcpt_replies, { '250': 1, '451': 1, '550': 1 });
    assert.deepEqual(st.data_replies, { '250': 1 });
    assert.deepEqual(st.replies, { '250': 2, '451': 1, '550': 1 });
    assert.equal(st.connections, 1);
  });

  test('speaks PIPELINING: a whole pipelined transaction is answered in order', async () => {
    await sink.reset();
    const s = await raw(sink.port);
    s.raw('MAIL FROM:<p@x.test>\r\nRCPT TO:<good@x.test>\r\nRCPT TO:<bad1@x.test>\r\nRCPT TO:<later@x.test>\r\nRCPT TO:<Other@X.test>\r\nDATA\r\n');
    const replies = [];
    for (let i = 0; i < 6; i++) replies.push((await s.reply()).slice(0, 3));
    assert.deepEqual(replies, ['250', '250', '550', '451', '250', '354']);
    s.raw('Subject: pipelined\r\n\r\n..a dot-stuffed line\r\n.\r\nRSET\r\nQUIT\r\n');
    assert.match(await s.reply(), /^250 2\.0\.0 Ok: queued/);
    assert.match(await s.reply(), /^250 /);
    assert.match(await s.reply(), /^221 /);
    await s.closed();
    const st = await sink.stats();
    assert.deepEqual(st.recipients, { 'good@x.test': 1, 'other@x.test': 1 });
    assert.equal(st.messages, 1);
  });

  test('finds the final dot when it arrives split over several packets, and an empty body', async () => {
    await sink.reset();
    const s = await raw(sink.port);
    s.raw('MAIL FROM:<a@x.test>\r\nRCPT TO:<split@x.test>\r\nDATA\r\n');
    await s.reply();
    await s.reply();
    assert.match(await s.reply(), /^354 /);
    for (const part of ['Subject: split\r\n\r\nx\r', '\n.', '\r', '\n']) {
      s.raw(part);
      await sleep(40);
    }
    assert.match(await s.reply(), /^250 2\.0\.0 Ok: queued/);
    s.raw('MAIL FROM:<a@x.test>\r\nRCPT TO:<empty@x.test>\r\nDATA\r\n');
    await s.reply();
    await s.reply();
    assert.match(await s.reply(), /^354 /);
    s.raw('.\r\n');
    assert.match(await s.reply(), /^250 2\.0\.0 Ok: queued/);
    s.close();
    assert.deepEqual((await sink.stats()).recipients, { 'split@x.test': 1, 'empty@x.test': 1 });
  });

  test('preset at RCPT: Yahoo TSS04 wording with the client IP, then the 421 closes the connection', async () => {
    await sink.reset();
    const s = await raw(sink.port);
    assert.match(await s.send('MAIL FROM:<a@x.test>'), /^250 /);
    const r = await s.send('RCPT TO:<yahoo@yahoo.test>');
    assert.equal(r, '421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes');
    await s.closed();
    assert.deepEqual((await sink.stats()).rcpt_replies, { '421': 1 });
  });

  test('data_preset: Gmail 4.7.28 as a multi-line 421 to the final dot; the message is not counted', async () => {
    await sink.reset();
    const s = await raw(sink.port);
    s.raw('MAIL FROM:<a@x.test>\r\nRCPT TO:<gmail@gmail.test>\r\nDATA\r\n');
    await s.reply();
    await s.reply();
    assert.match(await s.reply(), /^354 /);
    s.raw('Subject: x\r\n\r\nbody\r\n.\r\n');
    const r = await s.reply();
    const lines = r.split(/\r?\n/);
    assert.equal(lines.length, 5, r);
    assert.ok(lines.slice(0, -1).every((l) => l.startsWith('421-4.7.28 ')), r);
    assert.match(lines.at(-1)!, /^421 4\.7\.28 .*gsmtp/);
    assert.match(r.replace(/\r?\n421[ -]4\.7\.28 /g, ' '), /unusual rate of unsolicited mail originating from your IP address/);
    await s.closed();
    const st = await sink.stats();
    assert.equal(st.messages, 0);
    assert.equal(st.messages_refused, 1);
    assert.deepEqual(st.recipients, {});
    assert.deepEqual(st.data_replies, { '421': 1 });
  });

  test('data_delay 1s holds the reply to the final dot, without holding other connections', async () => {
    await sink.reset();
    const t0 = Date.now();
    const slow = send(sink.port, ['x@slow.test']).then((r) => ({ r, ms: Date.now() - t0 }));
    await sleep(150);
    const t1 = Date.now();
    await send(sink.port, ['good@x.test']);
    const fastMs = Date.now() - t1;
    const { r, ms } = await slow;
    assert.ok(ms >= 900, `the final dot was answered after ${ms} ms`);
    assert.ok(ms < 5000, `the final dot was answered after ${ms} ms`);
    assert.ok(fastMs < 700, `another client waited ${fastMs} ms`);
    assert.match(r.response, /^250 /);
    assert.deepEqual((await sink.stats()).recipients, { 'x@slow.test': 1, 'good@x.test': 1 });
  });

  test('data_reply text with a comma in it, matched by a domain glob', async () => {
    await sink.reset();
    await assert.rejects(send(sink.port, ['a@mx.defer.test']), (e: SmtpErr) => {
      assert.equal(e.responseCode, 451);
      assert.match(e.response ?? '', /^451 4\.3\.0 Please try again, later$/);
      return true;
    });
    const st = await sink.stats();
    assert.equal(st.messages, 0);
    assert.equal(st.messages_refused, 1);
  });

  test('long_reply: a 1 MB reply line arrives whole, and the session goes on', async () => {
    const s = await raw(sink.port);
    s.raw('MAIL FROM:<a@x.test>\r\nRCPT TO:<long@x.test>\r\nDATA\r\n');
    await s.reply();
    await s.reply();
    assert.match(await s.reply(), /^354 /);
    s.raw('Subject: x\r\n\r\nbody\r\n.\r\n');
    const r = await s.reply();
    assert.equal(r.length, 1024 * 1024);
    assert.match(r, /^451 4\.3\.0 long reply x+$/);
    assert.ok(!r.includes('\n'));
    assert.match(await s.send('NOOP'), /^250 /);
    assert.match(await s.send('QUIT'), /^221 /);
  });

  test('multiline_reply: 1,000 lines, 999 with "451-" and a last "451 "', async () => {
    const s = await raw(sink.port);
    s.raw('MAIL FROM:<a@x.test>\r\nRCPT TO:<many@x.test>\r\nDATA\r\n');
    await s.reply();
    await s.reply();
    assert.match(await s.reply(), /^354 /);
    s.raw('Subject: x\r\n\r\nbody\r\n.\r\n');
    const lines = (await s.reply()).split(/\r?\n/);
    assert.equal(lines.length, 1000);
    assert.equal(lines.filter((l) => l.startsWith('451-')).length, 999);
    assert.match(lines[999], /^451 /);
    assert.match(await s.send('QUIT'), /^221 /);
  });

  test('close: mid-data closes after close_after bytes of the body, with no reply', async () => {
    await sink.reset();
    const s = await raw(sink.port);
    s.raw('MAIL FROM:<a@x.test>\r\nRCPT TO:<cut@x.test>\r\nDATA\r\n');
    await s.reply();
    await s.reply();
    assert.match(await s.reply(), /^354 /);
    s.raw(`Subject: x\r\n\r\n${'a'.repeat(1000)}\r\n`);
    let closed = false;
    void s.closed().then(() => (closed = true));
    await sleep(300);
    assert.equal(closed, false, 'closed before 4 KB of the body had arrived');
    s.raw(`${'b'.repeat(998)}\r\n`.repeat(8));
    await waitFor('the sink to close the connection', () => closed, 3000);
    assert.equal(await s.reply(), 'closed');
    const st = await sink.stats();
    assert.equal(st.closed['mid-data'], 1);
    assert.equal(st.messages, 0);
    assert.deepEqual(st.data_replies, {});
  });

  test('close: after-rcpt drops the connection at that RCPT', async () => {
    await sink.reset();
    const s = await raw(sink.port);
    s.raw('MAIL FROM:<a@x.test>\r\nRCPT TO:<good@x.test>\r\nRCPT TO:<drop@x.test>\r\nDATA\r\n');
    assert.match(await s.reply(), /^250 2\.1\.0/);
    assert.match(await s.reply(), /^250 2\.1\.5/);
    assert.equal(await s.reply(), 'closed');
    const st = await sink.stats();
    assert.equal(st.closed['after-rcpt'], 1);
    assert.equal(st.messages, 0);
  });

  test('close: after-data takes the message (it counts) but never answers the final dot', async () => {
    await sink.reset();
    await assert.rejects(send(sink.port, ['lost@x.test']));
    const st = await sink.stats();
    assert.equal(st.closed['after-data'], 1);
    assert.equal(st.messages, 1);
    assert.deepEqual(st.recipients, { 'lost@x.test': 1 });
  });

  test('counts what smtp-source sends: 200 messages, 200 copies for one recipient', async () => {
    await sink.reset();
    const r = await smtpSource(sink.port, 200, 5, ['-c', '-f', 'a@x.test', '-t', 'b@y.test']);
    assert.equal(r.code, 0, r.stderr);
    const st = await sink.stats();
    assert.equal(st.messages, 200);
    assert.deepEqual(st.recipients, { 'b@y.test': 200 });
    assert.equal(st.recipients_total, 200);
    assert.deepEqual(st.data_replies, { '250': 200 });
    assert.ok(st.connections >= 5, `connections ${st.connections}`);
    assert.ok(st.bytes >= 200 * 1000, `bytes ${st.bytes}`);
    const slim = await sink.stats({ recipients: false });
    assert.deepEqual(slim.recipients, {});
    await sink.reset();
    const zero = await sink.stats();
    assert.equal(zero.messages, 0);
    assert.deepEqual(zero.recipients, {});
    assert.deepEqual(zero.replies, {});
  });
});

describe('smtplb sink settings', { timeout: 30_000 }, () => {
  test('a YAML file: hostname, greeting_delay and rules; SIGTERM stops it even while a reply is held', async () => {
    const sink = await startSmtplbSink({
      yaml: [
        'hostname: mx.sink.test',
        'greeting_delay: 300ms',
        'rules:',
        '  - { rcpt: "vip@*" }                       # no action: accepted normally',
        '  - { domain: "*.test", data_delay: 30s }',
      ].join('\n'),
    });
    const t0 = Date.now();
    const s = session(sink.port);
    assert.match(await s.reply(), /^220 mx\.sink\.test /);
    assert.ok(Date.now() - t0 >= 250, 'greeting_delay');
    await s.send('EHLO c.test');
    assert.match(await send(sink.port, ['vip@a.test']).then((r) => r.response), /^250 /);
    s.raw('MAIL FROM:<a@x.test>\r\nRCPT TO:<someone@a.test>\r\nDATA\r\n');
    await s.reply();
    await s.reply();
    assert.match(await s.reply(), /^354 /);
    s.raw('Subject: x\r\n\r\nheld\r\n.\r\n');
    await sleep(200);
    const t1 = Date.now();
    assert.equal(await sink.stop(), 0);
    assert.ok(Date.now() - t1 < 3000, 'SIGTERM took too long');
    assert.equal(await s.reply(), 'closed');
    assert.match(sink.output(), /^sink listening on 127\.0\.0\.1:\d+, stats on http:\/\/127\.0\.0\.1:\d+\/stats$/m);
  });

  test('greeting "554 ..." refuses service: 503 to everything but QUIT', async () => {
    const sink = await startSmtplbSink({ args: ['--greeting', '554 5.7.1 No SMTP service here'] });
    const s = session(sink.port);
    assert.equal(await s.reply(), '554 5.7.1 No SMTP service here');
    assert.match(await s.send('EHLO c.test'), /^503 /);
    assert.match(await s.send('QUIT'), /^221 /);
  });

  test('bad rules and settings: exit 1 with the rule and the key named, no stack trace', async () => {
    const cases: [string[], RegExp][] = [
      [['--rule', 'rcpt=ok@*,reply=250 fine', '--rule', 'rcpt=x*,reply=55 nope'], /--rule 2 .*: reply: must start with a three-digit reply code/],
      [['--rule', 'rcpt=x*,data_delay=soon'], /--rule 1 .*: data_delay: not a valid duration: "soon"/],
      [['--rule', 'rcpt=x*,colse=mid-data'], /--rule 1 .*: colse: unknown key/],
      [['--rule', 'rcpt=x*,close=sometimes'], /--rule 1 .*: close: expected one of mid-data, after-rcpt, after-data/],
      [['--rule', 'preset=hotmail'], /--rule 1 .*: preset: unknown preset "hotmail" \(presets: gmail-unsolicited, /],
      [['--rule', 'rcpt=x*,reply=550 no,preset=yahoo-tss04'], /--rule 1 .*: preset: cannot be used with reply/],
      [['--rule', 'just text'], /--rule 1 .*: expected key=value pairs/],
    ];
    // Two through the real CLI (exit status, no stack trace), the rest through the same parser
    // in process: each CLI start costs half a second.
    cases.forEach(([args, re], i) => {
      if (i < 2) return;
      assert.throws(() => args.filter((_, j) => j % 2 === 1).forEach((text, j) => ruleFromFlag(text, j + 1)), (e: Error) => e instanceof SinkConfigError && re.test(e.message));
    });
    for (const [args, re] of cases.slice(0, 2)) {
      const r = runCli(['sink', '--listen', '127.0.0.1:1', ...args], { timeoutMs: 10_000 });
      assert.equal(r.code, 1, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /^\s+at /m, r.stderr);
    }
  });

  test('a bad YAML rule is reported as FILE:LINE:COL: rules[i]: key', async () => {
    const { default: fs } = await import('node:fs');
    const { tmpDir } = await import('./helpers/peers.js');
    const file = `${tmpDir('sink-yaml-')}/sink.yaml`;
    fs.writeFileSync(file, 'rules:\n  - { rcpt: "a@*", reply: "550 5.1.1 no" }\n  - { domain: slow.test, data_delay: 70 seconds }\n');
    const r = runCli(['sink', '-c', file], { timeoutMs: 10_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:5: rules\\[1\\]: data_delay: not a valid duration`));
    assert.doesNotMatch(r.stderr, /^\s+at /m);
  });
});
