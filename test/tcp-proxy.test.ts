// `mode: tcp` against real smtp-sink upstreams: distribution, leastconn, failover under load,
// backup and the 421 greeting, SMTP checks, SIGHUP.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { metric, reload } from './helpers/admin.js';
import { after, afterEach, test } from 'node:test';
import { freePort, greeting, session, sleep, smtpSource, startSink, startSmtplb, stopAll, waitFor, type Sink } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);

interface LbOpts { balance?: string; weights?: number[]; backup?: Sink; interval?: string; fall?: number; rise?: number; check?: string; extraPool?: string }

async function proxyConfig(sinks: Sink[], o: LbOpts = {}) {
  const port = await freePort();
  const admin = await freePort();
  const servers = sinks.map((s, i) => `      - { name: s${i + 1}, address: 127.0.0.1:${s.port}, weight: ${o.weights?.[i] ?? 1} }`);
  if (o.backup) servers.push(`      - { name: spare, address: 127.0.0.1:${o.backup.port}, backup: true }`);
  const text = `hostname: lb.test
log: { level: warn }
admin: { listen: 127.0.0.1:${admin}, token: test-token-1 }
listeners:
  - { name: passthrough, listen: 127.0.0.1:${port}, mode: tcp, pool: relays }
pools:
  relays:
    balance: ${o.balance ?? 'roundrobin'}
    health: { check: ${o.check ?? 'smtp'}, interval: ${o.interval ?? '1s'}, timeout: 1s, rise: ${o.rise ?? 2}, fall: ${o.fall ?? 2} }
${o.extraPool ?? ''}    servers:
${servers.join('\n')}
`;
  return { port, admin, text };
}


async function serverUp(adminPort: number, server: string): Promise<boolean> {
  const s = (await (await fetch(`http://127.0.0.1:${adminPort}/api/status`, { headers: { authorization: 'Bearer test-token-1' } })).json()) as {
    pools: { servers: { name: string; up: boolean }[] }[];
  };
  return s.pools[0].servers.find((x) => x.name === server)!.up;
}

async function waitCount(sinks: Sink[], total: number) {
  await waitFor(`${total} messages at the sinks`, () => sinks.reduce((n, s) => n + s.count(), 0) >= total, 20_000);
  return sinks.map((s) => s.count());
}

test('1,000 messages split 50/50 over two equal servers, 75/25 with weights 3:1', async () => {
  for (const weights of [[1, 1], [3, 1]]) {
    const sinks = [await startSink(), await startSink()];
    const { port, text } = await proxyConfig(sinks, { weights });
    await startSmtplb(text);
    const r = await smtpSource(port, 1000, 10);
    assert.equal(r.code, 0, r.stderr);
    const counts = await waitCount(sinks, 1000);
    assert.equal(counts[0] + counts[1], 1000);
    const share = counts[0] / 1000;
    const expected = weights[0] / (weights[0] + weights[1]);
    assert.ok(Math.abs(share - expected) <= 0.05, `weights ${weights}: first server got ${counts[0]} of 1000`);
    await stopAll();
  }
});

test('leastconn sends new connections away from a slowed server', async () => {
  const slow = await startSink({ args: ['-w', '3'] });
  const fast = await startSink();
  const { port, text } = await proxyConfig([slow, fast], { balance: 'leastconn' });
  await startSmtplb(text);
  const r = await smtpSource(port, 200, 8);
  assert.equal(r.code, 0, r.stderr);
  const [s, f] = await waitCount([slow, fast], 200);
  // Only the sessions that were open when the slow server was picked can end up there.
  assert.ok(s <= 8, `slow server got ${s} of 200 (fast ${f})`);
  assert.ok(f >= 192, `fast server got ${f}`);
});

test('an upstream killed under load stops getting connections within fall × interval + 1s, clients see no failure, and it comes back after rise checks', async () => {
  const a = await startSink({ hostname: 'mta-a.test' });
  const b = await startSink({ hostname: 'mta-b.test' });
  const interval = 300;
  const fall = 2;
  const rise = 2;
  const { port, admin, text } = await proxyConfig([a, b], { interval: `${interval}ms`, fall, rise });
  await startSmtplb(text);
  const results: { t: number; g: string }[] = [];
  let running = true;
  const hardStop = Date.now() + 30_000; // bounded whatever happens below
  const clients = Array.from({ length: 4 }, async () => {
    while (running && Date.now() < hardStop) {
      const t = Date.now(); // when the session started
      results.push({ t, g: await greeting(port) });
    }
  });
  try {
  await waitFor('a serves before the kill', () => results.some((r) => r.g.includes('mta-a.test')), 5000);
  const killStarted = Date.now();
  await a.kill();
  // Sessions that reached a before its death was complete die with it (as with any L4 proxy):
  // "after the kill" starts once the process is gone.
  const killedAt = Date.now();
  const detectBy = killStarted + fall * interval + 1000;
  await sleep(detectBy - Date.now()); // stays: the bound under test (fall × interval + 1 s)
  const failuresAtDetection = await metric(admin, 'smtplb_server_connect_failures_total', { server: 's1' });
  assert.equal(await serverUp(admin, 's1'), false, 's1 is marked down');
  await sleep(1500); // stays: a window in which no attempt may reach the dead server
  assert.equal(await metric(admin, 'smtplb_server_connect_failures_total', { server: 's1' }), failuresAtDetection, 'no connection attempt to the dead server after detection');
  // Sessions already connected to a when it was SIGKILLed die with it (as with any L4
  // proxy); every session started after the kill must succeed.
  const afterKill = results.filter((r) => r.t > killedAt);
  assert.ok(afterKill.length > 50, `load kept flowing (${afterKill.length} sessions)`);
  const bad = afterKill.filter((r) => !r.g.startsWith('220 '));
  assert.deepEqual(bad, [], 'clients see no failure');
  assert.ok(results.filter((r) => r.t >= detectBy + 100).every((r) => r.g.includes('mta-b.test')));
  const restartAt = Date.now();
  await a.restart();
  await waitFor('s1 back up', () => serverUp(admin, 's1'), 10_000);
  const upAfter = Date.now() - restartAt;
  assert.ok(upAfter >= (rise - 1) * interval, `came back after ${upAfter}ms, needs ${rise} good checks`);
  await waitFor('traffic returns to a', () => results.filter((r) => r.t > restartAt + upAfter + 100).some((r) => r.g.includes('mta-a.test')), 5000);
  } finally {
    running = false;
    await Promise.all(clients);
  }
});

test('all primaries down: the backup takes the traffic; backup down too: clients read 421 4.3.2', async () => {
  const a = await startSink({ hostname: 'mta-a.test' });
  const b = await startSink({ hostname: 'mta-b.test' });
  const spare = await startSink({ hostname: 'spare.test' });
  const { port, admin, text } = await proxyConfig([a, b], { backup: spare, interval: '200ms' });
  await startSmtplb(text);
  for (let i = 0; i < 6; i++) assert.doesNotMatch(await greeting(port), /spare\.test/, 'backup idle while primaries are up');
  await a.kill();
  await b.kill();
  await waitFor('primaries down', async () => !(await serverUp(admin, 's1')) && !(await serverUp(admin, 's2')));
  for (let i = 0; i < 6; i++) assert.match(await greeting(port), /^220 spare\.test/);
  await spare.kill();
  // Even before the checks notice, a refused connection must not reach the client as a reset.
  for (let i = 0; i < 3; i++) assert.match(await greeting(port), /^421 4\.3\.2 lb\.test Service not available/);
});

test('the smtp check marks down a server that greets with 554 or never greets', async () => {
  // Misbehaving upstreams: plain sockets, because no packaged MTA can be told to greet with
  // 554 or to stay silent; that is all these two do.
  const rude = net.createServer((s) => s.end('554 5.3.2 not accepting mail\r\n'));
  const mute = net.createServer((s) => s.on('error', () => {}));
  const good = await startSink({ hostname: 'good.test' });
  const rudePort = await freePort();
  const mutePort = await freePort();
  await new Promise<void>((r) => rude.listen(rudePort, '127.0.0.1', () => r()));
  await new Promise<void>((r) => mute.listen(mutePort, '127.0.0.1', () => r()));
  try {
    const { port, admin, text } = await proxyConfig([good], {
      interval: '200ms',
      extraPool: '',
    });
    const withBad = text.replace('weight: 1 }', `weight: 1 }\n      - { name: rude, address: 127.0.0.1:${rudePort} }\n      - { name: mute, address: 127.0.0.1:${mutePort} }`);
    await startSmtplb(withBad);
    await waitFor('rude down', async () => !(await serverUp(admin, 'rude')), 5000);
    await waitFor('mute down', async () => !(await serverUp(admin, 'mute')), 5000);
    assert.equal(await serverUp(admin, 's1'), true);
    const status = await (await fetch(`http://127.0.0.1:${admin}/api/status`, { headers: { authorization: 'Bearer test-token-1' } })).json() as { pools: { servers: { name: string; last_error: string }[] }[] };
    assert.match(status.pools[0].servers.find((s) => s.name === 'rude')!.last_error, /554/);
    for (let i = 0; i < 6; i++) assert.match(await greeting(port), /^220 good\.test/);
  } finally {
    rude.close();
    mute.close();
  }
});

test('SIGHUP with a changed server list applies to new connections and keeps established ones', async () => {
  const a = await startSink({ hostname: 'mta-a.test' });
  const b = await startSink({ hostname: 'mta-b.test' });
  const { port, admin, text } = await proxyConfig([a]);
  const lb = await startSmtplb(text);
  const s = session(port);
  assert.match(await s.reply(), /^220 mta-a\.test/);
  assert.match(await s.send('EHLO client.test'), /^250/);
  fs.writeFileSync(lb.file, text.replace(`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`));
  // SIGHUP, then wait until smtplb_config_reloads_total counts it: fails (after 10 s) if the
  // reload never happens, and says so if it was refused.
  assert.equal(await reload(lb, admin), 'applied');
  await waitFor('new connections go to b', async () => (await greeting(port)).includes('mta-b.test'), 5000);
  for (let i = 0; i < 4; i++) assert.match(await greeting(port), /mta-b\.test/);
  // The old session still talks to a and completes a message.
  assert.match(await s.send('MAIL FROM:<x@client.test>'), /^250/);
  assert.match(await s.send('RCPT TO:<y@dest.test>'), /^250/);
  assert.match(await s.send('DATA'), /^354/);
  assert.match(await s.send('Subject: across a reload\r\n\r\nbody\r\n.'), /^250/);
  assert.match(await s.send('QUIT'), /^221/);
  s.close();
  await waitFor('message at a', () => a.count() === 1);
});

test('an invalid config on SIGHUP is reported and the running one kept', async () => {
  const a = await startSink({ hostname: 'mta-a.test' });
  const { port, text } = await proxyConfig([a]);
  const lb = await startSmtplb(text.replace('log: { level: warn }', 'log: { level: info }'));
  fs.writeFileSync(lb.file, text.replace('weight: 1', 'weight: heavy'));
  lb.reload();
  await waitFor('reload refused', () => lb.output().includes('reload refused'), 5000);
  assert.match(lb.output(), /weight: expected a number/);
  assert.match(await greeting(port), /^220 mta-a\.test/);
});

test('a pool whose servers are all down hands its connections to the fallback pool', async () => {
  const primary = await startSink({ hostname: 'primary.test' });
  const dr = await startSink({ hostname: 'dr.test' });
  const { port, admin, text } = await proxyConfig([primary], {
    interval: '200ms',
    extraPool: '    fallback: dr\n',
  });
  await startSmtplb(`${text}  dr:\n    health: { check: smtp, interval: 200ms }\n    servers: [ { name: dr1, address: 127.0.0.1:${dr.port} } ]\n`);
  assert.match(await greeting(port), /^220 primary\.test/);
  await primary.kill();
  await waitFor('primary down', async () => !(await serverUp(admin, 's1')));
  for (let i = 0; i < 3; i++) assert.match(await greeting(port), /^220 dr\.test/);
});

test('max_connections: extra clients wait for a slot, and get 421 when the wait runs out', async () => {
  const a = await startSink({ hostname: 'mta-a.test' });
  const { port, admin, text } = await proxyConfig([a], { extraPool: '    queue_timeout: 700ms\n' });
  await startSmtplb(text.replace(`address: 127.0.0.1:${a.port}, weight: 1 }`, `address: 127.0.0.1:${a.port}, weight: 1, max_connections: 1 }`));
  const first = session(port);
  assert.match(await first.reply(), /^220 mta-a\.test/);
  // The second waits while the first holds the only slot, then times out with 421.
  const t0 = Date.now();
  assert.match(await greeting(port, 5000), /^421 4\.3\.2 lb\.test/);
  assert.ok(Date.now() - t0 >= 600, 'waited for a slot before giving up');
  // A slot freed during the wait is handed over.
  const waiting = greeting(port, 5000);
  await waitFor('the second client waiting for the slot', async () => {
    const st = (await (await fetch(`http://127.0.0.1:${admin}/api/status`, { headers: { authorization: 'Bearer test-token-1' } })).json()) as { pools: { waiting: number }[] };
    return st.pools[0].waiting === 1;
  }, 5000, 20);
  first.send('QUIT');
  assert.match(await waiting, /^220 mta-a\.test/);
  first.close();
});

test('SIGTERM stops accepting and lets an open session finish', async () => {
  const a = await startSink({ hostname: 'mta-a.test' });
  const { port, text } = await proxyConfig([a]);
  const lb = await startSmtplb(text.replace('log: { level: warn }', 'log: { level: info }\nshutdown_timeout: 10s'));
  const s = session(port);
  assert.match(await s.reply(), /^220/);
  assert.match(await s.send('EHLO client.test'), /^250/);
  lb.proc.kill('SIGTERM');
  await waitFor('draining', () => lb.output().includes('draining'), 5000);
  assert.match(await greeting(port, 2000), /^error ECONNREFUSED/);
  assert.match(await s.send('MAIL FROM:<x@client.test>'), /^250/);
  assert.match(await s.send('RCPT TO:<y@dest.test>'), /^250/);
  assert.match(await s.send('DATA'), /^354/);
  assert.match(await s.send('Subject: during drain\r\n\r\nbody\r\n.'), /^250/);
  assert.match(await s.send('QUIT'), /^221/);
  s.close();
  await waitFor('exit', () => lb.proc.exitCode !== null, 5000);
  assert.equal(lb.proc.exitCode, 0);
  assert.equal(a.count(), 1);
});
