// Limits per MX site (issue 25): two recipient domains whose MX records name one host, on one
// site; `concurrency: 2` on the site holds across both domains, counted at the receiving side
// (its established connections, polled); per-domain keys let each domain have its own 2.
// Real peers: a loopback DNS server, `smtplb sink` as the MX, smtp-source as the client.
import { test, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { BIN, freePort, run, smtpSource, startSmtplb, stopAll, waitFor } from './helpers/peers.js';
import { startDns, type TestDns } from './helpers/dns.js';
import { startSmtplbSink, type SmtplbSink } from './helpers/sink.js';
import { TOKEN } from './helpers/admin.js';

after(stopAll);
afterEach(stopAll);

/** The CLI without blocking this process (the DNS server the relay asks lives here). */
const cli = (args: string[]) => run(process.execPath, [BIN, ...args], 30_000);

function connectionsTo(port: number): number {
  const r = spawnSync('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((l) => l.trim()).length;
}

const zone = () => [
  { type: 'MX' as const, name: 'a.test', exchange: 'mx.shared.test', priority: 10 },
  { type: 'MX' as const, name: 'b.test', exchange: 'mx.shared.test', priority: 10 },
  { type: 'A' as const, name: 'mx.shared.test', address: '127.0.0.1' },
];

function config(dns: TestDns, sink: SmtplbSink, lport: number, admin: number, shaping: string): string {
  return `hostname: gw.test
log: { level: warn, format: json }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${lport}, mode: smtp, relay_networks: [127.0.0.1/32] }
pools:
  direct:
    kind: mx
    mx: { resolver: 127.0.0.1:${dns.port}, port: ${sink.port} }
    tls: none
    sources: [{ name: ip1, address: 127.0.0.1 }]
routes:
  - { pool: direct }
sites: { shared: [mx.shared.test] }
${shaping}
queue: { retry: [1s], max_age: 1h }
`;
}

/** 100 messages to each domain; the most connections the sink held at once while they drained. */
async function drain(sink: SmtplbSink, lport: number): Promise<number> {
  let most = 0;
  let polling = true;
  const poll = (async () => {
    while (polling) {
      most = Math.max(most, connectionsTo(sink.port));
      await new Promise((r) => setTimeout(r, 15));
    }
  })();
  const sent = await Promise.all(['u@a.test', 'u@b.test'].map((to) => smtpSource(lport, 100, 5, ['-t', to])));
  for (const s of sent) assert.equal(s.code, 0, s.stderr);
  await waitFor('200 messages at the sink', async () => (await sink.stats({ recipients: false })).messages >= 200, 60_000, 100);
  polling = false;
  await poll;
  return most;
}

test('concurrency 2 on an MX site holds across its two domains (the sink never sees more than 2 connections); per-domain keys give each its own 2 (4); route explain and queue show name the site', async () => {
  const dns = await startDns(zone());
  const sink = await startSmtplbSink({ rules: ['data_delay=60ms'] });

  // Per site: one limit for both domains.
  let lport = await freePort();
  let admin = await freePort();
  const lb = await startSmtplb(config(dns, sink, lport, admin, `shaping:\n  site:shared: { concurrency: 2 }`), { waitPorts: [lport, admin] });
  const siteMost = await drain(sink, lport);
  assert.ok(siteMost <= 2, `the sink saw ${siteMost} connections at once`);
  assert.ok(siteMost >= 2, 'the limit is reached (the test would not show a cap otherwise)');

  const explain = JSON.parse((await cli(['route', 'explain', 'x@b.test', '-c', lb.file, '--json'])).stdout) as { pools: { site: string; shaping_key: string }[] };
  assert.equal(explain.pools[0].site, 'shared');
  assert.equal(explain.pools[0].shaping_key, 'site:shared');
  const text = (await cli(['route', 'explain', 'x@b.test', '-c', lb.file])).stdout;
  assert.match(text, /MX site shared: limits counted under site:shared/);

  // A suspension may name the site: mail to both domains waits, and queue show names the site.
  const susp = await cli(['suspend', 'site:shared', '--pool', 'direct', '--for', '1h', '--reason', 'site test', '-c', lb.file]);
  assert.equal(susp.code, 0, susp.stderr);
  const one = await smtpSource(lport, 1, 1, ['-t', 'v@a.test']);
  assert.equal(one.code, 0, one.stderr);
  const queued = await waitFor('the message queued', async () => {
    const l = JSON.parse((await cli(['queue', 'list', '--json', '-c', lb.file])).stdout) as { messages: { id: string }[] };
    return l.messages[0];
  });
  const show = await waitFor('its site known', async () => {
    const s = JSON.parse((await cli(['queue', 'show', queued.id, '--json', '-c', lb.file])).stdout) as { recipients: { site?: string; waiting_for: string | null }[] };
    return s.recipients[0].site && s.recipients[0].waiting_for?.includes('site:shared') ? s : undefined;
  });
  assert.equal(show.recipients[0].site, 'shared');
  assert.match((await cli(['queue', 'show', queued.id, '-c', lb.file])).stdout, /site shared/);
  await lb.stop();

  // Per domain: each domain its own 2.
  await sink.reset();
  lport = await freePort();
  admin = await freePort();
  await startSmtplb(config(dns, sink, lport, admin, `shaping:\n  a.test: { concurrency: 2 }\n  b.test: { concurrency: 2 }`), { waitPorts: [lport, admin] });
  const domainMost = await drain(sink, lport);
  assert.equal(domainMost, 4, 'per-domain keys: 2 for each domain at once');
});

test('two domains on one MX site with different MX hosts: each domain\'s mail reaches only its own MX host (a connection is shared across the site only to a host both domains name)', async () => {
  // Two MX hosts of one provider, on two loopback addresses at the same port (the pool's mx.port).
  const port = await freePort();
  const mxA = await startSmtplbSink({ host: '127.0.0.2', port });
  const mxB = await startSmtplbSink({ host: '127.0.0.3', port });
  const dns = await startDns([
    { type: 'MX' as const, name: 'a.test', exchange: 'mx-a.prov.test', priority: 10 },
    { type: 'MX' as const, name: 'b.test', exchange: 'mx-b.prov.test', priority: 10 },
    { type: 'A' as const, name: 'mx-a.prov.test', address: '127.0.0.2' },
    { type: 'A' as const, name: 'mx-b.prov.test', address: '127.0.0.3' },
  ]);
  const lport = await freePort();
  const admin = await freePort();
  const cfg = config(dns, mxA, lport, admin, `shaping:\n  site:prov: { concurrency: 2 }`).replace('sites: { shared: [mx.shared.test] }', "sites: { prov: ['*.prov.test'] }");
  await startSmtplb(cfg, { waitPorts: [lport, admin] });
  const sent = await Promise.all(['u@a.test', 'u@b.test'].map((to) => smtpSource(lport, 30, 2, ['-t', to])));
  for (const s of sent) assert.equal(s.code, 0, s.stderr);
  await waitFor('60 messages at the two MX hosts', async () => (await mxA.stats({ recipients: false })).messages + (await mxB.stats({ recipients: false })).messages >= 60, 60_000, 100);
  const [a, b] = [await mxA.stats(), await mxB.stats()];
  assert.deepEqual(Object.keys(a.recipients), ['u@a.test'], `a.test's MX host got ${JSON.stringify(a.recipients)}`);
  assert.deepEqual(Object.keys(b.recipients), ['u@b.test'], `b.test's MX host got ${JSON.stringify(b.recipients)}`);
  assert.equal(a.recipients['u@a.test'] + b.recipients['u@b.test'], 60);
});
