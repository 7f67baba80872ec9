// A spool whose filesystem stops taking writes. Two real faults on an ext4 image the test
// loop-mounts (needs root, as CI and the dev machines have; skipped otherwise):
// - the message directory remounted read-only (a bind mount, so it can come back in place):
//   new mail gets 451 4.3.0, status and metrics say why, and mail is taken again by itself
//   once the directory is writable;
// - the whole filesystem forced read-only by an error (ext4's errors=remount-ro, triggered
//   through sysfs): the process keeps running and answering 451, nothing acknowledged is lost,
//   SIGTERM still ends it, and after the operator's fsck and remount every message that was
//   acknowledged is delivered exactly once.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { api, metric, queueIdle, TOKEN } from './helpers/admin.js';
import { after, test } from 'node:test';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { freePort, onStop, startSmtplb, stopAll, tmpDir, waitFor } from './helpers/peers.js';
import { startSmtplbSink } from './helpers/sink.js';

after(stopAll);

const root = process.getuid?.() === 0;
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: 'pipe' }).toString();



test('the spool filesystem turns read-only: 451 4.3.0, status and metric say so, nothing acknowledged lost; mail is taken again when it can write', { skip: root ? false : 'needs root to loop-mount a filesystem' }, async () => {
  const dir = tmpDir();
  const image = path.join(dir, 'spool.img');
  const spool = path.join(dir, 'spool');
  fs.mkdirSync(spool);
  sh('truncate', ['-s', '64M', image]);
  sh('mkfs.ext4', ['-q', '-F', image]);
  const mount = () => sh('mount', ['-o', 'loop,errors=remount-ro', image, spool]);
  mount();
  onStop(() => void execFileSync('umount', ['-l', spool], { stdio: 'ignore' }));
  const messages = path.join(spool, 'messages');
  fs.mkdirSync(messages);

  const [port, admin, downPort] = [await freePort(), await freePort(), await freePort()];
  const good = await startSmtplbSink();
  const config = `hostname: gw.test
log: { level: warn }
spool: ${spool}
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: m1, address: 127.0.0.1:${good.port} } ] }
  later: { servers: [ { name: d1, address: 127.0.0.1:${downPort} } ] }
routes:
  - { domains: [later.test], pool: later }
  - { pool: out }
queue: { retry: [1s], max_age: 1h, min_free: 0 }
`;
  let lb = await startSmtplb(config, { dir });
  const base: SendOptions = { server: `127.0.0.1:${port}`, from: 'app@sender.test', to: [], headers: [], subject: 'ro', body: 'hello\n', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };
  const send = (to: string) => sendOne({ ...base, to: [to] }, 0);
  const acknowledged: string[] = [];
  const accept = async (to: string) => {
    const r = await send(to);
    if (!r.ok) assert.fail(`${to}: ${r.error}`);
    acknowledged.push(to);
  };

  // Mail for a destination whose server is down waits in the queue, retried every second.
  for (let i = 0; i < 5; i++) await accept(`wait${i}@later.test`);
  await accept('before@out.test');
  await waitFor('delivered before the fault', async () => (await good.stats()).recipients['before@out.test'] === 1);

  // 1. The message directory read-only, in place.
  sh('mount', ['--bind', messages, messages]);
  sh('mount', ['-o', 'remount,bind,ro', messages]);
  // The spool looks at its message directory at most every 100 ms.
  await new Promise((r) => setTimeout(r, 150));
  const r1 = await send('during1@out.test');
  assert.ok(!r1.ok);
  assert.match(String((r1 as { error?: unknown }).error), /451 4\.3\.0/, 'refused as a temporary failure');
  const r2 = await send('during2@out.test');
  assert.match(String((r2 as { error?: unknown }).error), /451 4\.3\.0/, 'refused at MAIL FROM while the spool cannot write');
  const st = await (await api<{ spool: { writable: boolean; error: string | null } }>(admin, '/api/status')).spool;
  assert.equal(await metric(admin, 'smtplb_spool_writable'), 0);
  assert.equal(st.writable, false);
  assert.match(String(st.error), /EROFS/);
  assert.equal(lb.proc.exitCode, null, 'still running');
  sh('mount', ['-o', 'remount,bind,rw', messages]);
  // As a client retries after a 451: taken again once the probe finds the spool writable.
  await waitFor('mail taken again', async () => (await send('after@out.test')).ok, 10_000, 300);
  acknowledged.push('after@out.test');
  assert.equal(await metric(admin, 'smtplb_spool_writable'), 1);
  sh('umount', ['-l', messages]);

  // 2. The whole filesystem forced read-only by an error, as ext4 does on a failing disk.
  const dev = path.basename(sh('findmnt', ['-no', 'SOURCE', spool]).trim());
  fs.writeFileSync(`/sys/fs/ext4/${dev}/trigger_fs_error`, 'smtplb test');
  const r3 = await send('fsro@out.test');
  assert.match(String((r3 as { error?: unknown }).error), /451 4\.3\.0/);
  await waitFor('the metric says the spool cannot write', async () => (await metric(admin, 'smtplb_spool_writable')) === 0);
  // The queue manager keeps trying the waiting mail's server only once the spool can write.
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(lb.proc.exitCode, null, 'still running on a read-only spool');
  assert.match(String(((await send("fsro2@out.test")) as { error?: unknown }).error), /451 4\.3\.0/);
  // Said once per fault, not once per failed write.
  assert.equal(lb.output().match(/spool cannot write \(read-only/g)?.length, 2, lb.output());
  const t0 = Date.now();
  await lb.stop();
  assert.ok(Date.now() - t0 < 15_000, 'SIGTERM ends it on a read-only spool');

  // The operator's fix: check the filesystem, mount it again, start.
  sh('umount', [spool]);
  try {
    sh('e2fsck', ['-fy', image]);
  } catch (e) {
    // 1: errors corrected; anything above 2 is a real problem.
    if (((e as { status?: number }).status ?? 8) > 2) throw e;
  }
  mount();
  const waiting = await startSmtplbSink({ port: downPort });
  lb = await startSmtplb(config, { dir });
  await accept('restart@out.test');
  await waitFor('every acknowledged message delivered', async () => {
    const all = { ...(await good.stats()).recipients, ...(await waiting.stats()).recipients };
    return acknowledged.every((a) => all[a] >= 1);
  }, 20_000, 200);
  // Out of the queue and nothing in flight: no second copy can still come.
  await queueIdle(admin);
  const all = { ...(await good.stats()).recipients, ...(await waiting.stats()).recipients };
  for (const a of acknowledged) assert.equal(all[a], 1, `${a} delivered once: ${JSON.stringify(all)}`);
  for (const refused of ['during1@out.test', 'during2@out.test', 'fsro@out.test', 'fsro2@out.test']) assert.equal(all[refused], undefined, `${refused} was refused, never delivered`);
  await lb.stop();
});
