// mode smtp against real smtp-sink upstreams and real clients (smtp-source, swaks):
// balancing per message, relay policy, retries, DSNs, 421 failover, bad input, queue tools.
import assert from 'node:assert/strict';
import { after, afterEach, test } from 'node:test';
import { queueIdle } from './helpers/admin.js';
import { freePort, runCli, session, sleep, smtpSource, startHaproxy, startSink, startSmtplb, stopAll, swaks, waitFor, type Sink } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);

interface RelayOpts { retry?: string; maxAge?: string; extra?: string; listener?: string; poolExtra?: string; routes?: string; sinks2?: Sink[]; health?: string }

async function relay(sinks: Sink[], o: RelayOpts = {}) {
  const port = await freePort();
  const admin = await freePort();
  const text = `hostname: gw.test
log: { level: info, format: json }
admin: { listen: 127.0.0.1:${admin}, token: test-token-1 }
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.1/32]${o.listener ?? ''} }
pools:
  relays:
    health: ${o.health ?? '{ check: smtp, interval: 1s, timeout: 1s }'}
    reuse: { messages: 50, seconds: 5s }
${o.poolExtra ?? ''}    servers:
${sinks.map((s, i) => `      - { name: s${i + 1}, address: 127.0.0.1:${s.port} }`).join('\n')}
${o.sinks2 ? `  bounces:\n    health: { check: tcp, interval: 1s }\n    servers:\n${o.sinks2.map((s, i) => `      - { name: b${i + 1}, address: 127.0.0.1:${s.port} }`).join('\n')}\n` : ''}routes:
${o.routes ?? ''}  - { pool: relays }
queue: { retry: [${o.retry ?? '1s'}], max_age: ${o.maxAge ?? '1h'} }
${o.extra ?? ''}`;
  const lb = await startSmtplb(text);
  return { port, admin, lb, file: lb.file };
}

const ids = (s: Sink) => s.messages().map((m) => /^Message-Id: (.+)$/im.exec(m)?.[1]?.trim() ?? '');

test('2,000 messages from 10 concurrent clients all arrive, split between two upstreams', async () => {
  const a = await startSink();
  const b = await startSink();
  const { port } = await relay([a, b]);
  const r = await smtpSource(port, 2000, 10);
  assert.equal(r.code, 0, r.stderr);
  await waitFor('2,000 at the sinks', () => a.count() + b.count() >= 2000, 60_000);
  await Promise.all([a.settle(0), b.settle(0)]);
  const all = [...ids(a), ...ids(b)];
  assert.equal(all.length, 2000, 'no duplicates');
  assert.equal(new Set(all).size, 2000, 'every Message-Id once');
  assert.ok(Math.abs(a.count() - 1000) <= 150, `split ${a.count()} / ${b.count()}`);
});

test('never an open relay: outside relay_networks without AUTH, every relay form gets 554 5.7.1; AUTH without TLS is refused', async () => {
  const a = await startSink();
  const { port, admin } = await relay([a]);
  for (const to of ['user@other.test', 'user%other.test@gw.test', '"user@other.test"@gw.test', '@gw.test:user@other.test', 'other.test!user@gw.test']) {
    const s = session(port, '127.0.0.1', '127.0.0.2');
    assert.match(await s.reply(), /^220/);
    assert.match(await s.send('EHLO outsider.test'), /^250/);
    assert.match(await s.send('MAIL FROM:<spammer@outsider.test>'), /^250/);
    const reply = await s.send(`RCPT TO:<${to}>`);
    assert.match(reply, /^554 5\.7\.1 /, `${to}: ${reply}`);
    s.close();
  }
  const sw = await swaks(['--server', `127.0.0.1:${port}`, '--local-interface', '127.0.0.2', '--from', 'x@outsider.test', '--to', 'y@other.test']);
  assert.notEqual(sw.code, 0);
  assert.match(sw.stdout, /<\*\* 554 5\.7\.1 Relay access denied/);
  const s = session(port);
  await s.reply();
  const ehlo = await s.send('EHLO c.test');
  assert.doesNotMatch(ehlo, /AUTH/, 'no AUTH offered without TLS');
  assert.match(await s.send('AUTH PLAIN AGFwcABzZWNyZXQ='), /^5\d\d /);
  s.close();
  // Nothing queued and nothing in flight: nothing can reach the upstream.
  await queueIdle(admin);
  assert.equal(a.count(), 0);
});

test('451 from the upstream: retried on schedule and delivered once it recovers', async () => {
  const a = await startSink({ args: ['-r', 'RCPT'] });
  const { port, admin, lb } = await relay([a], { retry: '1s' });
  const sw = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@client.test', '--to', 'user@dest.test', '--header', 'Subject: retry me']);
  assert.equal(sw.code, 0, sw.stdout);
  const id = /queued as ([A-Z0-9]+)/.exec(sw.stdout)![1];
  await waitFor('two deferrals', () => (lb.output().match(/"queue_id":"[A-Z0-9]+".*"code":450/g) ?? []).length >= 2, 10_000);
  const show = runCli(['queue', 'show', id, '-c', lb.file]);
  assert.match(show.stdout, /queued .*attempts [2-9]/, show.stderr);
  assert.match(show.stdout, /450/);
  await a.stop();
  const healthy = await startSink({ port: a.port });
  const [got] = await healthy.settle(1);
  assert.match(got, /Subject: retry me/);
  void admin;
});

test('a 550 produces a DSN to the sender with the original headers; max_age expiry produces one too', async () => {
  const refusing = await startSink({ args: ['-f', 'RCPT', '-B', '550 5.1.1 no such user'] });
  const bounceSink = await startSink();
  const { port } = await relay([refusing], {
    sinks2: [bounceSink],
    routes: '  - { domains: [sender.test], pool: bounces }\n',
  });
  const sw = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@sender.test', '--to', 'nobody@dest.test', '--header', 'Subject: doomed', '--header', 'X-Original: kept']);
  assert.equal(sw.code, 0, sw.stdout);
  const [dsn] = await bounceSink.settle(1);
  assert.match(dsn, /X-Mail-Args: <>/, 'DSN has the null sender');
  assert.match(dsn, /X-Rcpt-Args: <app@sender\.test>/);
  assert.match(dsn, /Content-Type: multipart\/report; report-type=delivery-status/);
  assert.match(dsn, /Final-Recipient: rfc822; nobody@dest\.test/);
  assert.match(dsn, /Action: failed/);
  assert.match(dsn, /Status: 5\.1\.1/);
  assert.match(dsn, /Diagnostic-Code: smtp; 550 5\.1\.1 no such user\r?\nX-Smtplb-Class: invalid-recipient/);
  assert.match(dsn, /Content-Type: text\/rfc822-headers[\s\S]*Subject: doomed[\s\S]*X-Original: kept/);
  await stopAll();

  // Expiry: an upstream that always defers, max_age 3s.
  const deferring = await startSink({ args: ['-r', 'RCPT'] });
  const bounceSink2 = await startSink();
  const r2 = await relay([deferring], { retry: '1s', maxAge: '3s', sinks2: [bounceSink2], routes: '  - { domains: [sender.test], pool: bounces }\n' });
  const sw2 = await swaks(['--server', `127.0.0.1:${r2.port}`, '--from', 'app@sender.test', '--to', 'late@dest.test', '--header', 'Subject: too slow']);
  assert.equal(sw2.code, 0);
  const [dsn2] = await bounceSink2.settle(1);
  assert.match(dsn2, /could not be delivered before it expired/);
  assert.match(dsn2, /Final-Recipient: rfc822; late@dest\.test/);
  assert.match(dsn2, /X-Smtplb-Class: expired/);
  assert.match(dsn2, /Subject: too slow/);
});

test('an upstream answering 421: its messages go to the other server at once, none waits for a retry', async () => {
  const bad = await startSink({ args: ['-Q', 'MAIL'] });
  const good = await startSink();
  const { port } = await relay([bad, good], { retry: '10m' });
  const t0 = Date.now();
  const r = await smtpSource(port, 100, 5);
  assert.equal(r.code, 0, r.stderr);
  await waitFor('100 at the good server', () => good.count() === 100, 20_000);
  assert.ok(Date.now() - t0 < 20_000);
  assert.equal(bad.count(), 0);
});

test('an upstream that accepts TCP and closes before greeting: deliveries fail over, none hangs', async () => {
  // HAProxy in front of a dead port is a real peer that does exactly this: it accepts, finds no
  // backend, and closes without a word. A tcp check passes, so only delivery can notice.
  const dead = await freePort();
  const hp = await freePort();
  const mute = await startHaproxy(`global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n  retries 0\nfrontend f\n  bind 127.0.0.1:${hp}\n  default_backend b\nbackend b\n  server gone 127.0.0.1:${dead}\n`, hp);
  const good = await startSink();
  const { port } = await relay([{ port: mute.port } as Sink, good], { retry: '10m', health: '{ check: tcp, interval: 1s }' });
  const r = await smtpSource(port, 50, 5);
  assert.equal(r.code, 0, r.stderr);
  await waitFor('50 at the good server', () => good.count() === 50, 20_000);
});

test('bad input gets its proper reply or a clean close, and others are still served', async () => {
  const a = await startSink();
  const { port } = await relay([a], { listener: ', max_message_size: 10KB, max_recipients: 3, client_timeout: 2s' });
  // 10,000-character command line
  let s = session(port);
  await s.reply();
  await s.send('EHLO c.test');
  const long = await s.send(`MAIL FROM:<${'a'.repeat(10_000)}@x.test>`);
  assert.match(long, /^(5\d\d|closed)/, long);
  s.close();
  // oversized message
  s = session(port);
  await s.reply();
  await s.send('EHLO c.test');
  await s.send('MAIL FROM:<a@c.test>');
  await s.send('RCPT TO:<b@d.test>');
  await s.send('DATA');
  assert.match(await s.send(`Subject: big\r\n\r\n${'x'.repeat(100).concat('\r\n').repeat(200)}.`), /^552 5\.3\.4 /);
  // too many recipients
  await s.send('RSET');
  await s.send('MAIL FROM:<a@c.test>');
  for (let i = 0; i < 3; i++) assert.match(await s.send(`RCPT TO:<r${i}@d.test>`), /^250/);
  assert.match(await s.send('RCPT TO:<r9@d.test>'), /^452 4\.5\.3 /);
  // bare LF inside the message is accepted and relayed
  await s.send('RSET');
  await s.send('MAIL FROM:<a@c.test>');
  await s.send('RCPT TO:<bare@d.test>');
  await s.send('DATA');
  assert.match(await s.send('Subject: bare lf\nX: y\n\nline one\nline two\r\n.'), /^250 2\.0\.0 Ok: queued/);
  s.close();
  // random binary
  s = session(port);
  await s.reply();
  s.raw(Buffer.from(Array.from({ length: 2000 }, (_, i) => (i * 7919) % 256)));
  const bin = await s.reply();
  assert.match(bin, /^(5\d\d|closed|421)/, bin);
  s.close();
  // a client that stalls mid-DATA is timed out; it does not hold up the others
  const staller = session(port);
  await staller.reply();
  await staller.send('EHLO c.test');
  await staller.send('MAIL FROM:<a@c.test>');
  await staller.send('RCPT TO:<stall@d.test>');
  await staller.send('DATA');
  staller.raw('Subject: stalled\r\n\r\npartial');
  const ok = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'a@c.test', '--to', 'fine@d.test']);
  assert.equal(ok.code, 0, 'others are served while one stalls');
  await waitFor('staller closed', async () => {
    await staller.closed();
    return true;
  }, 10_000);
  await a.settle(2);
  assert.ok(a.messages().every((m) => !/stalled/.test(m)), 'the stalled message was never relayed');
});

test('queue tools on a live queue: list --json, hold, release, delete, flush', async () => {
  const down = await freePort();
  const fakeSink = { port: down } as Sink;
  const { port, lb } = await relay([fakeSink], { retry: '10m' });
  for (let i = 0; i < 3; i++) {
    const sw = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'a@c.test', '--to', `q${i}@dest.test`]);
    assert.equal(sw.code, 0, sw.stdout);
  }
  await sleep(500); // stays: lets the first attempts end (hold leaves in-flight rows alone); the queue never empties here
  const list = JSON.parse(runCli(['queue', 'list', '--json', '-c', lb.file]).stdout) as { messages: { id: string; recipients: { state: string; attempts: number }[] }[] };
  assert.equal(list.messages.length, 3);
  const [m1, m2, m3] = list.messages.map((m) => m.id);
  assert.equal(runCli(['queue', 'hold', m1, '-c', lb.file]).code, 0);
  assert.equal(JSON.parse(runCli(['queue', 'list', '--state', 'held', '--json', '-c', lb.file]).stdout).messages.length, 1);
  assert.equal(runCli(['queue', 'release', m1, '-c', lb.file]).code, 0);
  assert.equal(JSON.parse(runCli(['queue', 'list', '--state', 'held', '--json', '-c', lb.file]).stdout).messages.length, 0);
  assert.equal(runCli(['queue', 'delete', m2, '-c', lb.file]).code, 0);
  assert.equal(JSON.parse(runCli(['queue', 'list', '--json', '-c', lb.file]).stdout).messages.length, 2);
  const sink = await startSink({ port: down });
  await waitFor('upstream back up', () => /"up": true/.test(runCli(['status', '--json', '-c', lb.file]).stdout), 10_000);
  const fl = runCli(['queue', 'flush', '-c', lb.file]);
  assert.equal(fl.code, 0, fl.stderr);
  await waitFor('flushed messages delivered', () => sink.count() === 2, 10_000);
  assert.equal(runCli(['queue', 'list', '--json', '-c', lb.file]).stdout.includes(m3), false);
  assert.match(runCli(['queue', 'show', 'NOSUCHID', '-c', lb.file]).stderr, /no message NOSUCHID/);
});

test('route explain names the route, pool and candidate servers', async () => {
  const a = await startSink();
  const b = await startSink();
  const { lb } = await relay([a], { sinks2: [b], routes: '  - { domains: [gmail.com, "*.gmail.com"], pool: bounces }\n' });
  const r = runCli(['route', 'explain', 'someone@mail.gmail.com', '-c', lb.file]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /route #0 -> pool bounces/);
  assert.match(r.stdout, /recipient domain mail\.gmail\.com matches \*\.gmail\.com/);
  assert.match(r.stdout, /would pick among b1/);
  const d = JSON.parse(runCli(['route', 'explain', 'x@example.org', '--json', '-c', lb.file]).stdout);
  assert.equal(d.route.pool, 'relays');
  assert.deepEqual(d.why, ['default route (no match keys)']);
});
