// Cluster-wide throttling overhead (issue #12): three smtplb nodes whose limits are shared
// through one redis-server against the same three nodes with local limits, same run, rounds
// alternating, medians. The destination has a limit that does not bind (so every delivery
// asks for its grant but none waits): `rate` (connections reused) and `concurrency` (on a
// cluster a connection to a concurrency-limited destination carries one message).
// Usage: N=6000 ROUNDS=3 node dist/bench/cluster.js   (writes bench/results-cluster.md)
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cpuTicks, descendants, median, runSmtpSource, startQueueRelay, TICK } from './common.js';
import { freePort, portOpen, ROOT, waitFor } from '../test/helpers/peers.js';

const N = Number(process.env.N ?? 6000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const NODES = 3;

const sinkPort = await freePort();
const sdir = fs.mkdtempSync('/dev/shm/cluster-sink-');
fs.chmodSync(sdir, 0o777);
const sink = spawn('/usr/sbin/smtp-sink', ['-u', 'nobody', '-d', `${sdir}/m.`, `127.0.0.1:${sinkPort}`, '2000'], { stdio: 'ignore' });
const count = () => fs.readdirSync(sdir).length;
const clear = () => {
  for (const f of fs.readdirSync(sdir)) fs.rmSync(path.join(sdir, f));
};

const redisPort = await freePort();
const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], { stdio: 'ignore' });
await waitFor('redis', () => portOpen(redisPort), 10_000);
/** Script calls (one round trip each: the grant, the release) and all commands, from Redis's own counters. */
const redisCounts = () => {
  const text = spawnSync('redis-cli', ['-p', String(redisPort), 'INFO', 'all'], { encoding: 'utf8' }).stdout;
  const calls = (cmd: string) => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(text)?.[1] ?? 0);
  return { scripts: calls('evalsha') + calls('eval'), all: Number(/total_commands_processed:(\d+)/.exec(text)?.[1] ?? 0) };
};

interface System { name: string; limit: string; nodes: { port: number; p: ChildProcess }[] }
const systems: System[] = [];
for (const limit of ['rate', 'concurrency']) {
  for (const shared of [false, true]) {
    const sys: System = { name: `${shared ? 'redis' : 'local'} ${limit}`, limit, nodes: [] };
    for (let i = 0; i < NODES; i++) {
      const extra = `shaping:\n  default: ${limit === 'rate' ? '{ rate: 100000/s, burst: 1000 }' : '{ concurrency: 60 }'}\n${shared ? `cluster: { redis: "redis://127.0.0.1:${redisPort}/0", node: n${i}, prefix: "b${systems.length}" }\n` : ''}`;
      sys.nodes.push(await startQueueRelay(ROOT, `n${i}`, sinkPort, { pool: ['health: { check: none }'], extra }));
    }
    systems.push(sys);
  }
}
for (const s of systems) for (const n of s.nodes) await waitFor(s.name, () => portOpen(n.port), 20_000);

async function round(s: System, messages: number) {
  clear();
  const pids = s.nodes.flatMap((n) => descendants(n.p.pid!));
  const redisPids = s.name.startsWith('redis') ? [redis.pid!] : [];
  const c0 = cpuTicks(pids);
  const r0 = cpuTicks(redisPids);
  const k0 = redisCounts();
  const t0 = Date.now();
  await Promise.all(s.nodes.map((n) => runSmtpSource(n.port, { messages: messages / NODES, sessions: 10, reuse: true })));
  await waitFor('sink', () => count() >= messages, 600_000, 50);
  const secs = (Date.now() - t0) / 1000;
  return { mps: messages / secs, cpu1k: ((cpuTicks(pids) - c0) / TICK) * (1000 / messages), redis1k: ((cpuTicks(redisPids) - r0) / TICK) * (1000 / messages), ...(() => {
    if (!s.name.startsWith('redis')) return { cmdsPerMsg: 0, scriptsPerMsg: 0 };
    const k1 = redisCounts();
    return { cmdsPerMsg: (k1.all - k0.all) / messages, scriptsPerMsg: (k1.scripts - k0.scripts) / messages };
  })() };
}

// Warm-up: every node's spool, connections and JIT.
for (const s of systems) await round(s, 2400);
const res: Record<string, Awaited<ReturnType<typeof round>>[]> = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const s of r % 2 ? [...systems].reverse() : systems) {
    const x = await round(s, N);
    (res[s.name] ??= []).push(x);
    console.log(s.name, x.mps.toFixed(0), 'msg/s', x.cpu1k.toFixed(3), 'smtplb CPU s/1k', x.redis1k.toFixed(3), 'redis CPU s/1k', x.scriptsPerMsg.toFixed(2), 'script calls/msg', x.cmdsPerMsg.toFixed(2), 'Redis commands/msg');
  }
}
const med = (name: string) => {
  const xs = res[name];
  return { mps: median(xs.map((x) => x.mps)), cpu1k: median(xs.map((x) => x.cpu1k)), redis1k: median(xs.map((x) => x.redis1k)), cmds: median(xs.map((x) => x.cmdsPerMsg)), scripts: median(xs.map((x) => x.scriptsPerMsg)) };
};
const cpuModel = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
const lines = [
  '# Cluster-wide throttling overhead',
  '',
  `Three smtplb nodes (each its own spool) with limits shared through one redis-server, against the same three nodes with local limits; one smtp-sink; ${N} messages per round (a third through each node, smtp-source, 10 sessions each, connection reuse), ${ROUNDS} rounds alternating, medians. The destination's limit does not bind, so every delivery asks Redis for its grant and none waits.`,
  '',
  `Machine: ${os.cpus().length} CPUs (${cpuModel}), kernel ${os.release()}, Node ${process.version}; the load generator, the sink, Redis and the six smtplb processes share these cores. \`N=${N} ROUNDS=${ROUNDS} node dist/bench/cluster.js\`, ${new Date().toISOString().slice(0, 10)}.`,
  '',
  '| limit | nodes | msg/s, median (rounds) | smtplb CPU s / 1,000 msgs | Redis CPU s / 1,000 msgs | Redis round trips per message (script calls) | Redis commands per message (all) | msg/s vs local |',
  '|---|---|---|---|---|---|---|---|',
];
/** Each round's msg/s, for the spread behind a median. */
const rounds = (name: string) => res[name].map((x) => x.mps.toFixed(0)).join(', ');
for (const limit of ['rate', 'concurrency']) {
  const local = med(`local ${limit}`);
  const shared = med(`redis ${limit}`);
  lines.push(`| \`${limit === 'rate' ? 'rate: 100000/s, burst: 1000' : 'concurrency: 60'}\` | 3 local limits | ${local.mps.toFixed(0)} (${rounds(`local ${limit}`)}) | ${local.cpu1k.toFixed(3)} | - | - | - | 1.00 |`);
  lines.push(`| | 3 shared (Redis) | ${shared.mps.toFixed(0)} (${rounds(`redis ${limit}`)}) | ${shared.cpu1k.toFixed(3)} | ${shared.redis1k.toFixed(3)} | ${shared.scripts.toFixed(2)} | ${shared.cmds.toFixed(2)} | ${(shared.mps / local.mps).toFixed(2)} |`);
}
lines.push('', 'Round trips per message are the grant and release script calls Redis counted (cmdstat_evalsha); all commands also count the commands run inside the scripts, the syncs (one pipeline every 250 ms per node, of all six cluster nodes in this run) and lease renewals.');
fs.writeFileSync(path.join(ROOT, 'bench/results-cluster.md'), lines.join('\n') + '\n');
console.log(lines.join('\n'));
for (const s of systems) for (const n of s.nodes) n.p.kill('SIGTERM');
sink.kill();
redis.kill();
fs.rmSync(sdir, { recursive: true, force: true });
setTimeout(() => process.exit(0), 1500);
