// A node with worker processes in a Redis cluster: its primary (the admin API, what its workers
// are told) and every other node agree on server drains and weights, wherever the operator
// made the change. Node a runs `workers: 2`, node b one process; one real redis-server; the
// receivers are two smtp-sinks, and the test counts what each receives.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { api, metric, queueIdle } from './helpers/admin.js';
import { freePort, startSink, startSmtplb, stopAll, type Sink, waitFor } from './helpers/peers.js';
import { startRedis, type RedisPeer } from './helpers/redis.js';

after(stopAll);

interface Node { name: string; port: number; admin: number }

let redis: RedisPeer;
let a: Node;
let b: Node;
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

/** p1's and p2's admin state and weight as a node's admin API shows them (a's: its primary's). */
async function servers(n: Node): Promise<string> {
  const st = await api<{ pools: { name: string; servers: { name: string; admin: string; weight: number }[] }[] }>(n.admin, '/api/status');
  return st.pools.find((p) => p.name === 'plain')!.servers.map((s) => `${s.name}:${s.admin}:${s.weight}`).join(' ');
}

before(async () => {
  redis = await startRedis();
  sinks.push(await startSink(), await startSink());
  a = { name: 'a', port: await freePort(), admin: await freePort() };
  b = { name: 'b', port: await freePort(), admin: await freePort() };
  await startSmtplb(config(a, 2));
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
