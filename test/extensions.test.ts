// SMTP extensions honoured end to end (issue 22): parameters of extensions not offered are
// refused, the Received line says what the client spoke and carries the queue id the client
// was told, and an upstream that lists many extensions is delivered to. Peers: a recording
// upstream (test/helpers/recorder.ts: Postfix cannot be made to list 600 EHLO keywords).
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { metric, TOKEN } from './helpers/admin.js';
import { freePort, runCli, session, sleep, startSink, startSmtplb, stopAll, tmpDir, waitFor } from './helpers/peers.js';
import { startPostfix } from './helpers/postfix.js';
import { startSmtplbSink } from './helpers/sink.js';
import { relayConfig, sendData, startRecorder } from './helpers/recorder.js';

after(stopAll);

test('MAIL and RCPT parameters of extensions not offered get 555 5.5.4; the offered ones are taken', { timeout: 30_000 }, async () => {
  const rec = await startRecorder();
  const port = await freePort();
  await startSmtplb(relayConfig(rec.port, [`name: relay, listen: 127.0.0.1:${port}`]));
  const s = session(port);
  await s.reply();
  const ehlo = await s.send('EHLO client.test');
  assert.doesNotMatch(ehlo, /REQUIRETLS/);
  assert.match(await s.send('MAIL FROM:<a@client.test> FOO=BAR'), /^555 5\.5\.4 Unsupported option: FOO=BAR/);
  assert.match(await s.send('MAIL FROM:<a@client.test> REQUIRETLS'), /^555 5\.5\.4 Unsupported option: REQUIRETLS/);
  assert.match(await s.send('MAIL FROM:<a@client.test> SIZE=100 BODY=8BITMIME'), /^250 /);
  assert.match(await s.send('RCPT TO:<b@dest.test> XYZZY=1'), /^555 5\.5\.4 Unsupported option: XYZZY=1/);
  assert.match(await s.send('RCPT TO:<b@dest.test>'), /^250 /);
  assert.match(await s.send('DATA'), /^354/);
  assert.match(await s.send('Subject: params\r\n\r\nbody\r\n.'), /^250 /);
  s.close();
  await waitFor('delivered', () => rec.messages.length === 1, 10_000);
});

test('Received says SMTP after HELO and ESMTP after EHLO, and its id is the queue id the client was told', { timeout: 30_000 }, async () => {
  const rec = await startRecorder();
  const [queue, cut] = [await freePort(), await freePort()];
  await startSmtplb(dsnConfig(queue, cut, rec.port));
  const send = async (port: number, greet: string, subject: string) => {
    const s = session(port);
    await s.reply();
    assert.match(await s.send(`${greet} client.test`), /^250/);
    assert.match(await s.send('MAIL FROM:<a@client.test>'), /^250/);
    assert.match(await s.send('RCPT TO:<b@dest.test>'), /^250/);
    assert.match(await s.send('DATA'), /^354/);
    const r = await s.send(`Subject: ${subject}\r\n\r\nbody\r\n.`);
    s.close();
    const id = /queued as (\w+)/.exec(r)?.[1];
    assert.ok(id, `a queue id in the reply: ${r}`);
    return id;
  };
  const cases = [
    { port: queue, greet: 'HELO', proto: 'SMTP', subject: 'helo queue' },
    { port: queue, greet: 'EHLO', proto: 'ESMTP', subject: 'ehlo queue' },
    { port: cut, greet: 'HELO', proto: 'SMTP', subject: 'helo cut' },
    { port: cut, greet: 'EHLO', proto: 'ESMTP', subject: 'ehlo cut' },
  ];
  const ids: string[] = [];
  for (const c of cases) ids.push(await send(c.port, c.greet, c.subject));
  await waitFor('4 messages upstream', () => rec.messages.length === 4, 10_000);
  cases.forEach((c, i) => {
    const m = rec.messages.map((b) => b.toString('latin1')).find((t) => t.includes(`Subject: ${c.subject}\r\n`))!;
    assert.ok(m, c.subject);
    assert.match(m, new RegExp(`by gw\\.test \\(smtplb\\) with ${c.proto} id ${ids[i]}\\r\\n`), `${c.subject}: ${m.slice(0, 300)}`);
  });
});

test('an upstream that lists 600 EHLO keywords is delivered to; a 600-line reply elsewhere still ends the connection', { timeout: 30_000 }, async () => {
  const rec = await startRecorder({ ehlo: [...Array.from({ length: 600 }, (_, i) => `X-EXTENSION-${i}`), '8BITMIME'] });
  const port = await freePort();
  await startSmtplb(relayConfig(rec.port, [`name: relay, listen: 127.0.0.1:${port}`]));
  const s = session(port);
  await s.reply();
  await s.send('EHLO client.test');
  await s.send('MAIL FROM:<a@client.test>');
  await s.send('RCPT TO:<b@dest.test>');
  await s.send('DATA');
  assert.match(await s.send('Subject: many extensions\r\n\r\nbody\r\n.'), /^250 /);
  s.close();
  await waitFor('delivered past a 601-line EHLO reply', () => rec.messages.length === 1, 10_000);
});

test('a 421 to RCPT followed by a close (Yahoo TSS04) is that recipient\'s outcome: it feeds its destination\'s backoff, never ejects the server', { timeout: 60_000 }, async () => {
  const sink = await startSmtplbSink({ rules: ['domain=yahoo.test,preset=yahoo-tss04'] });
  const [port, admin] = [await freePort(), await freePort()];
  const lb = await startSmtplb(relayConfig(sink.port, [`name: relay, listen: 127.0.0.1:${port}`], `admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }\n`));
  let ejected = false;
  const watch = setInterval(async () => {
    const r = await fetch(`http://127.0.0.1:${admin}/api/status`, { headers: { authorization: `Bearer ${TOKEN}` } }).catch(() => null);
    if (!r?.ok) return;
    const st = (await r.json()) as { pools: { servers: { name: string; up: boolean; ejected: boolean }[] }[] };
    if (st.pools.some((p) => p.servers.some((s) => s.ejected || !s.up))) ejected = true;
  }, 100);
  const ids: string[] = [];
  const sendTo = async (rcpt: string) => {
    const s = session(port);
    await s.reply();
    await s.send('EHLO client.test');
    await s.send('MAIL FROM:<app@client.test>');
    assert.match(await s.send(`RCPT TO:<${rcpt}>`), /^250/);
    await s.send('DATA');
    const r = await s.send(`Subject: to ${rcpt}\r\n\r\nbody\r\n.`);
    s.close();
    ids.push(/queued as (\w+)/.exec(r)?.[1] ?? '');
  };
  try {
    for (let i = 0; i < 20; i++) await sendTo(`u${i}@yahoo.test`);
    const t0 = Date.now();
    for (let i = 0; i < 5; i++) await sendTo(`v${i}@other.test`);
    await waitFor('the 5 for the other destination', async () => Object.keys((await sink.stats()).recipients).filter((r) => r.endsWith('@other.test')).length === 5, 10_000, 100);
    assert.ok(Date.now() - t0 < 10_000);
  } finally {
    clearInterval(watch);
  }
  assert.equal(ejected, false, 'the server was never ejected or taken down');
  assert.equal(await metric(admin, 'smtplb_server_up', { pool: 'out', server: 'rec' }), 1);
  // A throttled message: its reply is the TSS04 text, with its next attempt.
  const shown = runCli(['queue', 'show', ids[0], '-c', lb.file]);
  assert.match(shown.stdout, /421 4\.7\.0 \[TSS04\] Messages from 127\.0\.0\.1 temporarily deferred/, shown.stdout);
  assert.match(shown.stdout, /next attempt/, shown.stdout);
  const throttles = JSON.parse(runCli(['throttles', '--json', '-c', lb.file]).stdout) as { throttles: { destination: string; factor: number; last_throttle_reply: string | null }[] };
  const y = throttles.throttles.find((t) => t.destination === 'yahoo.test');
  assert.ok(y && y.factor < 1, `yahoo.test was slowed down: ${JSON.stringify(throttles)}`);
  assert.match(y.last_throttle_reply ?? '', /TSS04/);
  assert.ok(!throttles.throttles.some((t) => t.destination === 'other.test' && t.factor < 1), 'other.test was not');
});

/** One message over a raw session: the commands given as they are, then a small body. */
/** One message with a small body whose subject and Message-ID come from `subject`. */
function transact(port: number, mail: string, rcpts: string[], subject: string): Promise<string> {
  return sendData(port, mail, rcpts, `Subject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@client.test>\r\n\r\nthe body of ${subject}\r\n.\r\n`);
}

function dsnConfig(queue: number, cut: number, upstream: number): string {
  return relayConfig(upstream, [`name: queue, listen: 127.0.0.1:${queue}`, `name: cut, listen: 127.0.0.1:${cut}, delivery: cutthrough`]);
}

test('DSN parameters reach a hop that offers DSN exactly (RET, ENVID, NOTIFY, ORCPT per recipient, BODY=8BITMIME), queue and cut-through', { timeout: 30_000 }, async () => {
  const rec = await startRecorder({ ehlo: ['PIPELINING', 'DSN', '8BITMIME', 'SIZE 10000000'] });
  const [queue, cut] = [await freePort(), await freePort()];
  await startSmtplb(dsnConfig(queue, cut, rec.port));
  for (const [port, tag] of [[queue, 'Q'], [cut, 'C']] as const) {
    const r = await transact(port, `MAIL FROM:<a@client.test> RET=HDRS ENVID=${tag}+2B314 BODY=8BITMIME`, [`RCPT TO:<b@dest.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@dest.test`, 'RCPT TO:<c@dest.test> NOTIFY=NEVER', 'RCPT TO:<d@dest.test>'], `dsn ${tag}`);
    assert.match(r, /^250 /);
  }
  await waitFor('both messages upstream', () => rec.messages.length >= 2, 10_000);
  for (const tag of ['Q', 'C']) {
    const mail = rec.commands.find((c) => c.startsWith('MAIL FROM:<a@client.test>') && c.includes(`ENVID=${tag}+2B314`));
    assert.ok(mail, `MAIL with ENVID ${tag}: ${rec.commands.filter((c) => c.startsWith('MAIL')).join(' | ')}`);
    assert.match(mail, / BODY=8BITMIME/);
    assert.match(mail, / RET=HDRS/);
  }
  // ENVID "Q+314" arrived xtext-decoded and left encoded again; ORCPT likewise.
  assert.equal(rec.commands.filter((c) => c === 'RCPT TO:<b@dest.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@dest.test').length, 2);
  assert.equal(rec.commands.filter((c) => c === 'RCPT TO:<c@dest.test> NOTIFY=NEVER').length, 2);
  assert.equal(rec.commands.filter((c) => c === 'RCPT TO:<d@dest.test>').length, 2);
});

test('NOTIFY decides the DSNs: NEVER gets no bounce, the default and FAILURE do (RET=HDRS headers, RET=FULL the message, ORCPT and ENVID in them), SUCCESS through a hop without DSN gets "relayed"', { timeout: 60_000 }, async () => {
  const rec = await startRecorder({ ehlo: ['8BITMIME'], refuse: (rcpt) => (rcpt.startsWith('gone') ? '550 5.1.1 <' + rcpt + '>: no such user' : undefined) });
  const [queue, cut] = [await freePort(), await freePort()];
  await startSmtplb(dsnConfig(queue, cut, rec.port));
  await transact(queue, 'MAIL FROM:<never@client.test>', ['RCPT TO:<gone1@dest.test> NOTIFY=NEVER'], 'never');
  await transact(queue, 'MAIL FROM:<hdrs@client.test> RET=HDRS ENVID=env-hdrs', ['RCPT TO:<gone2@dest.test> ORCPT=rfc822;original@dest.test'], 'hdrs');
  await transact(queue, 'MAIL FROM:<full@client.test> RET=FULL', ['RCPT TO:<gone3@dest.test> NOTIFY=FAILURE,DELAY'], 'full');
  await transact(queue, 'MAIL FROM:<ok@client.test>', ['RCPT TO:<fine@dest.test> NOTIFY=SUCCESS', 'RCPT TO:<quiet@dest.test>'], 'success queue');
  await transact(cut, 'MAIL FROM:<okcut@client.test>', ['RCPT TO:<fine2@dest.test> NOTIFY=SUCCESS'], 'success cut');
  const dsnTo = (sender: string) => rec.messages.map((m) => m.toString('latin1')).filter((m) => m.includes('multipart/report') && m.includes(`To: <${sender}>`));
  await waitFor('the DSNs', () => dsnTo('hdrs@client.test').length && dsnTo('full@client.test').length && dsnTo('ok@client.test').length && dsnTo('okcut@client.test').length, 20_000, 100);
  await sleep(1500);
  assert.equal(dsnTo('never@client.test').length, 0, 'NOTIFY=NEVER: no bounce');
  const hdrs = dsnTo('hdrs@client.test');
  assert.equal(hdrs.length, 1, hdrs.join('\n=====\n'));
  assert.match(hdrs[0], /Action: failed/);
  assert.match(hdrs[0], /Original-Recipient: rfc822; original@dest\.test/);
  assert.match(hdrs[0], /Original-Envelope-Id: env-hdrs/);
  assert.match(hdrs[0], /Remote-MTA: dns; 127\.0\.0\.1\r\n/, 'the host, not the pool\'s label for it');
  assert.match(hdrs[0], /Content-Type: text\/rfc822-headers/);
  assert.doesNotMatch(hdrs[0], /the body of hdrs/, 'RET=HDRS: headers only');
  const full = dsnTo('full@client.test');
  assert.match(full[0], /Content-Type: message\/rfc822/);
  assert.match(full[0], /the body of full/, 'RET=FULL: the message whole');
  for (const sender of ['ok@client.test', 'okcut@client.test']) {
    const ok = dsnTo(sender);
    assert.equal(ok.length, 1, `${sender}: ${ok.join('\n=====\n')}`);
    assert.match(ok[0], /Subject: Successful Mail Delivery Report/);
    assert.match(ok[0], /Action: relayed/);
    assert.match(ok[0], /Status: 2\.0\.0/);
    assert.doesNotMatch(ok[0], /quiet@dest\.test/, 'a recipient without NOTIFY=SUCCESS is not in the report');
  }
  // The mail itself went through, once.
  const mail = rec.messages.map((m) => m.toString('latin1')).filter((m) => !m.includes('multipart/report'));
  assert.equal(mail.filter((m) => m.includes('Subject: success queue')).length, 1);
  assert.equal(mail.filter((m) => m.includes('Subject: success cut')).length, 1);
});

test('an internationalized envelope never goes to a hop without SMTPUTF8: bounce with 5.6.7 (queue), 5xx at the end of DATA (cut-through); a hop with SMTPUTF8 gets it', { timeout: 60_000 }, async () => {
  const plain = await startRecorder({ ehlo: ['8BITMIME'] });
  const [queue, cut] = [await freePort(), await freePort()];
  await startSmtplb(dsnConfig(queue, cut, plain.port));
  assert.match(await transact(queue, 'MAIL FROM:<a@client.test> SMTPUTF8', ['RCPT TO:<jörg@dest.test>'], 'utf8 queue'), /^250 /);
  assert.match(await transact(cut, 'MAIL FROM:<a@client.test> SMTPUTF8', ['RCPT TO:<jörg@dest.test>'], 'utf8 cut'), /^5\d\d 5\.6\.7 SMTPUTF8 is required, but was not offered/);
  await waitFor('the bounce', () => plain.messages.some((m) => m.includes('multipart/report')), 15_000, 100);
  const dsn = plain.messages.map((m) => m.toString('utf8')).find((m) => m.includes('multipart/report'))!;
  assert.match(dsn, /Status: 5\.6\.7/);
  assert.ok(!plain.commands.some((c) => /RCPT TO:<j\S*rg@dest\.test>/.test(c)), 'the internationalized address was never sent');
  assert.ok(!plain.messages.some((m) => m.includes('Subject: utf8') && !m.includes('multipart/report')), 'the message never went out');

  // A second server of the pool that could not be reached: not a reason to bounce; it waits.
  const dead = await freePort();
  const [q3, c3] = [await freePort(), await freePort()];
  const withDead = relayConfig(plain.port, [`name: queue, listen: 127.0.0.1:${q3}`, `name: cut, listen: 127.0.0.1:${c3}, delivery: cutthrough`]).replace(
    `out: { servers: [ { name: rec, address: 127.0.0.1:${plain.port} } ] }`,
    `out: { health: { check: tcp, interval: 200ms, rise: 1, fall: 1 }, servers: [ { name: rec, address: 127.0.0.1:${plain.port} }, { name: dead, address: 127.0.0.1:${dead} } ] }`,
  );
  assert.match(withDead, /name: dead/);
  await startSmtplb(withDead);
  await sleep(1000); // the health check has found the dead one down: it is never drawn
  const before = plain.messages.filter((m) => m.includes('multipart/report')).length;
  assert.match(await transact(q3, 'MAIL FROM:<a@client.test> SMTPUTF8', ['RCPT TO:<jörg@dest.test>'], 'utf8 waits'), /^250 /);
  await sleep(1500);
  assert.equal(plain.messages.filter((m) => m.includes('multipart/report')).length, before, 'no bounce while a server was not reached');

  const wide = await startRecorder({ ehlo: ['8BITMIME', 'SMTPUTF8'] });
  const [q2, c2] = [await freePort(), await freePort()];
  await startSmtplb(dsnConfig(q2, c2, wide.port));
  assert.match(await transact(q2, 'MAIL FROM:<a@client.test> SMTPUTF8', ['RCPT TO:<jörg@dest.test>'], 'utf8 ok'), /^250 /);
  await waitFor('delivered to the SMTPUTF8 hop', () => wide.messages.some((m) => m.includes('Subject: utf8 ok')), 10_000);
  assert.ok(wide.commands.some((c) => c.startsWith('MAIL FROM:<a@client.test>') && / SMTPUTF8/.test(c)), wide.commands.join(' | '));
});

test('an 8-bit body: a hop with 8BITMIME gets BODY=8BITMIME and the bytes unchanged; a 7-bit hop gets quoted-printable that decodes to the same text, signed again so DKIM verifies; 8-bit headers bounce with 5.6.3', { timeout: 60_000 }, async () => {
  const dir = tmpDir('eightbit-');
  const key = runCli(['dkim', 'keygen', '--domain', 'client.test', '--selector', 's1', '--out', path.join(dir, 'k.pem')]);
  assert.equal(key.code, 0, key.stderr);
  const txt = /^(s1\._domainkey\.[a-z.]+)\. IN TXT \( (.+) \)$/m.exec(key.stdout)!;
  const record = [...txt[2].matchAll(/"([^"]*)"/g)].map((x) => x[1]).join('');
  const resolver = async (name: string, type: string) => {
    if (type !== 'TXT' || name.replace(/\.$/, '') !== txt[1]) throw Object.assign(new Error(`no ${type} for ${name}`), { code: 'ENOTFOUND' });
    return [[record]];
  };
  const eight = await startRecorder({ ehlo: ['PIPELINING', '8BITMIME'] });
  const seven = await startRecorder({ ehlo: ['PIPELINING'] });
  const [p8, p7] = [await freePort(), await freePort()];
  const dkim = `dkim:\n  domains:\n    client.test: { selector: s1, key_file: ${path.join(dir, 'k.pem')}, algorithm: rsa-sha256 }\n`;
  await startSmtplb(relayConfig(eight.port, [`name: relay, listen: 127.0.0.1:${p8}`]) + dkim, { dir: tmpDir() });
  await startSmtplb(relayConfig(seven.port, [`name: relay, listen: 127.0.0.1:${p7}`]) + dkim, { dir: tmpDir() });
  const text = 'Grüße aus Köln — 東京からこんにちは. Déjà vu.\r\n.leading dot line and a long line ' + 'ä'.repeat(60) + '\r\n';
  const message = `From: news@client.test\r\nTo: you@dest.test\r\nSubject: eight bit\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b1"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n${text}--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>${text}</p>\r\n--b1--\r\n`;
  const send = async (port: number, body: string) => {
    const s = session(port);
    await s.reply();
    await s.send('EHLO client.test');
    assert.match(await s.send('MAIL FROM:<news@client.test> BODY=8BITMIME'), /^250/);
    assert.match(await s.send('RCPT TO:<you@dest.test>'), /^250/);
    assert.match(await s.send('DATA'), /^354/);
    s.raw(Buffer.from(body.replace(/\r\n\./g, '\r\n..') + '.\r\n', 'utf8'));
    const r = await s.reply();
    s.close();
    return r;
  };
  assert.match(await send(p8, message), /^250 /);
  assert.match(await send(p7, message), /^250 /);
  await waitFor('both delivered', () => eight.messages.length === 1 && seven.messages.length === 1, 15_000);
  // The 8BITMIME hop: BODY=8BITMIME, and the UTF-8 bytes as sent.
  assert.ok(eight.commands.some((c) => c.startsWith('MAIL FROM:<news@client.test>') && / BODY=8BITMIME/.test(c)), eight.commands.join(' | '));
  const m8 = Buffer.from(eight.messages[0].toString('latin1').replace(/\r\n\.\./g, '\r\n.'), 'latin1'); // dot-stuffing undone
  assert.ok(m8.includes(Buffer.from(text, 'utf8')), 'the 8-bit text unchanged');
  // The 7-bit hop: no BODY parameter, no byte over 127, quoted-printable decoding to the same text.
  const got7 = seven.messages[0];
  assert.ok(!seven.commands.some((c) => / BODY=/.test(c)));
  assert.ok(!got7.some((b) => b > 127), 'only 7-bit bytes');
  const m7 = got7.toString('latin1').replace(/\r\n\.\./g, '\r\n.');
  const parts = m7.split('\r\n--b1');
  assert.match(parts[1], /Content-Transfer-Encoding: quoted-printable\r\n/);
  assert.match(parts[2], /Content-Transfer-Encoding: quoted-printable\r\n/);
  const qpBody = parts[1].slice(parts[1].indexOf('\r\n\r\n') + 4);
  const decoded = Buffer.from(qpBody.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
  assert.equal(decoded, text.slice(0, -2), 'quoted-printable decodes to the same text');
  for (const m of [m8, Buffer.from(m7, 'latin1')]) {
    const v = await dkimVerify(m, { resolver });
    assert.equal(v.results[0]?.status.result, 'pass', JSON.stringify(v.results[0]?.status));
    assert.equal(v.results[0]?.signingDomain, 'client.test');
  }
  // A DKIM-Signature the client wrote (for a domain smtplb holds a key for) on a message smtplb
  // did not sign: a conversion never signs for it.
  const forged = `DKIM-Signature: v=1; a=rsa-sha256; d=client.test; s=s1; h=from; bh=x; b=x\r\nFrom: x@nokey.test\r\nSubject: forged\r\n\r\nbody ä\r\n`;
  const s = session(p7);
  await s.reply();
  await s.send('EHLO client.test');
  assert.match(await s.send('MAIL FROM:<x@nokey.test> BODY=8BITMIME'), /^250/);
  assert.match(await s.send('RCPT TO:<you@dest.test>'), /^250/);
  assert.match(await s.send('DATA'), /^354/);
  s.raw(Buffer.from(`${forged}.\r\n`, 'utf8'));
  assert.match(await s.reply(), /^250 /);
  s.close();
  await waitFor('the forged one delivered', () => seven.messages.some((m) => m.includes('Subject: forged')), 15_000);
  const f = seven.messages.find((m) => m.includes('Subject: forged'))!;
  const fv = await dkimVerify(f, { resolver });
  assert.ok(!fv.results.some((r) => r.status.result === 'pass'), `no valid signature for the domain the client named: ${JSON.stringify(fv.results.map((r) => r.status))}`);
  // 8-bit in a header: no conversion can carry it to a 7-bit hop: bounced with 5.6.3.
  assert.match(await send(p7, 'From: news@client.test\r\nSubject: Grüße\r\n\r\nbody ä\r\n'), /^250 /);
  await waitFor('the bounce', () => seven.messages.some((m) => m.includes('multipart/report')), 15_000);
  const dsn = seven.messages.find((m) => m.includes('multipart/report'))!.toString('latin1');
  assert.match(dsn, /Status: 5\.6\.3/);
  assert.match(dsn, /8-bit characters in a header/);
});

test('7-bit conversion on plain data: 7-bit mail untouched, a non-MIME 8-bit body labelled, binary and 8-bit headers refused, nesting walked', async () => {
  const { toSevenBit } = await import('../src/delivery/seven-bit.js');
  const ascii = Buffer.from('From: a@b.test\r\nSubject: x\r\n\r\nplain\r\n');
  const same = toSevenBit(ascii);
  assert.ok(same.ok && !same.converted && same.message === ascii);
  const plain = toSevenBit(Buffer.from('From: a@b.test\r\n\r\nCafé\r\n', 'utf8'));
  assert.ok(plain.ok && plain.converted);
  assert.equal(plain.message.toString('latin1'), 'From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9\r\n');
  const binary = toSevenBit(Buffer.from('Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\u00ff\u00fe', 'latin1'));
  assert.ok(!binary.ok && /binary/.test(binary.reason));
  const header = toSevenBit(Buffer.from('Subject: Grüße\r\n\r\nx\r\n', 'utf8'));
  assert.ok(!header.ok && /header/.test(header.reason));
  const nested = toSevenBit(Buffer.from('Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nÄ\r\n--o--\r\n', 'utf8'));
  assert.ok(nested.ok && nested.converted);
  assert.match(nested.message.toString('latin1'), /Subject: inner\r\nContent-Type: text\/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=84\r\n--o--\r\n$/);
});

test('queue.delay_warning: one "delayed" DSN per waiting recipient, by default or with NOTIFY=DELAY, none with NOTIFY=FAILURE alone', { timeout: 60_000 }, async () => {
  const rec = await startRecorder({ refuse: (rcpt) => (rcpt.startsWith('slow') ? '452 4.2.2 <' + rcpt + '>: mailbox full' : undefined) });
  const port = await freePort();
  await startSmtplb(relayConfig(rec.port, [`name: relay, listen: 127.0.0.1:${port}`], 'queue: { retry: [700ms], delay_warning: 1s }\n'));
  await transact(port, 'MAIL FROM:<s1@client.test>', ['RCPT TO:<slow1@dest.test>'], 'default');
  await transact(port, 'MAIL FROM:<s2@client.test>', ['RCPT TO:<slow2@dest.test> NOTIFY=FAILURE'], 'failure only');
  await transact(port, 'MAIL FROM:<s3@client.test> ENVID=wait-3', ['RCPT TO:<slow3@dest.test> NOTIFY=DELAY,FAILURE'], 'delay');
  const notices = (sender: string) => rec.messages.map((m) => m.toString('latin1')).filter((m) => m.includes('multipart/report') && m.includes(`To: <${sender}>`));
  await waitFor('the delay notices', () => notices('s1@client.test').length && notices('s3@client.test').length, 20_000, 100);
  // Several more retries pass: still one notice each.
  const attempts = () => rec.commands.filter((c) => c.startsWith('RCPT TO:<slow1@')).length;
  const seen = attempts();
  await waitFor('more retries', () => attempts() >= seen + 3, 20_000, 100);
  assert.equal(notices('s1@client.test').length, 1);
  assert.equal(notices('s3@client.test').length, 1);
  assert.equal(notices('s2@client.test').length, 0, 'NOTIFY=FAILURE alone: no delay notice');
  const n = notices('s3@client.test')[0];
  assert.match(n, /Subject: Delayed Mail \(still being retried\)/);
  assert.match(n, /Action: delayed/);
  assert.match(n, /Status: 4\.2\.2/);
  assert.match(n, /Original-Envelope-Id: wait-3/);
});

test('a real Postfix as the DSN- and SMTPUTF8-capable hop: it is handed RET, ENVID, NOTIFY and ORCPT exactly (it passes them on to smtp-sink, which records them), and takes an internationalized envelope', { timeout: 90_000 }, async () => {
  const sink = await startSink();
  const pf = await freePort();
  const postfix = await startPostfix([{ port: pf }], { default_transport: 'smtp', relay_transport: 'smtp', relayhost: `[127.0.0.1]:${sink.port}`, smtputf8_enable: 'yes' });
  const port = await freePort();
  await startSmtplb(relayConfig(pf, [`name: relay, listen: 127.0.0.1:${port}`]));
  assert.match(await transact(port, 'MAIL FROM:<a@client.test> RET=HDRS ENVID=pf+2Benv', ['RCPT TO:<b@dest.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig+2Bb@dest.test'], 'to postfix'), /^250 /);
  assert.match(await transact(port, 'MAIL FROM:<a@client.test> SMTPUTF8', ['RCPT TO:<jörg@dest.test>'], 'utf8 to postfix'), /^250 /);
  const msgs = await sink.settle(1, 30_000);
  const dsnOne = msgs.find((m) => m.includes('Subject: to postfix'))!;
  assert.ok(dsnOne, msgs.join('\n----\n'));
  // smtp-sink's dump lines: the MAIL and RCPT parameters Postfix sent on, as smtplb gave them.
  assert.match(dsnOne, /^X-Mail-Args:.*RET=HDRS/m, dsnOne.slice(0, 600));
  assert.match(dsnOne, /^X-Mail-Args:.*ENVID=pf\+2Benv/m);
  assert.match(dsnOne, /^X-Rcpt-Args:.*NOTIFY=SUCCESS,DELAY/m);
  assert.match(dsnOne, /^X-Rcpt-Args:.*ORCPT=rfc822;orig\+2Bb@dest\.test/m);
  // Postfix (smtputf8_enable) took the internationalized envelope from smtplb. (smtp-sink has no
  // SMTPUTF8, so Postfix's own onward delivery to it bounces: that is Postfix's hop, not ours.)
  await waitFor('Postfix queued the internationalized message', () => /message-id=<utf8topostfix@client\.test>/.test(postfix.log()), 20_000, 100);
});
