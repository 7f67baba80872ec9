// A spool whose filesystem fills (a small tmpfs the test mounts): senders get 452 4.3.1,
// nothing acknowledged is lost, outcomes and bounces are still recorded (the spool's reserve),
// and mail flows again once space is freed. Needs root for the mount, as CI and the dev
// machines have; skipped otherwise.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, test } from 'node:test';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { queueIdle } from './helpers/admin.js';
import { freePort, onStop, runCli, startSink, startSmtplb, stopAll, tmpDir, waitFor } from './helpers/peers.js';
import { startSmtplbSink } from './helpers/sink.js';

after(stopAll);
afterEach(stopAll);

const TOKEN = 'test-token-1';
const root = process.getuid?.() === 0;

test('the spool disk fills: 452 4.3.1, nothing acknowledged lost, each recipient delivered or bounced once, mail flows again', { skip: root ? false : 'needs root to mount a tmpfs' }, async () => {
  const dir = tmpDir();
  const spool = path.join(dir, 'spool');
  fs.mkdirSync(spool);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=10m', 'tmpfs', spool]);
  onStop(() => void execFileSync('umount', ['-l', spool]));
  const [port, admin] = [await freePort(), await freePort()];
  const mta = await startSmtplbSink({ rules: ['rcpt=bad*@*,reply=550 5.1.1 User unknown'] });
  const bounces = await startSink();
  const lb = await startSmtplb(
    `hostname: gw.test
log: { level: warn }
spool: ${spool}
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: m1, address: 127.0.0.1:${mta.port} } ] }
  back: { servers: [ { name: b1, address: 127.0.0.1:${bounces.port} } ] }
routes:
  - { domains: [sender.test], pool: back }
  - { pool: out }
queue: { retry: [1s], max_age: 1h, min_free: 0 }
`,
    { dir },
  );
  assert.equal(runCli(['suspend', 'full.test', '--pool', 'out', '--for', '1h', '--reason', 'fill the disk', '-c', lb.file]).code, 0);
  const base: SendOptions = { server: `127.0.0.1:${port}`, from: 'app@sender.test', to: [], headers: [], subject: 'fill', body: 'x'.repeat(300 * 1024), count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };
  let accepted = 0;
  let refused = '';
  for (let i = 0; i < 40 && !refused; i++) {
    const r = await sendOne({ ...base, to: [`good${i}@full.test`, `bad${i}@full.test`] }, i);
    if (r.ok) accepted++;
    else refused = String(r.error);
  }
  assert.match(refused, /452 4\.3\.1/, 'refused with 452 4.3.1 once the disk is full');
  assert.ok(accepted >= 5, `${accepted} accepted before the disk filled`);
  assert.equal(lb.proc.exitCode, null, 'still running');

  // Fill what is left to the last byte, as another process on the same disk would.
  const filler = path.join(spool, 'filler');
  const fd = fs.openSync(filler, 'w');
  try {
    for (let i = 0; i < 1000; i++) fs.writeSync(fd, Buffer.alloc(16 * 1024));
  } catch (e) {
    assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
  } finally {
    fs.closeSync(fd);
  }
  // Let the held mail go: outcomes and bounces must be recorded on a full disk.
  const sus = (await (await fetch(`http://127.0.0.1:${admin}/api/suspensions`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { suspensions: { id: string }[] };
  const id = sus.suspensions[0].id;
  assert.equal(runCli(['unsuspend', id, '-c', lb.file]).code, 0);
  await waitFor('every good recipient delivered', async () => Object.keys((await mta.stats()).recipients).length >= accepted, 30_000, 200);
  // Room again: the owed bounces go out, new mail is taken.
  fs.rmSync(filler);
  await bounces.settle(accepted, 30_000);
  // As a client retries after a 452: taken again once the spool has its reserve back.
  await waitFor('mail taken again', async () => (await sendOne({ ...base, to: ['late@full.test'] }, 99)).ok, 10_000, 500);
  await waitFor('the late one delivered', async () => (await mta.stats()).recipients['late@full.test'] === 1, 10_000);
  // Out of the queue (bounces included) and nothing in flight: no second copy can still come.
  await queueIdle(admin, 15_000, TOKEN);
  const st = await mta.stats();
  for (let i = 0; i < accepted; i++) assert.equal(st.recipients[`good${i}@full.test`], 1, `good${i}: ${JSON.stringify(st.recipients)}`);
  assert.equal(bounces.count(), accepted, 'one bounce per accepted message');
  console.log(`spool full: ${accepted} accepted before 452; ${/released the reserve/.test(lb.output()) ? 'the reserve was used' : 'the reserve was not needed'}; ${/DSN owed/.test(lb.output()) ? 'some DSNs waited for room' : 'no DSN waited'}`);
});
