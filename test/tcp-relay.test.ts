// The byte relay under `mode: tcp`: the native relay thread and the Node-stream fallback
// (SMTPLB_RELAY=stream) must behave the same against real smtp-sink upstreams: every message
// arrives, idle connections are cut at client_timeout, bytes and endings are counted, a PROXY
// header followed at once by client bytes loses nothing, servers named by host name work.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, afterEach, test } from 'node:test';
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
