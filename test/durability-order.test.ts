// Proof of the durability order, not only of the kill: smtplb runs under strace (every thread,
// since the fsyncs run on libuv's thread pool), and for each message the trace must show the
// message file's fdatasync, its directory's fsync and the index WAL's fdatasync completing
// before the "250 … queued as ID" reply is written to the client. A kill -9 test cannot tell
// a missing fsync from a present one (the page cache survives a process kill); this can.
// Only messages past INLINE_MAX have a file: small ones keep their body in the index, and
// test/spool-blob.test.ts proves the same order for them (body written to the WAL, WAL synced,
// then 250).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, test } from 'node:test';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { INLINE_MAX } from '../src/spool/spool.js';
import { startUnderStrace } from './helpers/strace.js';
import { freePort, haveCommand, startSink, stopAll, tmpDir } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);

test('under strace: the message file, its directory and the index are synced before each 250', { skip: haveCommand('strace') ? false : 'strace is not installed' }, async () => {
  const dir = tmpDir();
  const [port, hold] = [await freePort(), await freePort()];
  const sink = await startSink({ port: hold });
  await sink.stop(); // an upstream that is down: mail stays queued, only acceptance is traced
  const file = path.join(dir, 'smtplb.yaml');
  fs.writeFileSync(file, `hostname: gw.test
log: { level: warn }
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${hold} } ] }
routes: [ { pool: out } ]
queue: { retry: [1h], max_age: 2h, min_free: 0 }
`);
  const traced = await startUnderStrace(file, port, { dir, calls: 'openat,fsync,fdatasync,write,writev,close', strsize: 120 });
  const base: SendOptions = { server: `127.0.0.1:${port}`, from: 'a@client.test', to: [], headers: [], subject: 'durable', body: 'x'.repeat(INLINE_MAX + 1024), count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) {
    const r = await sendOne({ ...base, to: [`u${i}@dest.test`] }, i);
    assert.ok(r.ok, r.ok ? '' : r.error);
    ids.push(/queued as (\w+)/.exec(r.response)![1]);
  }
  const calls = await traced.finish();
  const walOpen = calls.find((c) => c.name === 'openat' && /queue\.db-wal"/.test(c.args) && /O_RDONLY/.test(c.args) && Number(c.ret) >= 0);
  assert.ok(walOpen, 'the WAL is opened for syncing');
  const walFd = walOpen!.ret;
  for (const id of ids) {
    const reply = calls.find((c) => (c.name === 'write' || c.name === 'writev') && c.args.includes(`queued as ${id}`));
    assert.ok(reply, `the 250 for ${id} is in the trace`);
    const created = calls.find((c) => c.name === 'openat' && c.args.includes(`/${id}"`) && /O_CREAT/.test(c.args));
    assert.ok(created, `${id}: file created`);
    // The file may be closed (for the signer to read) and opened again to be synced: any descriptor of it counts.
    const opens = calls.filter((c) => c.name === 'openat' && c.args.includes(`/${id}"`) && Number(c.ret) >= 0 && c.at < reply!.at);
    const fileSync = opens
      .map((o) => calls.find((c) => c.at > o.at && c.name === 'fdatasync' && c.args.split(/[^\d]/)[0] === o.ret && c.ret === '0'))
      .find((c) => c && c.at < reply!.at);
    assert.ok(fileSync && fileSync.at < reply!.at, `${id}: the message file is fdatasync'd before the 250`);
    const sub = `/messages/${id.slice(-2)}"`;
    const dirOpens = calls.filter((c) => c.name === 'openat' && c.args.includes(sub) && c.at > created!.at && c.at < reply!.at);
    const dirSync = dirOpens.map((o) => calls.find((c) => c.at > o.at && c.at < reply!.at && c.name === 'fsync' && c.args.split(/[^\d]/)[0] === o.ret && c.ret === '0')).find(Boolean);
    assert.ok(dirSync, `${id}: its directory is fsync'd after the file was made and before the 250`);
    const walSync = calls.find((c) => c.at > fileSync!.at && c.at < reply!.at && c.name === 'fdatasync' && c.args.split(/[^\d]/)[0] === walFd && c.ret === '0');
    assert.ok(walSync, `${id}: the index (WAL) is fdatasync'd after the file and before the 250`);
  }
});
