// A/B for a change near the L4 path: smtplb `mode: tcp` from two builds (BASE_ROOT, a built
// checkout of the baseline, and this checkout) side by side with HAProxy over the same two
// smtp-sinks, rounds alternating, medians of msg/s and CPU seconds per 1,000 messages, and each
// build's ratio to HAProxy in the same run.
// Usage: BASE_ROOT=/path/to/baseline N=10000 ROUNDS=5 node dist/bench/ab-l4.js
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cpuTicks, descendants, median, runSmtpSource, startProc, stop, TICK } from './common.js';
import { freePort, portOpen, ROOT, waitFor } from '../test/helpers/peers.js';

const N = Number(process.env.N ?? 10000), ROUNDS = Number(process.env.ROUNDS ?? 5);
const BASE = process.env.BASE_ROOT;
if (!BASE) throw new Error('BASE_ROOT: a checkout of the baseline, built');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ab-l4-'));
const sinkPorts = [await freePort(), await freePort()];
const sinks = sinkPorts.map((p) => startProc('/usr/sbin/smtp-sink', ['-u', 'nobody', `127.0.0.1:${p}`, '1000']));
const servers = sinkPorts.map((p, i) => `      - { name: sink${i + 1}, address: 127.0.0.1:${p} }`).join('\n');
const systems: { name: string; port: number; p: ChildProcess }[] = [];
for (const [name, root] of [['base', BASE], ['new', ROOT]]) {
  const port = await freePort();
  const file = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(file, `hostname: bench.test\nlog: { level: warn }\nlisteners:\n  - { name: bench, listen: 127.0.0.1:${port}, mode: tcp, pool: sinks }\npools:\n  sinks:\n    balance: roundrobin\n    health: { check: smtp, interval: 1s, timeout: 2s, rise: 2, fall: 3 }\n    servers:\n${servers}\n`);
  systems.push({ name, port, p: spawn(process.execPath, [path.join(root, 'bin/smtplb.js'), 'start', '-c', file], { stdio: ['ignore', 'ignore', 'inherit'] }) });
}
const hpPort = await freePort();
fs.writeFileSync(path.join(dir, 'haproxy.cfg'), `global\n  maxconn 8000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\nfrontend smtp\n  bind 127.0.0.1:${hpPort}\n  default_backend sinks\nbackend sinks\n  balance roundrobin\n  option smtpchk HELO bench.test\n${sinkPorts.map((p, i) => `  server sink${i + 1} 127.0.0.1:${p} check inter 1s`).join('\n')}\n`);
systems.push({ name: 'haproxy', port: hpPort, p: startProc('haproxy', ['-db', '-f', path.join(dir, 'haproxy.cfg')]) });
try {
  for (const s of systems) await waitFor(s.name, () => portOpen(s.port), 20_000);
  await new Promise((r) => setTimeout(r, 2500)); // health checks up (rise 2)
  for (const s of systems) await runSmtpSource(s.port, { messages: 1000, sessions: 20, reuse: false });
  const res: Record<string, { mps: number; cpu1k: number }[]> = {};
  for (const reuse of [false, true]) for (let r = 0; r < ROUNDS; r++) for (const s of r % 2 ? [...systems].reverse() : systems) {
    const pids = descendants(s.p.pid!), c0 = cpuTicks(pids);
    const secs = await runSmtpSource(s.port, { messages: N, sessions: 20, reuse });
    const cpu = (cpuTicks(pids) - c0) / TICK;
    const k = `${s.name} ${reuse ? 'reuse' : 'conn/msg'}`;
    (res[k] ??= []).push({ mps: N / secs, cpu1k: (cpu * 1000) / N });
    console.log(k, (N / secs).toFixed(0), 'msg/s', ((cpu * 1000) / N).toFixed(3), 'CPU s/1k');
  }
  const med = (k: string, f: (x: { mps: number; cpu1k: number }) => number) => median(res[k].map(f));
  for (const w of ['conn/msg', 'reuse']) {
    const hp = med(`haproxy ${w}`, (x) => x.mps);
    for (const s of ['base', 'new', 'haproxy']) console.log('MEDIAN', `${s} ${w}`, med(`${s} ${w}`, (x) => x.mps).toFixed(0), 'msg/s', med(`${s} ${w}`, (x) => x.cpu1k).toFixed(3), 'CPU s/1k', `ratio to HAProxy ${(med(`${s} ${w}`, (x) => x.mps) / hp).toFixed(2)}`);
  }
} finally {
  await Promise.all([...systems.map((s) => stop(s.p)), ...sinks.map(stop)]);
  fs.rmSync(dir, { recursive: true, force: true });
}
