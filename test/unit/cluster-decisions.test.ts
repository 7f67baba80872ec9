// The cluster's local-share arithmetic: pure functions, checked without Redis.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { liveNodes, shareOfRule, shareOfWarmCap } from '../../src/cluster/share.js';

test('a node on its own takes its share of concurrency and rate, never below one delivery', () => {
  const rule = { concurrency: 20, rate: { count: 30, perMs: 1000 }, burst: 1 };
  assert.deepEqual(shareOfRule(rule, 3), { concurrency: 6, rate: { count: 10, perMs: 1000 }, burst: 1 });
  assert.deepEqual(shareOfRule(rule, 1), rule);
  assert.equal(shareOfRule({ concurrency: 2, burst: 1 }, 5).concurrency, 1);
  assert.equal(shareOfRule({ burst: 1 }, 4).concurrency, undefined, 'no limit stays no limit');
  assert.deepEqual(shareOfRule(rule, 0), rule, 'zero nodes seen counts as one');
});

test("a node's warm-up share is what was left when Redis went away, divided by the nodes; never over the cap", () => {
  assert.equal(shareOfWarmCap(90, 30, 3), 50, '30 sent + a third of the 60 left');
  assert.equal(shareOfWarmCap(90, 90, 3), 90, 'nothing left: no more today');
  assert.equal(shareOfWarmCap(90, 0, 1), 90);
  assert.equal(shareOfWarmCap(90, 120, 3), 90, 'never above the cap');
  // Three nodes each using their share never send more than the cap together.
  for (const [cap, seen, n] of [[90, 10, 3], [100, 0, 7], [5, 4, 2], [1000, 999, 20]]) {
    const each = shareOfWarmCap(cap, seen, n) - seen;
    assert.ok(seen + each * n <= cap, `cap ${cap}, seen ${seen}, ${n} nodes`);
  }
});

test('live nodes are the ones heard from within the staleness window', () => {
  const beats = [{ node: 'c', at: 1000 }, { node: 'a', at: 9000 }, { node: 'b', at: 10_000 }];
  assert.deepEqual(liveNodes(beats, 10_000, 2000).map((b) => b.node), ['a', 'b']);
  assert.deepEqual(liveNodes(beats, 10_000, 10_000).map((b) => b.node), ['a', 'b', 'c']);
});
