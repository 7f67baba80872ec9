// Outbound pipelining (RFC 2920), seen in smtplb's own system calls under strace with real
// receivers: to a server that offers PIPELINING (smtp-sink, and smtplb sink refusing some
// recipients) MAIL FROM, every RCPT TO and DATA leave in one write, and a body with its final
// dot in one more; to one that does not (smtp-sink -p) each command waits for its reply. The
// outcomes are the unpipelined ones: every recipient refused in a pipelined group bounces
// with its own 550 (one DSN), a 451 is retried, and the connection carries the next message.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { startUnderStrace } from './helpers/strace.js';
import { freePort, haveCommand, runCli, startSink, stopAll, swaks, tmpDir, waitFor } from './helpers/peers.js';
import { startSmtplbSink } from './helpers/sink.js';

after(stopAll);

test('under strace: the envelope is one write where PIPELINING is offered, one command per reply where not; refusals keep their outcomes; a client session costs no socket-option, address or shutdown calls', { skip: haveCommand('strace') ? false : 'strace is not installed' }, async () => {
  const piped = await startSink();
  const plain = await startSink({ args: ['-p'] });
  const picky = await startSmtplbSink({ rules: ['rcpt=bad*@*,reply=550 5.1.1 User unknown', 'rcpt=later*@*,reply=451 4.2.0 Mailbox busy'] });
  const dir = tmpDir('pipelining-');
  const [port, admin] = [await freePort(), await freePort()];
  const file = path.join(dir, 'smtplb.yaml');
  fs.writeFileSync(
    file,
    `hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: pipelining-token }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  piped: { servers: [ { name: p1, address: 127.0.0.1:${piped.port} } ] }
  plain: { servers: [ { name: n1, address: 127.0.0.1:${plain.port} } ] }
  picky: { servers: [ { name: k1, address: 127.0.0.1:${picky.port} } ] }
routes:
  - { domains: [piped.test], pool: piped }
  - { domains: [picky.test], pool: picky }
  - { pool: plain }
queue: { retry: [1h], max_age: 1d }
`,
  );
  const traced = await startUnderStrace(file, port, { dir, calls: 'write,writev,listen,accept4,setsockopt,getsockname,shutdown,close', strsize: 4096 });
  const base: SendOptions = { server: `127.0.0.1:${port}`, from: 'app@client.test', to: [], headers: [], subject: 'pipelining', body: '', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };
  const send = async (to: string[], body: string, i: number) => {
    const r = await sendOne({ ...base, to, body }, i);
    assert.ok(r.ok, r.ok ? '' : r.error);
  };
  await send(['x1@piped.test', 'x2@piped.test'], 'body-marker-piped', 1);
  await send(['y1@plain.test'], 'body-marker-plain', 2);
  await send(['bad1@picky.test', 'bad2@picky.test'], 'body-marker-refused', 3);
  await send(['bad3@picky.test', 'later1@picky.test', 'ok1@picky.test'], 'body-marker-mixed', 4);
  // A pipelining client (swaks --pipeline): its MAIL, RCPTs and DATA answered in one write.
  const sw = await swaks(['--server', `127.0.0.1:${port}`, '--pipeline', '--from', 'app@client.test', '--to', 'z1@piped.test,z2@piped.test', '--body', 'body-marker-swaks']);
  assert.match(sw.stdout, /<- +250 2\.0\.0 Ok/, sw.stdout);
  await piped.settle(2);
  // The plain server gets its message and the one DSN for bad1 and bad2 (client.test routes there); bad3's DSN follows.
  await plain.settle(3, 20_000);
  await waitFor('ok1 at the picky server', async () => (await picky.stats()).recipients?.['ok1@picky.test'] === 1, 10_000);
  const list = runCli(['queue', 'list', '--json', '-c', file]);
  assert.equal(list.code, 0, list.stderr);
  const queued = JSON.parse(list.stdout) as { messages: { recipients: { address: string; state: string; last_code: number | null }[] }[] };
  const open = queued.messages.flatMap((m) => m.recipients.filter((r) => r.state === 'queued').map((r) => [r.address, r.last_code]));
  assert.deepEqual(open, [['later1@picky.test', 451]], 'the 451 waits for its retry; everything else is settled');

  const calls = await traced.finish();
  const writes = calls.filter((c) => c.name === 'write' || c.name === 'writev');
  // A writev's pieces joined: what one system call sent.
  const sent = (args: string) => args.replace(/", iov_len=\d+\}, \{iov_base="/g, '');
  const the = (needle: string) => {
    const w = writes.filter((c) => c.args.includes(needle));
    assert.equal(w.length, 1, `one write holds ${needle}`);
    return w[0].args;
  };
  // Offered: the whole envelope in one system call.
  for (const [first, ...rest] of [['x1@piped.test', 'x2@piped.test'], ['z1@piped.test', 'z2@piped.test'], ['bad1@picky.test', 'bad2@picky.test'], ['bad3@picky.test', 'later1@picky.test', 'ok1@picky.test']]) {
    const w = the(`RCPT TO:<${first}>`);
    assert.match(w, /MAIL FROM:<app@client\.test>/, `MAIL FROM with RCPT TO:<${first}>`);
    for (const r of rest) assert.ok(w.includes(`RCPT TO:<${r}>`), `RCPT TO:<${r}> with RCPT TO:<${first}>`);
    assert.ok(w.includes('DATA\\r\\n'), `DATA with RCPT TO:<${first}>`);
  }
  // Inbound: the replies to swaks's pipelined group in one write.
  assert.ok(writes.some((c) => /250 2\.1\.0[^"]*\\r\\n250 2\.1\.5[^"]*\\r\\n250 2\.1\.5[^"]*\\r\\n354 /.test(sent(c.args))), 'MAIL, RCPT, RCPT and DATA answered in one write');
  // Not offered: RCPT TO in a write of its own, after MAIL's reply.
  assert.doesNotMatch(the('RCPT TO:<y1@plain.test>'), /MAIL FROM|DATA/);
  // A body and its final dot in one call.
  assert.match(sent(the('body-marker-piped')), /body-marker-piped\\r\\n\.\\r\\n"/);
  // Every refused recipient bounced with its own reply, in DSNs to the sender.
  const dsns = plain.messages().filter((m) => /Delivery Status Notification|Undelivered|failure/i.test(m));
  assert.ok(dsns.some((m) => m.includes('bad1@picky.test') && m.includes('bad2@picky.test') && m.includes('5.1.1')), 'one DSN names bad1 and bad2 with 5.1.1');
  assert.ok(dsns.some((m) => m.includes('bad3@picky.test')), 'a DSN names bad3');
  const got = await picky.stats();
  assert.deepEqual(Object.keys(got.recipients ?? {}).sort(), ['ok1@picky.test'], 'nothing reached the picky server but ok1');

  // A client session that ends with QUIT: accept4, getpeername, reads and writes, close.
  // TCP_NODELAY comes from the listening socket, the local address is the listener's own, and
  // QUIT ends in close, not shutdown. (The SMTP listener: the listening socket on `port`.)
  const fdOf = (c: { args: string }) => c.args.split(',')[0];
  const smtpFd = calls.find((c) => c.name === 'getsockname' && c.args.includes(`htons(${port})`))?.args.split(',')[0];
  assert.ok(smtpFd, 'the SMTP listening socket in the trace');
  assert.ok(calls.some((c) => c.name === 'setsockopt' && fdOf(c) === smtpFd && /TCP_NODELAY, \[1\]/.test(c.args)), 'TCP_NODELAY set on the listening socket');
  const live = new Map<string, string[]>();
  const ended: string[][] = [];
  for (const c of calls) {
    if (c.name === 'accept4' && fdOf(c) === smtpFd && Number(c.ret) >= 0) live.set(c.ret, []);
    const session = live.get(fdOf(c));
    if (!session || c.name === 'accept4') continue;
    if (c.name === 'close') {
      ended.push(session);
      live.delete(fdOf(c));
    } else session.push(c.name === 'write' && c.args.includes('221 ') ? 'write 221' : c.name);
  }
  const quit = ended.filter((s) => s.includes('write 221'));
  assert.ok(quit.length >= 5, `${quit.length} sessions ended with QUIT`);
  for (const s of quit) assert.deepEqual(s.filter((n) => ['setsockopt', 'getsockname', 'shutdown'].includes(n)), [], 'no setsockopt, getsockname or shutdown in a session');
});
