// SMTP extensions honoured end to end (issue 22): parameters of extensions not offered are
// refused, the Received line says what the client spoke and carries the queue id the client
// was told, and an upstream that lists many extensions is delivered to. Peers: a recording
// upstream (test/helpers/recorder.ts: Postfix cannot be made to list 600 EHLO keywords).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { freePort, session, startSmtplb, stopAll, waitFor } from './helpers/peers.js';
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
