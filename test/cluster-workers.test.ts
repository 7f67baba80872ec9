// A node with worker processes in a Redis cluster: its primary (the admin API, what its workers
// are told) and every other node agree on server drains and weights, wherever the operator
// made the change. Node a runs `workers: 2`, node b one process; one real redis-server; the
// receivers are two smtp-sinks, and the test counts what each receives.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { api, metric, queueIdle } from './helpers/admin.js';
import { freePort, startSink, startSmtplb, stopAll, type Sink, type Smtplb, waitFor } from './helpers/peers.js';
import { startRedis, type RedisPeer } from './helpers/redis.js';

after(stopAll);

interface Node { name: string; port: number; admin: number }

let redis: RedisPeer;
let a: Node;
let b: Node;
let aLb: Smtplb;
const sinks: Sink[] = [];

function config(n: Node, workers: number): string {
  return `hostname: ${n.name}.gw.test
log: { level: warn, format: json }
admin: { listen: 127.0.0.1:${n.admin}, token: test-token-1 }
spool: ./spool
workers: ${workers}
cluster: { redis: "${redis.url}", node: ${n.name}, lease_ttl: 2s, sync: 200ms, timeout: 300ms }
listeners:
  - { name: relay, listen: 127.0.0.1:${n.port}, mode: smtp, relay_networks: [127.0.0.1/32] }
pools:
  plain:
    health: { check: none }
    servers:
      - { name: p1, address: 127.0.0.1:${sinks[0].port} }
      - { name: p2, address: 127.0.0.1:${sinks[1].port} }
routes:
  - { pool: plain }
queue: { retry: [500ms], max_age: 1h }
`;
}

const base: Omit<SendOptions, 'server' | 'to'> = { from: 'app@client.test', headers: [], subject: 'cluster workers', body: 'hello', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };

async function send(n: Node, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const r = await sendOne({ ...base, server: `127.0.0.1:${n.port}`, to: [`u${i}@dest.test`] }, i);
    assert.ok(r.ok, `node ${n.name} took message ${i}: ${r.ok ? '' : r.error}`);
  }
}

const post = (n: Node, server: string, action: string, body?: unknown) =>
  fetch(`http://127.0.0.1:${n.admin}/api/pools/plain/servers/${server}/${action}`, { method: 'POST', headers: { authorization: 'Bearer test-token-1', 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });

/** p1's and p2's admin state and weight as a node's admin API shows them (a's: its primary's; or a worker's own). */
async function servers(n: Pick<Node, 'admin'>): Promise<string> {
  const st = await api<{ pools: { name: string; servers: { name: string; admin: string; weight: number }[] }[] }>(n.admin, '/api/status');
  return st.pools.find((p) => p.name === 'plain')!.servers.map((s) => `${s.name}:${s.admin}:${s.weight}`).join(' ');
}

before(async () => {
  redis = await startRedis();
  sinks.push(await startSink(), await startSink());
  a = { name: 'a', port: await freePort(), admin: await freePort() };
  b = { name: 'b', port: await freePort(), admin: await freePort() };
  aLb = await startSmtplb(config(a, 2));
  await startSmtplb(config(b, 1));
  // a's two workers are nodes a.0 and a.1 of the cluster, beside b.
  await waitFor('three cluster members through Redis', async () => (await metric(b.admin, 'smtplb_cluster_nodes')) === 3 && (await metric(b.admin, 'smtplb_cluster_shared')) === 1, 15_000);
});

test("a drain made at another node reaches the primary's view and every worker: a sends nothing to the drained server", async () => {
  assert.equal((await post(b, 'p1', 'drain')).status, 200);
  await waitFor("a's primary shows p1 drained", async () => (await servers(a)) === 'p1:drain:1 p2:ready:1', 3000, 20);
  const before = sinks[0].count();
  await send(a, 12);
  await sinks[1].settle(12);
  await queueIdle(a.admin);
  assert.equal(sinks[0].count(), before, 'the drained server received nothing from a');
});

test("a drain and a weight made at a node's primary are followed by the other node", async () => {
  assert.equal((await post(a, 'p1', 'enable')).status, 200);
  assert.equal((await post(a, 'p2', 'weight', { weight: 7 })).status, 200);
  assert.equal((await post(a, 'p2', 'drain')).status, 200);
  await waitFor('b follows a', async () => (await servers(b)) === 'p1:ready:1 p2:drain:7', 3000, 20);
  const before = sinks[1].count();
  const atP1 = sinks[0].count();
  await send(b, 12);
  await sinks[0].settle(atP1 + 12);
  await queueIdle(b.admin);
  assert.equal(sinks[1].count(), before, 'the server drained at a received nothing from b');
  // And a's own workers follow their primary: mail to a goes to p1 only as well.
  await send(a, 6);
  await sinks[0].settle(atP1 + 18);
  await queueIdle(a.admin);
  assert.equal(sinks[1].count(), before, 'nor from a');
  assert.equal(await servers(a), 'p1:ready:1 p2:drain:7', "a's own view is unchanged by its workers' syncs");
});

/** The pid of node a's worker on `shard`, from its environment. */
function workerPid(shard: number): number {
  const kids = spawnSync('pgrep', ['-P', String(aLb.proc.pid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
  const pid = kids.find((k) => fs.readFileSync(`/proc/${k}/environ`, 'utf8').split('\0').includes(`SMTPLB_SHARD=${shard}`));
  assert.ok(pid, `a worker on shard ${shard} among ${kids.join(', ')}`);
  return pid;
}

/** Kill a's worker on `shard` and wait for its replacement: its private admin port, once it answers. */
async function restartWorker(shard: number): Promise<number> {
  const old = workerPid(shard);
  process.kill(old, 'SIGKILL');
  return waitFor(`a new worker on shard ${shard}`, async () => {
    const st = await api<{ shards?: { shard: number; port: number; reachable: boolean }[] }>(a.admin, '/api/status').catch(() => undefined);
    const s = st?.shards?.find((x) => x.shard === shard && x.reachable);
    return s && workerPid(shard) !== old ? s.port : undefined;
  }, 15_000, 50);
}

test('a worker restarted after a reload takes its primary\'s view, not what it read from Redis; a drain made while the first worker restarts still reaches the cluster', async () => {
  assert.equal((await post(a, 'p2', 'enable')).status, 200);
  await waitFor('b follows a', async () => (await servers(b)) === 'p1:ready:1 p2:ready:7', 3000, 20);
  // A reload puts p2 back to its configured weight at a; Redis keeps 7 (as the reference says).
  aLb.reload();
  await waitFor("a's weight as configured again", async () => (await servers(a)) === 'p1:ready:1 p2:ready:1', 10_000, 50);
  const port = await restartWorker(1);
  assert.equal(await servers({ admin: port }), 'p1:ready:1 p2:ready:1', "the new worker 1 has its primary's weights");
  // The first worker killed, and a drain made at once: no worker is there to write it to Redis
  // until the new one starts; then it does.
  const killed = workerPid(0);
  process.kill(killed, 'SIGKILL');
  assert.equal((await post(a, 'p1', 'drain')).status, 200);
  await waitFor('b follows the drain made while a had no first worker', async () => (await servers(b)).startsWith('p1:drain:1 '), 15_000, 50);
  assert.match(await servers(a), /^p1:drain:1 /, "a's primary keeps its drain");
});
