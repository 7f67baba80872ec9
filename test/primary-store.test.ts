// The workers' store in the primary (src/cluster/primary-store.ts) runs the cluster's three
// Redis scripts in JavaScript. Same requests, same answers: a random but seeded sequence of
// grants (concurrency, rate, connection rate, warm-up cap), releases (leases, warm-up slots
// given back, backoff cuts, climbs and suspensions) and warm-up resyncs goes to a real
// redis-server running the Lua and to the store, and every reply must match. Also: a worker's
// leases go back when it is forgotten, and the state that outlives a restart is read back.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { Redis } from 'ioredis';
import { GRANT, RELEASE, WARM_RESYNC } from '../src/cluster/scripts.js';
import { PrimaryStore } from '../src/cluster/primary-store.js';
import { onStop, stopAll, tmpDir } from './helpers/peers.js';
import { startRedis } from './helpers/redis.js';

after(stopAll);

type Scripted = Redis & { smtplbGrant(...a: (string | number)[]): Promise<unknown[]>; smtplbRelease(...a: (string | number)[]): Promise<unknown>; smtplbWarmResync(...a: (string | number)[]): Promise<unknown> };

/** A small seeded generator, so a failure can be replayed. */
function rng(seed: number) {
  return () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
}

test('the primary store answers every grant, release and resync as the Redis scripts do', async () => {
  const peer = await startRedis();
  const redis = new Redis(peer.url) as Scripted;
  onStop(() => redis.disconnect());
  redis.defineCommand('smtplbGrant', { numberOfKeys: 3, lua: GRANT });
  redis.defineCommand('smtplbRelease', { numberOfKeys: 3, lua: RELEASE });
  redis.defineCommand('smtplbWarmResync', { numberOfKeys: 1, lua: WARM_RESYNC });
  const store = new PrimaryStore();
  const mem = async (name: string, a: (string | number)[], now: number) => {
    const [[err, v]] = store.exec([[name, ...a]], 1, now);
    if (err) throw new Error(err);
    return v;
  };
  const r = rng(20261128);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  let now = Date.now();
  const held: [string, string][] = [];
  let granted = 0;
  let refused = 0;
  for (let i = 0; i < 1500; i++) {
    now += Math.floor(r() * 40);
    const pair = pick(['p1', 'p2']);
    const keys = [`t:pair:${pair}`, `t:leases:${pair}`, `t:warm:${pair}:1`];
    const op = r();
    if (op < 0.6) {
      const lease = `l${i}`;
      const conc = pick([0, 2, 3]);
      const args = [now, conc ? lease : '', 60_000, conc, pick([0, 5]), 1000, pick([1, 2]), pick([0, 30]), pick([0, 1]), pick([-1, 40])];
      const want = (await redis.smtplbGrant(...keys, ...args)).map(String);
      const got = (await mem('smtplbGrant', [...keys, ...args], now)) as string[];
      // '%.0f' in Lua rounds a half to even, toFixed rounds it up: a wait may differ by 1 ms.
      assert.ok(Math.abs(Number(got[2]) - Number(want[2])) <= 1, `wait, step ${i}: ${got} vs ${want}`);
      assert.deepEqual([got[0], got[1], ...got.slice(3)], [want[0], want[1], ...want.slice(3)], `grant, step ${i}`);
      if (want[0] === '1') {
        granted++;
        if (conc) held.push([pair, lease]);
      } else refused++;
    } else if (op < 0.9) {
      const [p, lease] = held.length && r() < 0.8 ? held.splice(Math.floor(r() * held.length), 1)[0] : [pair, ''];
      const k = [`t:pair:${p}`, `t:leases:${p}`, `t:warm:${p}:1`];
      const change = pick(['', '', 'down', 'up']);
      const args = [lease, pick([0, 0, 1]), change, change === 'down' ? pick(['0.5000', '0.2500']) : change === 'up' ? '0.1000' : 0, r() < 0.05 ? now + 200 : 0];
      assert.equal(String(await mem('smtplbRelease', [...k, ...args], now)), String(await redis.smtplbRelease(...k, ...args)), `release, step ${i}`);
    } else {
      const args = [Math.floor(r() * 50), Math.floor(r() * 5)];
      assert.equal(String(await mem('smtplbWarmResync', [keys[2], ...args], now)), String(await redis.smtplbWarmResync(keys[2], ...args)), `resync, step ${i}`);
    }
  }
  // The sequence went through every branch often enough to mean something.
  assert.ok(granted > 200 && refused > 200, `granted ${granted}, refused ${refused}`);
});

test("a worker's leases go back when it is forgotten; suspensions, backoff and warm-up counts outlive a restart", () => {
  const file = path.join(tmpDir('store-'), 'workers-store.json');
  const store = new PrimaryStore(file);
  const now = Date.now();
  const grant = (owner: number, lease: string) => store.exec([['smtplbGrant', 'p', 'z', 'w', now, lease, 60_000, 2, 0, 0, 1, 0, 0, 10]], owner, now)[0][1] as string[];
  assert.equal(grant(1, 'a')[0], '1');
  assert.equal(grant(2, 'b')[0], '1');
  assert.equal(grant(2, 'c')[0], '0', 'a concurrency of 2 is full');
  store.forget(1);
  assert.equal(grant(2, 'c')[0], '1', 'the slot of the worker that went away is free at once');
  store.exec([['hset', 'smtplb:susp', 'S1', '{"id":"S1"}'], ['smtplbRelease', 'p', 'z', 'w', '', 0, 'down', '0.5000', now + 60_000], ['hset', 'smtplb:nodes', 'worker-0', '{}'], ['set', 'smtplb:epoch', '1', 'NX']], 2, now);
  store.stop();
  const back = new PrimaryStore(file);
  const [[, susp], [, factor], [, warm], [, epoch], [, nodes], [, leases]] = back.exec([['hgetall', 'smtplb:susp'], ['hget', 'p', 'factor'], ['get', 'w'], ['get', 'smtplb:epoch'], ['hgetall', 'smtplb:nodes'], ['smtplbGrant', 'p', 'z', 'w', now, '', 0, 0, 0, 0, 1, 0, 0, -1]], 1, now);
  assert.deepEqual(susp, { S1: '{"id":"S1"}' });
  assert.equal(factor, '0.5000');
  assert.equal(warm, '3', 'three warm-up slots taken before the restart');
  assert.equal(epoch, null, 'no epoch: the workers re-seed the store with what their spools hold');
  assert.deepEqual(nodes, {}, 'heartbeats are not kept');
  assert.equal((leases as string[])[1], 'suspended', 'the backoff suspension is kept');
});
