// A DKIM worker thread that dies while signing: the client gets 451 4.3.0 and nothing is
// acknowledged, queued or delivered; the worker is replaced and the next message is signed.
// The worker is ended by the documented test hook SMTPLB_TEST_DKIM_FAULT (src/signing/dkim-worker.ts):
// the worker that takes the next job while the named file exists removes it and exits.
// Real peers: swaks, smtp-sink.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, test } from 'node:test';
import { queueIdle } from './helpers/admin.js';
import { freePort, runCli, startSink, startSmtplb, stopAll, swaks, tmpDir } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);

test('a DKIM worker that exits mid-sign: 451 4.3.0, nothing queued or delivered; a new worker signs the next message', async () => {
  const dir = tmpDir();
  const fault = path.join(dir, 'dkim-fault');
  assert.equal(runCli(['dkim', 'keygen', '--domain', 'a.test', '--selector', 's1', '--out', path.join(dir, 'a.pem')]).code, 0);
  const [port, admin] = [await freePort(), await freePort()];
  const sink = await startSink();
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: test-token-1 }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: out } ]
dkim:
  threads: 1
  domains:
    a.test: { selector: s1, key_file: a.pem, algorithm: rsa-sha256 }
`, { dir, env: { SMTPLB_TEST_DKIM_FAULT: fault } });
  const send = (subject: string) => swaks(['--server', `127.0.0.1:${port}`, '--from', 'x@a.test', '--to', 'y@dest.test', '--header', `Subject: ${subject}`, '--header', 'From: news@a.test']);

  fs.writeFileSync(fault, 'exit');
  const lost = await send('lost with its worker');
  assert.match(lost.stdout, /<\*\* 451 4\.3\.0 /, lost.stdout);
  assert.equal(fs.existsSync(fault), false, 'the worker took the fault');
  const status = (await (await fetch(`http://127.0.0.1:${admin}/api/status`, { headers: { authorization: 'Bearer test-token-1' } })).json()) as { queue: { counts: Record<string, number> } };
  assert.equal(Object.values(status.queue.counts).reduce((a, b) => a + b, 0), 0, `nothing was queued: ${JSON.stringify(status.queue.counts)}`);

  const next = await send('signed by the new worker');
  assert.match(next.stdout, /<- {2}250 /, next.stdout);
  const [m] = await sink.settle(1);
  assert.match(m, /DKIM-Signature:[^]*?d=a\.test/);
  assert.match(m, /Subject: signed by the new worker/);
  // Out of the queue and nothing in flight: the refused one cannot still be on its way.
  await queueIdle(admin);
  assert.equal(sink.count(), 1, 'the message that got 451 was never delivered');
  assert.equal(lb.proc.exitCode, null);
});
