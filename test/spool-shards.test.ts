// Merging a shard of the spool into another (a start with fewer workers than the shards on
// disk), on real spools with real files: every message arrives once with its body, small (in
// the index) or large (its own file); a merge run again over a shard that was merged but not
// removed (a crash between the two) adds nothing; a message whose id happens to exist in the
// receiving shard with another envelope is kept under a new id, not dropped.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { Spool, INLINE_MAX } from '../src/spool/spool.js';
import { adoptShards, existingShards, shardDir } from '../src/spool/shards.js';
import { tmpDir } from './helpers/peers.js';
import { put, read } from './helpers/spool.js';

const log = pino({ level: 'silent' });

/** Every queued message of a spool: recipient → body. */
function contents(dir: string): Map<string, string> {
  const s = new Spool(dir);
  try {
    return new Map(s.view.list().map((m) => [m.recipients[0].rcpt, read(s.bodies.bodyFor(s.message(m.id)!)).toString('latin1')]));
  } finally {
    s.close();
  }
}

test('a shard without a worker is merged into shard 0: small and large bodies arrive once; a merge run again adds nothing', async () => {
  const root = tmpDir('shards-');
  const big = Buffer.alloc(INLINE_MAX + 10_000, 'B');
  const s0 = new Spool(shardDir(root, 0));
  await put(s0, 'zero@x.test', Buffer.from('body zero\r\n'));
  s0.close();
  const s1 = new Spool(shardDir(root, 1));
  await put(s1, 'small@x.test', Buffer.from('body small\r\n'));
  await put(s1, 'large@y.test', big);
  s1.close();
  assert.deepEqual(existingShards(root), [1]);

  // A copy of shard 1 as it was: put back after the merge, it is what a crash between the
  // merge's commit and the removal of the old shard leaves.
  const copy = `${root}-copy`;
  fs.cpSync(shardDir(root, 1), copy, { recursive: true });

  assert.equal(adoptShards(root, 1, log), 2);
  assert.ok(!fs.existsSync(shardDir(root, 1)), 'the merged shard is removed');
  const merged = contents(root);
  assert.deepEqual([...merged.keys()].sort(), ['large@y.test', 'small@x.test', 'zero@x.test']);
  assert.equal(merged.get('small@x.test'), 'body small\r\n');
  assert.equal(merged.get('large@y.test'), big.toString('latin1'), 'the large body moved with its message');

  fs.cpSync(copy, shardDir(root, 1), { recursive: true });
  assert.equal(adoptShards(root, 1, log), 0, 'nothing is added twice');
  const again = contents(root);
  assert.equal(again.size, 3);
  assert.equal(again.get('large@y.test'), big.toString('latin1'));
});

test('shards 2 and 3 with workers: 2 go to shards 0 and 1; a clashing id with another envelope is kept under a new id', async () => {
  const root = tmpDir('shards-');
  const s0 = new Spool(shardDir(root, 0));
  const id = await put(s0, 'mine@x.test', Buffer.from('shard 0\r\n'));
  s0.close();
  const s2 = new Spool(shardDir(root, 2));
  const other = await put(s2, 'theirs@x.test', Buffer.from('shard 2\r\n'));
  // The same id in both shards, for another message (ids are unique per process; made so here).
  s2.db.prepare('UPDATE messages SET id = ?, created = created + 1 WHERE id = ?').run(id, other);
  s2.db.prepare('UPDATE recipients SET msg = ? WHERE msg = ?').run(id, other);
  s2.close();
  const s3 = new Spool(shardDir(root, 3));
  await put(s3, 'three@x.test', Buffer.from('shard 3\r\n'));
  s3.close();

  assert.equal(adoptShards(root, 2, log), 2);
  assert.deepEqual(existingShards(root), [1]);
  const zero = contents(root);
  assert.deepEqual([...zero.keys()].sort(), ['mine@x.test', 'theirs@x.test']);
  assert.equal(zero.get('theirs@x.test'), 'shard 2\r\n');
  assert.equal(zero.get('mine@x.test'), 'shard 0\r\n');
  assert.deepEqual([...contents(shardDir(root, 1)).entries()], [['three@x.test', 'shard 3\r\n']]);
});
