// Operations: exact metrics after a known run, the delivery log (and its reopen on SIGUSR1),
// drain / enable through the API, the admin token, and the dashboard in headless Chromium (its
// 50 servers / 1,000 destinations run is in dashboard-charts.test.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, test } from 'node:test';
import { createRequire } from 'node:module';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { freePort, greeting, onStop, runCli, session, startSink, startSmtplb, stopAll, tmpDir, waitFor } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);

const require = createRequire(import.meta.url);
const parsePrometheusTextFormat = require('parse-prometheus-text-format') as (text: string) => { name: string; type: string; metrics: { labels?: Record<string, string>; value?: string; buckets?: Record<string, string>; count?: string }[] }[];

const base: Omit<SendOptions, 'server' | 'to'> = { from: 'app@client.test', headers: [], subject: 'ops', body: 'hello', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };
const TOKEN = 'test-token-1';

function value(families: ReturnType<typeof parsePrometheusTextFormat>, name: string, labels: Record<string, string>): number {
  const fam = families.find((f) => f.name === name);
  const m = fam?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  return m ? Number(m.value ?? m.count) : 0;
}

test('after a known run (20 delivered, 3 forced 4xx, 2 forced 5xx) /metrics has exactly those counts and the delivery log a line per attempt', async () => {
  const ok = await startSink();
  const soft = await startSink({ args: ['-r', 'RCPT'] }); // 450 4.3.0 to every RCPT
  const hard = await startSink({ args: ['-f', 'RCPT', '-B', '550 5.1.1 no such user'] });
  const port = await freePort();
  const ctPort = await freePort();
  const admin = await freePort();
  const dir = tmpDir('ops-');
  const logFile = path.join(dir, 'delivery.log');
  const lb = await startSmtplb(
    `hostname: gw.test
log: { level: info, format: json }
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
spool: ./spool
delivery_log: { file: ${logFile} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.1/32] }
  - { name: ct, listen: 127.0.0.1:${ctPort}, mode: smtp, relay_networks: [127.0.0.1/32], delivery: cutthrough }
pools:
  okpool: { health: { check: tcp, interval: 1s }, servers: [ { name: ok1, address: 127.0.0.1:${ok.port} } ] }
  softpool: { retries: 0, health: { check: tcp, interval: 1s }, servers: [ { name: soft1, address: 127.0.0.1:${soft.port} } ] }
  hardpool: { retries: 0, health: { check: tcp, interval: 1s }, servers: [ { name: hard1, address: 127.0.0.1:${hard.port} } ] }
routes:
  - { domains: [soft.test], pool: softpool }
  - { domains: [hard.test], pool: hardpool }
  - { pool: okpool }
queue: { retry: [1h], max_age: 5d }
`,
    { dir },
  );
  const server = `127.0.0.1:${port}`;
  const send = async (to: string, n: number) => {
    const r = await sendOne({ ...base, server, to: [to] }, n);
    assert.ok(r.ok, r.ok ? '' : r.error);
    return r.id;
  };
  for (let i = 0; i < 20; i++) await send(`u${i}@ok.test`, i);
  for (let i = 0; i < 3; i++) await send(`u${i}@soft.test`, i);
  for (let i = 0; i < 2; i++) await send(`u${i}@hard.test`, i);
  // The two 5xx produce two DSNs to app@client.test, delivered through okpool.
  await ok.settle(22, 20_000);
  const lines = () => fs.readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  await waitFor('a log line for every attempt and final outcome', () => lines().length >= 22 + 3 + 2 + 22 + 2, 10_000);
  const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  const fams = parsePrometheusTextFormat(text);
  assert.equal(value(fams, 'smtplb_deliveries_total', { pool: 'okpool', server: 'ok1', result: '2xx' }), 22);
  assert.equal(value(fams, 'smtplb_deliveries_total', { pool: 'softpool', server: 'soft1', result: '4xx' }), 3);
  assert.equal(value(fams, 'smtplb_deliveries_total', { pool: 'hardpool', server: 'hard1', result: '5xx' }), 2);
  assert.equal(value(fams, 'smtplb_deliveries_total', { pool: 'softpool', server: 'soft1', result: '2xx' }), 0);
  assert.equal(value(fams, 'smtplb_listener_messages_total', { listener: 'relay', code: '250' }), 25);
  assert.equal(value(fams, 'smtplb_recipients_final_total', { pool: 'okpool', outcome: 'delivered' }), 22);
  assert.equal(value(fams, 'smtplb_recipients_final_total', { pool: 'hardpool', outcome: 'bounced' }), 2);
  assert.equal(value(fams, 'smtplb_queue_recipients', { pool: 'softpool', destination: 'soft.test' }), 3);
  assert.ok(value(fams, 'smtplb_queue_oldest_seconds', { pool: 'softpool', destination: 'soft.test' }) >= 0);
  // (this parser drops a histogram's labels, so its count is read from the text itself)
  assert.ok(fams.some((f) => f.name === 'smtplb_delivery_seconds' && f.type === 'HISTOGRAM'));
  assert.match(text, /^smtplb_delivery_seconds_count\{pool="okpool"\} 22$/m, 'the latency histogram counted every okpool attempt');
  assert.match(text, /^smtplb_server_connect_seconds_count\{pool="okpool"\} [1-9]\d*$/m);
  assert.ok(value(fams, 'smtplb_delivery_bytes_total', { pool: 'okpool', server: 'ok1' }) > 22 * 100);
  // Delivery log: one line per attempt and per final outcome, with every field.
  const all = lines();
  const attempts = all.filter((l) => l.event === 'attempt');
  assert.equal(attempts.length, 27, 'an attempt line for each of 22 + 3 + 2 attempts');
  for (const l of all) for (const k of ['time', 'event', 'queue_id', 'message_id', 'sender', 'recipient_domain', 'route', 'pool', 'server', 'code', 'enhanced_code', 'reply', 'queue_delay_ms', 'delivery_ms']) assert.ok(k in l, `field ${k} in ${JSON.stringify(l)}`);
  const soft1 = attempts.find((l) => l.pool === 'softpool')!;
  assert.equal(soft1.code, 450);
  assert.equal(soft1.enhanced_code, '4.3.0');
  assert.equal(soft1.recipient_domain, 'soft.test');
  assert.equal(soft1.route, 0);
  assert.equal(all.filter((l) => l.event === 'delivered').length, 22);
  assert.equal(all.filter((l) => l.event === 'bounced' && l.code === 550 && l.enhanced_code === '5.1.1').length, 2);
  // logrotate: move the file away, SIGUSR1, and new lines go to a new file at the same path.
  fs.renameSync(logFile, `${logFile}.1`);
  lb.proc.kill('SIGUSR1');
  await waitFor('reopened', () => fs.existsSync(logFile), 5000);
  await send('late@ok.test', 99);
  await waitFor('new lines in the new file', () => fs.readFileSync(logFile, 'utf8').includes('late@ok.test'), 10_000);
  assert.ok(!fs.readFileSync(`${logFile}.1`, 'utf8').includes('late@ok.test'));
  // Cut-through: its attempt and its delivery in the delivery log too, nothing per message in the process log.
  const ct = await sendOne({ ...base, server: `127.0.0.1:${ctPort}`, to: ['ct@ok.test'] }, 100);
  assert.ok(ct.ok, ct.ok ? '' : ct.error);
  const mine = () => lines().filter((l) => l.message_id === ct.id);
  await waitFor('the cut-through delivery in the log', () => mine().length >= 1, 10_000);
  // Delivered at its first attempt: one line, the delivery with that attempt's server, reply and time.
  assert.deepEqual(mine().map((l) => [l.event, l.pool, l.server, l.code, l.recipient, l.attempt]), [['delivered', 'okpool', 'ok1', 250, 'ct@ok.test', 1]]);
  assert.equal(typeof mine()[0].delivery_ms, 'number');
  assert.doesNotMatch(lb.output(), /cut-through attempt/);
});

test('drain through the API: no new connections, the established one finishes; enable brings it back; both show in status and metrics', async () => {
  const a = await startSink({ hostname: 'a.test' });
  const b = await startSink({ hostname: 'b.test' });
  const port = await freePort();
  const admin = await freePort();
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: l4, listen: 127.0.0.1:${port}, mode: tcp, pool: relays }
pools:
  relays:
    balance: first
    health: { check: smtp, interval: 500ms }
    servers:
      - { name: a, address: 127.0.0.1:${a.port} }
      - { name: b, address: 127.0.0.1:${b.port} }
`);
  const held = session(port);
  assert.match(await held.reply(), /^220 a\.test/);
  const post = (p: string) => fetch(`http://127.0.0.1:${admin}${p}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal((await post('/api/pools/relays/servers/a/drain')).status, 200);
  assert.match(await greeting(port), /^220 b\.test/, 'new connections avoid the drained server');
  // The session established before the drain still completes a message.
  await held.send('EHLO c.test');
  await held.send('MAIL FROM:<x@c.test>');
  await held.send('RCPT TO:<y@d.test>');
  await held.send('DATA');
  assert.match(await held.send('Subject: drained\r\n\r\nstill here\r\n.'), /^250/);
  held.close();
  await a.settle(1);
  const status = JSON.parse(runCli(['status', '--json', '-c', lb.file]).stdout) as { pools: { servers: { name: string; admin: string }[] }[] };
  assert.equal(status.pools[0].servers.find((s) => s.name === 'a')?.admin, 'drain');
  assert.match(runCli(['status', '-c', lb.file]).stdout, /a\s+127\.0\.0\.1:\d+\s+DRAIN/);
  let metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  assert.match(metrics, /smtplb_server_admin_state\{pool="relays",server="a"\} 1/);
  assert.equal((await post('/api/pools/relays/servers/a/enable')).status, 200);
  assert.match(await greeting(port), /^220 a\.test/, 'enabled again: new connections go to it');
  metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  assert.match(metrics, /smtplb_server_admin_state\{pool="relays",server="a"\} 0/);
  assert.match(runCli(['status', '-c', lb.file]).stdout, /a\s+127\.0\.0\.1:\d+\s+UP/);
});

test('the admin API wants its token (401 without), /metrics and /healthz do not; non-loopback binds need a token', async () => {
  const sink = await startSink();
  const port = await freePort();
  const admin = await freePort();
  await startSmtplb(`hostname: gw.test
log: { level: warn }
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.1/32] }
pools:
  p: { servers: [ { name: s, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: p } ]
`);
  const url = (p: string) => `http://127.0.0.1:${admin}${p}`;
  for (const [method, p] of [['GET', '/api/status'], ['GET', '/api/queue'], ['GET', '/api/throttles'], ['GET', '/api/suspensions'], ['POST', '/api/pools/p/servers/s/drain'], ['POST', '/api/suspensions'], ['POST', '/api/queue/flush']] as const) {
    assert.equal((await fetch(url(p), { method })).status, 401, `${method} ${p} without a token`);
    assert.equal((await fetch(url(p), { method, headers: { authorization: 'Bearer wrong-token-9' } })).status, 401, `${method} ${p} with a wrong token`);
  }
  assert.equal((await fetch(url('/api/status'), { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
  assert.equal((await fetch(url('/metrics'))).status, 200);
  assert.equal((await fetch(url('/healthz'))).status, 200);
  assert.equal((await fetch(url('/readyz'))).status, 200);
  const dir = tmpDir('admin-bind-');
  const file = path.join(dir, 'smtplb.yaml');
  fs.writeFileSync(file, `listeners:\n  - { name: l, listen: 127.0.0.1:${await freePort()}, mode: tcp, pool: p }\npools:\n  p: { servers: [ { address: 127.0.0.1:2 } ] }\nadmin: { listen: 0.0.0.0:${await freePort()} }\n`);
  const r = runCli(['check', '-c', file]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /smtplb\.yaml:5:\d+: admin\.listen: the admin API binds beyond loopback only with a token/);
});

const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));

/** Headless Chromium with one page, closed by the test's stop hooks. */
async function browserPage() {
  const { chromium: pw } = await import('playwright-core');
  const browser = await pw.launch({ executablePath: chromium, args: ['--no-sandbox', '--disable-gpu'] });
  onStop(() => browser.close());
  return browser.newPage({ viewport: { width: 1280, height: 800 } });
}

test('dashboard in headless Chromium: a killed upstream shows DOWN, the drain button drains, a screenshot is saved', { skip: chromium ? false : 'chromium is not installed (scripts/install-peers.sh installs it)' }, async () => {
  const a = await startSink();
  const b = await startSink();
  const port = await freePort();
  const admin = await freePort();
  await startSmtplb(`hostname: gw.test
log: { level: warn }
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: l4, listen: 127.0.0.1:${port}, mode: tcp, pool: relays }
pools:
  relays:
    health: { check: smtp, interval: 300ms, timeout: 500ms, rise: 1, fall: 1 }
    servers:
      - { name: mta-a, address: 127.0.0.1:${a.port} }
      - { name: mta-b, address: 127.0.0.1:${b.port} }
`);
  const page = await browserPage();
  // Without a token the page asks for one.
  await page.goto(`http://127.0.0.1:${admin}/dashboard`);
  await page.locator('#token').fill(TOKEN);
  await page.locator('#go').click();
  const state = (name: string) => page.locator(`tr[data-server="relays/${name}"] [data-testid=state]`);
  await page.waitForFunction(() => document.querySelectorAll('tr[data-server]').length === 2);
  assert.equal(await state('mta-a').textContent(), 'UP');
  assert.equal(await state('mta-b').textContent(), 'UP');
  await a.kill();
  await page.waitForFunction(() => document.querySelector('tr[data-server="relays/mta-a"] [data-testid=state]')?.textContent === 'DOWN', undefined, { timeout: 10_000 });
  await page.locator('tr[data-server="relays/mta-b"] button[data-act=drain]').click();
  await page.waitForFunction(() => document.querySelector('tr[data-server="relays/mta-b"] [data-testid=state]')?.textContent === 'DRAIN', undefined, { timeout: 5000 });
  assert.match((await page.locator('#history').textContent()) ?? '', /relays\/mta-a.*down/);
  const out = path.resolve('test-artifacts');
  fs.mkdirSync(out, { recursive: true });
  await page.screenshot({ path: path.join(out, 'dashboard.png'), fullPage: true });
  assert.ok(fs.statSync(path.join(out, 'dashboard.png')).size > 10_000);
  // The button state change is the server's, not just the page's.
  const st = (await (await fetch(`http://127.0.0.1:${admin}/api/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { pools: { servers: { name: string; admin: string }[] }[] };
  assert.equal(st.pools[0].servers.find((s) => s.name === 'mta-b')?.admin, 'drain');
});
