// The spool's commit contract, on a real spool in a temporary directory (no peers: these are
// promises of the Spool itself, checked where they are kept):
// - new mail and every delivery outcome resolve only after the WAL is fdatasync'd; a message
//   that leaves the queue takes its rows and its file (if it has one) with it;
// - the recently queued messages kept in memory for delivery stay within HOT_MAX bytes, and
//   the ones past it are read back from the index, intact.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { test } from 'node:test';
import { HOT_MAX, INLINE_MAX, Spool, type RecipientRow } from '../../src/spool/spool.js';
import { tmpDir } from '../helpers/peers.js';
import { put, read } from '../helpers/spool.js';

/** Count the spool's WAL syncs from now on (the handle it keeps for them). */
function countSyncs(spool: Spool): { n: number } {
  const wal = (spool as unknown as { commits: { wal: FileHandle } }).commits.wal; // group-commit.ts
  assert.ok(wal, 'the spool has synced its WAL once (new mail)');
  const count = { n: 0 };
  const datasync = wal.datasync.bind(wal);
  wal.datasync = () => {
    count.n++;
    return datasync();
  };
  return count;
}

const delivered = (row: RecipientRow): RecipientRow => ({ ...row, state: 'delivered', attempts: 1, last_code: 250, last_reply: '250 ok', last_server: 'up', updated: Date.now(), wait: null });

test('new mail and every delivery outcome are synced before they resolve; a message that leaves the queue leaves no row and no file', async () => {
  const spool = new Spool(tmpDir('spool-commit-'));
  try {
    const first = await put(spool, 'a@x.test', Buffer.from('one\r\n'));
    const syncs = countSyncs(spool);
    const second = await put(spool, 'b@x.test', Buffer.from('two\r\n'));
    assert.equal(syncs.n, 1, 'new mail: its commit synced before commitIncoming resolved');

    // A deferral (the message stays): synced, as an outcome left in the page cache is lost when
    // the kernel forces the filesystem read-only (and the message delivered again).
    const [row] = spool.recipients(first);
    await spool.settle(first, [{ ...row, attempts: 1, next_at: Date.now() + 60_000, last_code: 451, last_reply: '451 later', updated: Date.now() }], []);
    assert.equal(syncs.n, 2, 'a deferral is synced before it resolves');
    assert.equal(spool.recipients(first)[0].last_code, 451);

    // Delivered, in the index: the message goes with its rows, synced.
    await spool.settle(second, [delivered(spool.recipients(second)[0])], []);
    assert.equal(syncs.n, 3, 'a delivery is synced before it resolves');
    assert.equal(spool.message(second), undefined, 'removed');
    assert.deepEqual(spool.recipients(second), []);

    // Delivered, with its own file: synced, and the file gone after.
    const large = await put(spool, 'c@x.test', Buffer.alloc(INLINE_MAX + 1000, 'L'));
    const file = spool.message(large)!.file;
    assert.ok(file && fs.existsSync(file), 'a large message has its file');
    await spool.settle(large, [delivered(spool.recipients(large)[0])], []);
    assert.equal(syncs.n, 5, 'its acceptance and its delivery each synced');
    assert.ok(!fs.existsSync(file), 'and the file unlinked');
    assert.equal(spool.message(large), undefined);
  } finally {
    spool.close();
  }
});

test(`messages kept in memory for delivery stay within HOT_MAX (${HOT_MAX / 2 ** 20} MiB); older ones are read back from the index, intact`, async () => {
  const spool = new Spool(tmpDir('spool-hot-'));
  try {
    const size = 200 * 1024;
    const n = Math.ceil((HOT_MAX * 1.25) / size);
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push(await put(spool, `r${i}@x.test`, Buffer.alloc(size, String.fromCharCode(65 + (i % 26)))));
    const hot = spool.bodies as unknown as { hot: Map<string, unknown>; hotBytes: number };
    assert.ok(hot.hotBytes <= HOT_MAX, `${hot.hotBytes} bytes kept`);
    assert.ok(!hot.hot.has(ids[0]) && hot.hot.has(ids[n - 1]), 'the oldest went first');
    for (const i of [0, n - 1]) {
      const body = read(spool.bodies.bodyFor(spool.message(ids[i])!));
      assert.ok(body.equals(Buffer.alloc(size, String.fromCharCode(65 + (i % 26)))), `message ${i} intact`);
    }
    // A message that leaves the queue leaves memory too.
    await spool.settle(ids[n - 1], [delivered(spool.recipients(ids[n - 1])[0])], []);
    assert.ok(!hot.hot.has(ids[n - 1]));
  } finally {
    spool.close();
  }
});
