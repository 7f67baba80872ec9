// The byte relay under `mode: tcp`: the native relay thread and the Node-stream fallback
// (SMTPLB_RELAY=stream) must behave the same against real smtp-sink upstreams: every message
// arrives, idle connections are cut at client_timeout, bytes and endings are counted, a PROXY
// header followed at once by client bytes loses nothing, servers named by host name work.
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { after, afterEach, test } from 'node:test';
import { sendOne } from '../src/cli/send.js';
import { freePort, session, smtpSource, startSink, startSmtplb, stopAll, waitFor, type Sink } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);

async function config(sinks: Sink[], listenerExtra = '', hostName = '127.0.0.1') {
  const port = await freePort();
  const admin = await freePort();
  const text = `hostname: lb.test
log: { level: warn }
admin: { listen: 127.0.0.1:${admin}, token: test-token-1 }
listeners:
  - { name: passthrough, listen: 127.0.0.1:${port}, mode: tcp, pool: relays${listenerExtra} }
pools:
  relays:
    health: { check: smtp, interval: 1s, timeout: 1s }
    servers:
${sinks.map((s, i) => `      - { name: s${i + 1}, address: ${hostName}:${s.port} }`).join('\n')}
`;
  return { port, admin, text };
}

async function metrics(admin: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(smtplb_proxy_\w+\{[^}]*\}) (\S+)$/.exec(line);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

const ended = (m: Map<string, number>, reason: string) => m.get(`smtplb_proxy_connections_ended_total{listener="passthrough",reason="${reason}"}`) ?? 0;
const sum = (m: Map<string, number>, prefix: string) => [...m].filter(([k]) => k.startsWith(prefix)).reduce((n, [, v]) => n + v, 0);

for (const relay of ['native', 'stream'] as const) {
  const env = relay === 'stream' ? { SMTPLB_RELAY: 'stream' } : undefined;

  test(`${relay} relay: 400 messages arrive, an idle client is cut at client_timeout, bytes and endings are counted`, async () => {
    const sinks = [await startSink(), await startSink()];
    const { port, admin, text } = await config(sinks, ', client_timeout: 1s');
    await startSmtplb(text, { env });
    const status = (await (await fetch(`http://127.0.0.1:${admin}/api/status`, { headers: { authorization: 'Bearer test-token-1' } })).json()) as { tcp_relay: string };
    if (relay === 'native') assert.equal(status.tcp_relay, 'native', 'the native relay is built and loaded');
    else assert.equal(status.tcp_relay, 'stream (SMTPLB_RELAY=stream)');
    const r = await smtpSource(port, 400, 10);
    assert.equal(r.code, 0, r.stderr);
    await waitFor('400 messages at the sinks', () => sinks[0].count() + sinks[1].count() === 400, 20_000);
    // 400 sessions, plus the start-up probes of the test helper that saw the port open.
    await waitFor('400 endings counted', async () => sum(await metrics(admin), 'smtplb_proxy_connections_ended_total') >= 400, 10_000);

    const s = session(port);
    assert.match(await s.reply(), /^220/);
    assert.match(await s.send('EHLO client.test'), /^250/);
    const idleFrom = Date.now();
    await Promise.race([s.closed(), new Promise((_, reject) => setTimeout(() => reject(new Error('idle client not cut within 5s')), 5000))]);
    const idle = Date.now() - idleFrom;
    assert.ok(idle >= 900, `cut after ${idle}ms, before client_timeout`);
    const m = await metrics(admin);
    assert.equal(ended(m, 'client_timeout'), 1);
    // 400 × (1,000-byte message + envelope) went to the servers, far less came back.
    const toServer = m.get('smtplb_proxy_bytes_total{listener="passthrough",direction="to_server"}') ?? 0;
    const toClient = m.get('smtplb_proxy_bytes_total{listener="passthrough",direction="to_client"}') ?? 0;
    assert.ok(toServer > 400 * 1000, `to_server ${toServer}`);
    assert.ok(toClient > 400 * 50 && toClient < toServer, `to_client ${toClient}`);
  });

  test(`${relay} relay: an 8 MB message arrives byte for byte, with the sink writing it to disk as it reads`, async () => {
    const sink = await startSink();
    const { port, text } = await config([sink]);
    await startSmtplb(text, { env });
    // 8 MB of random base64 lines: far more than the socket buffers hold, so the relay has to
    // hold back bytes the sink cannot take yet, in order.
    const body = randomBytes(6 * 1024 * 1024).toString('base64').replace(/.{76}/g, '$&\r\n');
    const r = await sendOne({ server: `127.0.0.1:${port}`, from: 'big@client.test', to: ['rcpt@dest.test'], headers: [], subject: 'big', body, count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true }, 0);
    assert.ok(r.ok, r.ok ? '' : r.error);
    const [got] = await sink.settle(1, 30_000);
    // smtp-sink dumps lines with bare LF.
    const want = body.replace(/\r\n/g, '\n');
    assert.ok(got.includes(want), `the body arrived intact (${got.length} bytes dumped for ${want.length} sent)`);
  });

  test(`${relay} relay: a client that stops reading while it pipelines a million NOOPs gets every reply`, async () => {
    const sink = await startSink();
    const { port, text } = await config([sink]);
    await startSmtplb(text, { env });
    // The replies (about 14 MB) outgrow every socket buffer on the way while the client is
    // not reading, so the relay must hold back and resume both directions without losing
    // or reordering a byte.
    const n = 1_000_000;
    const replies = await new Promise<number>((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      let count = 0;
      let rest = '';
      sock.pause();
      sock.write(`EHLO client.test\r\n${'NOOP\r\n'.repeat(n)}QUIT\r\n`);
      setTimeout(() => {
        sock.on('data', (c: Buffer) => {
          const lines = (rest + c.toString('latin1')).split('\r\n');
          rest = lines.pop()!;
          for (const l of lines) if (l.startsWith('250 ')) count++;
        });
        sock.resume();
      }, 1500);
      sock.on('close', () => resolve(count));
      sock.on('error', reject);
      sock.setTimeout(60_000, () => reject(new Error(`stalled after ${count} replies`)));
    });
    assert.equal(replies, n + 1, 'the EHLO reply and one 250 per NOOP');
  });

  test(`${relay} relay: a PROXY header and the client's first bytes in one packet lose nothing`, async () => {
    const sink = await startSink();
    const { port, text } = await config([sink], ', accept_proxy: [127.0.0.1/32]');
    await startSmtplb(text, { env });
    const got = await new Promise<string>((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      let buf = '';
      sock.on('data', (c) => (buf += c));
      sock.on('close', () => resolve(buf));
      sock.on('error', () => resolve(buf));
      sock.setTimeout(5000, () => sock.destroy());
      // Pipelined before the greeting: not polite SMTP, but bytes a relay must not drop.
      sock.write('PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\nEHLO client.test\r\nQUIT\r\n');
    });
    assert.match(got, /^220 /m, got);
    assert.match(got, /^250[ -]/m, got);
    assert.match(got, /^221 /m, got);
  });
}

test('a server named by host name works: Node resolves and connects, the relay copies', async () => {
  const sink = await startSink();
  const { port, text } = await config([sink], '', 'localhost');
  await startSmtplb(text);
  const r = await smtpSource(port, 50, 5);
  assert.equal(r.code, 0, r.stderr);
  await waitFor('50 messages at the sink', () => sink.count() === 50, 10_000);
});
