// SMTP extensions honoured end to end (issue 22): parameters of extensions not offered are
// refused, the Received line says what the client spoke and carries the queue id the client
// was told, and an upstream that lists many extensions is delivered to. Peers: a recording
// upstream (test/helpers/recorder.ts: Postfix cannot be made to list 600 EHLO keywords).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { metric, TOKEN } from './helpers/admin.js';
import { freePort, runCli, session, startSmtplb, stopAll, waitFor } from './helpers/peers.js';
import { startSmtplbSink } from './helpers/sink.js';
import { startRecorder } from './helpers/recorder.js';

after(stopAll);

test('MAIL and RCPT parameters of extensions not offered get 555 5.5.4; the offered ones are taken', { timeout: 30_000 }, async () => {
  const rec = await startRecorder();
  const port = await freePort();
  await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: rec, address: 127.0.0.1:${rec.port} } ] }
routes: [ { pool: out } ]
`);
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
  await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
listeners:
  - { name: queue, listen: 127.0.0.1:${queue}, mode: smtp, relay_networks: [127.0.0.0/8] }
  - { name: cut, listen: 127.0.0.1:${cut}, mode: smtp, delivery: cutthrough, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: rec, address: 127.0.0.1:${rec.port} } ] }
routes: [ { pool: out } ]
`);
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
  await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: rec, address: 127.0.0.1:${rec.port} } ] }
routes: [ { pool: out } ]
`);
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
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { tls: none, servers: [ { name: s1, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: out } ]
`);
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
  assert.equal(await metric(admin, 'smtplb_server_up', { pool: 'out', server: 's1' }), 1);
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
