// The SMTP edge against today's attacks (issue 21): no bare CR or LF ever leaves smtplb
// (SMTP smuggling), pipelining only where RFC 2920 allows it, AUTH offered only inside TLS,
// TLS without client renegotiation or CBC suites. Peers: a recording upstream written here
// (it keeps the raw bytes of each DATA phase, which smtp-sink does not), Python's smtplib and
// the openssl command line.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { after, test } from 'node:test';
import { freePort, selfSignedCert, session, sleep, startSmtplb, stopAll, tmpDir, waitFor } from './helpers/peers.js';
import { relayConfig, sendData, startRecorder } from './helpers/recorder.js';

after(stopAll);

/** Each look-alike of an end of data that a reader of bare line endings could stop at. */
const FORMS: Record<string, string> = {
  'LF . LF': '\n.\n',
  'LF . CRLF': '\n.\r\n',
  'CR . CRLF': '\r.\r\n',
  'CR . CR': '\r.\r',
  'CRLF . CR': '\r\n.\r',
  'CR CRLF': '\r\r\n',
};

/** A bare CR or LF in `b`: a CR not followed by LF, or an LF not after a CR. */
function bareAt(b: Buffer): number {
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 13 && b[i + 1] !== 10) return i;
    if (b[i] === 10 && b[i - 1] !== 13) return i;
  }
  return -1;
}

function sendRaw(port: number, body: string): Promise<string> {
  return sendData(port, 'MAIL FROM:<app@client.test>', ['RCPT TO:<you@dest.test>'], body);
}

test('no bare CR or LF reaches the upstream for any end-of-data look-alike, queue and cut-through; reject refuses them', { timeout: 60_000 }, async () => {
  const rec = await startRecorder();
  const [queue, cut, strict] = [await freePort(), await freePort(), await freePort()];
  await startSmtplb(relayConfig(rec.port, [`name: queue, listen: 127.0.0.1:${queue}`, `name: cut, listen: 127.0.0.1:${cut}, delivery: cutthrough`, `name: strict, listen: 127.0.0.1:${strict}, bare_line_endings: reject`]));
  let sent = 0;
  for (const [name, form] of Object.entries(FORMS)) {
    // What a smuggler puts after the look-alike: a second transaction for the upstream to read.
    const body = `Subject: ${name}\r\n\r\nfirst line${form}MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<victim@dest.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled${form}last line\r\n.\r\n`;
    for (const port of [queue, cut]) {
      assert.match(await sendRaw(port, body), /^250 /, `${name} on ${port === queue ? 'queue' : 'cut-through'}`);
      sent++;
    }
    assert.match(await sendRaw(strict, body), /^550 5\.5\.2 /, `${name} refused with bare_line_endings: reject`);
  }
  // A clean message is taken by the strict listener.
  assert.match(await sendRaw(strict, 'Subject: clean\r\n\r\nclean\r\n.\r\n'), /^250 /);
  sent++;
  await waitFor(`${sent} messages at the recorder`, () => rec.messages.length >= sent, 20_000);
  await sleep(300);
  assert.equal(rec.messages.length, sent, 'one message upstream for each accepted, none smuggled');
  for (const m of rec.messages) {
    const at = bareAt(m);
    assert.equal(at, -1, `a bare line ending upstream at ${at}: ${JSON.stringify(m.subarray(Math.max(0, at - 20), at + 20).toString('latin1'))}`);
  }
  // The text is all there, each look-alike now an ordinary line (dot-stuffed on the wire).
  const smuggledLines = rec.messages.filter((m) => m.includes('\r\nMAIL FROM:<ceo@bank.test>\r\n'));
  assert.equal(smuggledLines.length, sent - 1, 'the would-be second transaction stays message text');
});

test('pipelining where RFC 2920 forbids it is refused: message text sent with DATA before the 354, commands after EHLO or HELO', { timeout: 30_000 }, async () => {
  const rec = await startRecorder();
  const port = await freePort();
  await startSmtplb(relayConfig(rec.port, [`name: relay, listen: 127.0.0.1:${port}`]));
  const refused = /^554 5\.5\.0 /;
  // Allowed: MAIL, RCPT and DATA in one write after EHLO, then the text after the 354.
  const ok = session(port);
  await ok.reply();
  assert.match(await ok.send('EHLO client.test'), /^250/);
  ok.raw('MAIL FROM:<a@client.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n');
  assert.match(await ok.reply(), /^250/);
  assert.match(await ok.reply(), /^250/);
  assert.match(await ok.reply(), /^354/);
  // The next group right behind the final dot, in a write of its own, while the message is
  // still being made durable (RFC 2920: the message text may begin a group): allowed.
  ok.raw('Subject: fine\r\n\r\nfine\r\n.\r\n');
  ok.raw('MAIL FROM:<a@client.test>\r\nRCPT TO:<c@dest.test>\r\nDATA\r\n');
  assert.match(await ok.reply(), /^250 /);
  assert.match(await ok.reply(), /^250/);
  assert.match(await ok.reply(), /^250/);
  assert.match(await ok.reply(), /^354/);
  assert.match(await ok.send('Subject: fine too\r\n\r\nfine\r\n.'), /^250 /);
  ok.close();
  // The same while the reply to the dot waits on a slow upstream (cut-through): the next group
  // is queued behind the message in the parser, and is still allowed.
  const slow = await startRecorder({ dataDelay: 400 });
  const cut = await freePort();
  await startSmtplb(relayConfig(slow.port, [`name: cut, listen: 127.0.0.1:${cut}, delivery: cutthrough`]));
  const c = session(cut);
  await c.reply();
  assert.match(await c.send('EHLO client.test'), /^250/);
  assert.match(await c.send('MAIL FROM:<a@client.test>'), /^250/);
  assert.match(await c.send('RCPT TO:<b@dest.test>'), /^250/);
  assert.match(await c.send('DATA'), /^354/);
  c.raw('Subject: slow\r\n\r\nslow\r\n.\r\n');
  await sleep(150);
  c.raw('MAIL FROM:<a@client.test>\r\nRCPT TO:<c@dest.test>\r\nDATA\r\n');
  assert.match(await c.reply(), /^250 /);
  assert.match(await c.reply(), /^250/);
  assert.match(await c.reply(), /^250/);
  assert.match(await c.reply(), /^354/, 'DATA behind a queued group');
  c.close();
  // The text together with DATA, before the 354.
  const early = session(port);
  await early.reply();
  assert.match(await early.send('EHLO client.test'), /^250/);
  early.raw('MAIL FROM:<a@client.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\nSubject: early\r\n\r\nearly\r\n.\r\n');
  assert.match(await early.reply(), /^250/);
  assert.match(await early.reply(), /^250/);
  assert.match(await early.reply(), refused);
  await early.closed();
  // Commands behind EHLO (PIPELINING not offered yet), and behind HELO (never offered).
  for (const greet of ['EHLO client.test', 'HELO client.test']) {
    const s = session(port);
    await s.reply();
    s.raw(`${greet}\r\nMAIL FROM:<a@client.test>\r\n`);
    assert.match(await s.reply(), refused, greet);
    await s.closed();
  }
  const helo = session(port);
  await helo.reply();
  assert.match(await helo.send('HELO client.test'), /^250/);
  helo.raw('MAIL FROM:<a@client.test>\r\nRCPT TO:<b@dest.test>\r\n');
  assert.match(await helo.reply(), refused, 'MAIL and RCPT pipelined by a HELO client');
  await helo.closed();
  await waitFor('the two good messages upstream', () => rec.messages.length === 2, 10_000);
  await sleep(300);
  assert.equal(rec.messages.length, 2);
});

test('AUTH is offered only inside TLS; Python smtplib upgrades first and logs in; TLS refuses renegotiation and CBC suites', { timeout: 60_000 }, async () => {
  const dir = tmpDir();
  const { cert, key } = selfSignedCert(dir, 'gw.test');
  const rec = await startRecorder();
  const port = await freePort();
  const hash = spawnSync(process.execPath, ['bin/smtplb.js', 'passwd', '--password', 'app-secret-1'], { encoding: 'utf8' }).stdout.trim();
  await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
users:
  - { name: app, password: "${hash}" }
listeners:
  - { name: sub, listen: 127.0.0.1:${port}, mode: smtp, require_auth: true, tls: { cert: ${cert}, key: ${key} } }
pools:
  out: { servers: [ { name: rec, address: 127.0.0.1:${rec.port} } ] }
routes: [ { pool: out } ]
`, { dir });
  const py = spawnSync('python3', ['-c', `
import smtplib, ssl, sys
s = smtplib.SMTP('127.0.0.1', ${port}, timeout=10)
s.ehlo('client.test')
print('before-tls auth offered:', s.has_extn('auth'), 'starttls offered:', s.has_extn('starttls'))
try:
    s.login('app', 'app-secret-1')
    print('cleartext login: went through')
except smtplib.SMTPNotSupportedError:
    print('cleartext login: refused by the client, nothing sent')
s.starttls(context=ssl._create_unverified_context())
s.ehlo('client.test')
print('after-tls auth offered:', s.has_extn('auth'), s.esmtp_features.get('auth', '').strip())
s.login('app', 'app-secret-1')
s.sendmail('app@client.test', ['you@dest.test'], 'Subject: py\\r\\n\\r\\nfrom smtplib\\r\\n')
s.quit()
print('sent')
`], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(py.status, 0, py.stderr + py.stdout);
  assert.match(py.stdout, /before-tls auth offered: False starttls offered: True/);
  assert.match(py.stdout, /cleartext login: refused by the client, nothing sent/);
  assert.match(py.stdout, /after-tls auth offered: True PLAIN LOGIN/);
  assert.match(py.stdout, /sent/);
  await waitFor('the message upstream', () => rec.messages.length === 1, 10_000);

  const sClient = (args: string[], input: string, ms: number) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-starttls', 'smtp', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (c) => (out += c));
      p.stderr.on('data', (c) => (out += c));
      const timer = setTimeout(() => p.kill('SIGKILL'), ms);
      p.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, out });
      });
      // Written after the handshake: an "R" line asks s_client to renegotiate.
      setTimeout(() => p.stdin.write(input), 1500);
      setTimeout(() => p.stdin.end(), ms - 1000);
    });
  // TLS 1.2 (1.3 has no renegotiation): the client's renegotiation is refused.
  const reneg = await sClient(['-tls1_2'], 'R\nEHLO after.test\r\n', 5000);
  assert.match(reneg.out, /RENEGOTIATING/, reneg.out);
  assert.match(reneg.out, /no renegotiation|renegotiation (failed|refused)|alert/i, reneg.out);
  assert.doesNotMatch(reneg.out, /250-gw\.test[^]*RENEGOTIATING[^]*250-gw\.test/, 'no EHLO answered after a renegotiation');
  // CBC suites and static RSA key exchange are not offered; an AEAD ECDHE suite is.
  const cbc = await sClient(['-tls1_2', '-cipher', 'AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA384'], 'QUIT\r\n', 4000);
  assert.doesNotMatch(cbc.out, /Cipher is (AES128-SHA|ECDHE-RSA-AES128-SHA|ECDHE-RSA-AES256-SHA384)\b/, cbc.out);
  assert.match(cbc.out, /handshake failure|no shared cipher|alert/i, cbc.out);
  const gcm = await sClient(['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'], 'QUIT\r\n', 4000);
  assert.match(gcm.out, /Cipher is ECDHE-RSA-AES128-GCM-SHA256/, gcm.out);
});

test('line endings: any bytes cut anywhere come out as the whole input with every bare CR and LF made CRLF', async () => {
  const fc = (await import('fast-check')).default;
  const { LineEndings } = await import('../src/cleanup/line-endings.js');
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom('a', '.', '\r', '\n', 'é'), maxLength: 80 }), fc.array(fc.nat({ max: 90 }), { maxLength: 6 }), (text, cuts) => {
      const input = Buffer.from(text, 'latin1');
      const points = [...new Set(cuts.map((c) => Math.min(c, input.length)))].sort((a, b) => a - b);
      const le = new LineEndings();
      const out: Buffer[] = [];
      let from = 0;
      for (const p of [...points, input.length]) {
        out.push(le.push(input.subarray(from, p)));
        from = p;
      }
      const tail = le.end();
      if (tail) out.push(tail);
      const want = text.replace(/\r\n|\r|\n/g, '\r\n');
      assert.equal(Buffer.concat(out).toString('latin1'), want);
      assert.equal(le.sawBare, want !== text || /\r(?!\n)|(?<!\r)\n/.test(text));
    }),
    { numRuns: 3000, seed: 2023 },
  );
});
