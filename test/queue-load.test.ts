// The queue under load and failure, split from queue-manager.test.ts so the two halves run side
// by side in the suite's lanes: outcomes settled once while the spool is short of space, the
// final dot's own timeout, and 200 large messages in at once within a memory bound. Real peers:
// smtp-sink and `smtplb sink` upstreams, smtp-source and swaks clients, smtplb as a child process.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { api, queueIdle, reload, TOKEN } from './helpers/admin.js';
import type { GatewayStatus, RelayStatus } from '../src/admin/api-types.js';
import { after, afterEach, test } from 'node:test';
import { freePort, runCli, smtpSource, startSink, startSmtplb, stopAll, swaks, waitFor } from './helpers/peers.js';
import { startSmtplbSink } from './helpers/sink.js';

after(stopAll);
afterEach(stopAll);

/** `/api/status` with the relay's part (src/admin/api-types.ts, the API's contract). */
type QueueStatus = GatewayStatus & RelayStatus;

test('mixed outcomes (250 / 550 / 451) with the spool below min_free while bounces are written: each accepted recipient gets one copy over ten retries of the 451 recipients, one bounce per message names its failed recipient', async () => {
  const [port, admin] = [await freePort(), await freePort()];
  const mta = await startSmtplbSink({ rules: ['rcpt=bad*@*,reply=550 5.1.1 User unknown', 'rcpt=later*@*,reply=451 4.2.0 Mailbox temporarily unavailable'] });
  const bounces = await startSink();
  const config = (minFree: string) => `hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: m1, address: 127.0.0.1:${mta.port} } ] }
  back: { servers: [ { name: b1, address: 127.0.0.1:${bounces.port} } ] }
routes:
  - { domains: [sender.test], pool: back }
  - { pool: out }
queue: { retry: [300ms], max_age: 1h, min_free: ${minFree} }
`;
  const lb = await startSmtplb(config('0'));
  // Held by a suspension while the disk "fills", so the deliveries and their bounces happen below min_free.
  assert.equal(runCli(['suspend', 'mixed.test', '--pool', 'out', '--for', '1h', '--reason', 'hold for the test', '-c', lb.file]).code, 0);
  for (let i = 0; i < 3; i++) {
    const r = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@sender.test', '--to', `good${i}@mixed.test,bad${i}@mixed.test,later${i}@mixed.test`, '--header', `Subject: mixed ${i}`]);
    assert.match(r.stdout, /<- {2}250 /);
  }
  fs.writeFileSync(lb.file, config('1000000GB'));
  assert.equal(await reload(lb, admin), 'applied');
  const refused = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@sender.test', '--to', 'new@mixed.test']);
  assert.match(refused.stdout, /<\*\* 452 4\.3\.1/, 'new mail is refused below min_free');
  const sus = (await api<{ suspensions: { id: string }[] }>(admin, '/api/suspensions')).suspensions;
  assert.equal(runCli(['unsuspend', sus[0].id, '-c', lb.file]).code, 0);
  const dsns = await bounces.settle(3, 15_000);
  // Ten retries or more of each 451 recipient, each retry a chance to send the others again
  // (waited for on a 300 ms schedule, where this once slept 30 s of 1 s retries). One round
  // more than the ten is waited for: a message's retries run one after another, so every
  // transaction of the first ten rounds has ended (and reached the counts) by then.
  await waitFor('ten retries of each 451 recipient, and one more round', async () => ((await mta.stats()).rcpt_replies['451'] ?? 0) >= 3 * 11, 30_000, 100);
  const st = await mta.stats();
  for (let i = 0; i < 3; i++) assert.equal(st.recipients[`good${i}@mixed.test`], 1, `good${i} got exactly one copy: ${JSON.stringify(st.recipients)}`);
  assert.ok((st.rcpt_replies['451'] ?? 0) >= 3 * 10, `the 451 recipients were retried: ${JSON.stringify(st.rcpt_replies)}`);
  assert.equal(bounces.count(), 3, 'one bounce per message');
  for (let i = 0; i < 3; i++) {
    const mine = dsns.filter((d) => new RegExp(`Subject: mixed ${i}`).test(d));
    assert.equal(mine.length, 1);
    assert.match(mine[0], new RegExp(`Final-Recipient: rfc822; ?bad${i}@mixed\\.test`, 'i'));
    assert.doesNotMatch(mine[0], /Final-Recipient: rfc822; ?(good|later)/i);
  }
  const q = JSON.parse(runCli(['queue', 'list', '--json', '-c', lb.file]).stdout) as { messages: { recipients: { address: string; state: string }[] }[] };
  assert.deepEqual(q.messages.flatMap((m) => m.recipients.filter((r) => r.state === 'queued').map((r) => r.address)).sort(), ['later0@mixed.test', 'later1@mixed.test', 'later2@mixed.test']);
});

test('the reply to the final dot has its own data_timeout: a slow answer within it is waited for; past it the outcome is unknown, deferred, never failed over at once, retried on another server, and delivered once', async () => {
  const [port, admin] = [await freePort(), await freePort()];
  const a = await startSmtplbSink({ rules: ['domain=slow3.test,data_delay=3s', 'domain=slow70.test,data_delay=70s'] });
  const b = await startSmtplbSink();
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out:
    balance: first
    timeout: 1s
    data_timeout: 5s
    servers: [ { name: a, address: 127.0.0.1:${a.port} }, { name: b, address: 127.0.0.1:${b.port} } ]
routes:
  - { pool: out }
queue: { retry: [3s], max_age: 1h }
`);
  // Slower than the command timeout, within data_timeout: waited for, delivered by a alone.
  assert.match((await swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@client.test', '--to', 'x@slow3.test'])).stdout, /<- {2}250 /);
  await waitFor('delivered by a', async () => (await a.stats()).messages === 1, 8_000);
  assert.equal((await b.stats()).messages, 0, 'b got nothing: the slow reply was not taken for a failure');

  // Past data_timeout: unknown outcome, deferred; b gets nothing at once.
  const t0 = Date.now();
  assert.match((await swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@client.test', '--to', 'y@slow70.test'])).stdout, /<- {2}250 /);
  const q = await waitFor('deferred as unknown', () => {
    const l = JSON.parse(runCli(['queue', 'list', '--domain', 'slow70.test', '--json', '-c', lb.file]).stdout) as { messages: { recipients: { attempts: number; last_reply: string | null }[] }[] };
    return l.messages[0]?.recipients[0].attempts === 1 ? l.messages[0].recipients[0] : null;
  }, 10_000, 100);
  const took = Date.now() - t0;
  assert.ok(took >= 4_500, `gave up after data_timeout, not before (${took} ms)`);
  assert.match(q.last_reply ?? '', /outcome is unknown/);
  assert.equal((await b.stats()).messages, 0, 'not sent to b at once');
  // The retry goes to b though a is up and first in line: a server that went silent on a
  // message is tried last for it. One copy in all (a never answered, so never took it).
  await waitFor('delivered by b on the retry', async () => (await b.stats()).messages === 1, 10_000);
  await a.stop();
  // Delivered, so out of the queue; with no delivery in flight no second copy can come.
  await queueIdle(admin);
  const st = await b.stats();
  assert.equal(st.messages, 1);
  assert.equal(st.recipients['y@slow70.test'], 1);
});

test('200 concurrent 10 MB messages in: written to the spool as they arrive, peak RSS stays under 400 MB', async () => {
  const [port, admin] = [await freePort(), await freePort()];
  const dest = await startSink();
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8], max_message_size: 20MB, max_connections_per_ip: 500 }
pools:
  out: { servers: [ { name: d1, address: 127.0.0.1:${dest.port} } ] }
routes:
  - { pool: out }
queue: { retry: [1h], max_age: 2h, min_free: 0 }
`);
  // Held, so what is measured is the intake alone.
  assert.equal(runCli(['suspend', 'big.test', '--pool', 'out', '--for', '1h', '--reason', 'memory test', '-c', lb.file]).code, 0);
  const load = await smtpSource(port, 200, 200, ['-l', String(10 * 1024 * 1024), '-t', 'x@big.test']);
  assert.equal(load.code, 0, load.stderr);
  const st = await api<QueueStatus>(admin, '/api/status');
  assert.equal(st.queue.counts.queued, 200, JSON.stringify(st.queue.counts));
  const status = fs.readFileSync(`/proc/${lb.proc.pid}/status`, 'utf8');
  const peakMb = Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024;
  console.log(`200 x 10 MB in: peak RSS ${peakMb.toFixed(0)} MB`);
  assert.ok(peakMb < 400, `peak RSS ${peakMb.toFixed(0)} MB`);
  assert.equal(dest.count(), 0);
});
