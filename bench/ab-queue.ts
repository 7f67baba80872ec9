// A/B for a change to the relay: smtplb `delivery: queue` from two builds (BASE_ROOT, a
// checkout of the baseline with `npm install` done, and this checkout) side by side against one
// smtp-sink, rounds alternating, medians of msg/s and CPU seconds per 1,000 messages.
// Usage: BASE_ROOT=/path/to/baseline N=5000 ROUNDS=3 node dist/bench/ab-queue.js
// DELIVERY=cutthrough compares cut-through instead; REUSE=no or REUSE=yes runs only that half.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { cpuTicks, descendants, median, runSmtpSource, SMTP_SINK, startQueueRelay, TICK } from './common.js';
import { freePort, portOpen, ROOT, waitFor } from '../test/helpers/peers.js';
const N = Number(process.env.N ?? 5000), ROUNDS = Number(process.env.ROUNDS ?? 3);
const sinkPort = await freePort();
const sdir = fs.mkdtempSync(fs.existsSync('/dev/shm') ? '/dev/shm/ab-sink-' : '/tmp/ab-sink-'); fs.chmodSync(sdir, 0o777);
const sink = spawn(SMTP_SINK, ['-u', 'nobody', '-d', `${sdir}/m.`, `127.0.0.1:${sinkPort}`, '2000'], { stdio: 'ignore' });
const count = () => fs.readdirSync(sdir).length;
const clear = () => { for (const f of fs.readdirSync(sdir)) fs.rmSync(path.join(sdir, f)); };
const BASE = process.env.BASE_ROOT;
if (!BASE) throw new Error('BASE_ROOT: a checkout of the baseline, built');
const systems: { name: string; port: number; p: ChildProcess }[] = [];
for (const [name, root] of [['base', BASE], ['new', ROOT]]) systems.push({ name, ...(await startQueueRelay(root, `ab-${name}`, sinkPort, { pool: ['destination_concurrency: 20'], listener: process.env.DELIVERY === 'cutthrough' ? 'delivery: cutthrough' : undefined })) });
for (const s of systems) await waitFor(s.name, () => portOpen(s.port), 20000);
for (const s of systems) await runSmtpSource(s.port, { messages: 500, sessions: 20, reuse: false });
await new Promise((r) => setTimeout(r, 2000));
const res: Record<string, { mps: number; cpu1k: number }[]> = {};
const REUSE = process.env.REUSE === 'no' ? [false] : process.env.REUSE === 'yes' ? [true] : [false, true];
for (const reuse of REUSE) for (let r = 0; r < ROUNDS; r++) for (const s of r % 2 ? [...systems].reverse() : systems) {
  clear();
  const pids = descendants(s.p.pid!); const c0 = cpuTicks(pids); const t0 = Date.now();
  await runSmtpSource(s.port, { messages: N, sessions: 20, reuse });
  await waitFor('sink', () => count() >= N, 600000, 50);
  const secs = (Date.now() - t0) / 1000, cpu = (cpuTicks(pids) - c0) / TICK;
  const k = `${s.name} ${reuse ? 'reuse' : 'conn/msg'}`;
  (res[k] ??= []).push({ mps: N / secs, cpu1k: cpu * 1000 / N });
  console.log(k, (N / secs).toFixed(0), 'msg/s', (cpu * 1000 / N).toFixed(3), 'CPU s/1k');
}
for (const [k, xs] of Object.entries(res)) console.log('MEDIAN', k, median(xs.map((x) => x.mps)).toFixed(0), 'msg/s', median(xs.map((x) => x.cpu1k)).toFixed(3), 'CPU s/1k');
for (const s of systems) s.p.kill('SIGTERM');
sink.kill(); fs.rmSync(sdir, { recursive: true, force: true });
setTimeout(() => process.exit(0), 1000);
