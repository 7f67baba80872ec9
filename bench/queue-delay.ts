// `npm run bench` (queue delay part, issue 21): how long messages wait between acceptance and
// delivery, at 60 and at 600 client sessions, beside throughput. Three smtp-sink sinks with
// their default session limit (256 each, as an MTA has a bounded number of smtpd processes),
// three smtp-source generators reusing their connections, smtplb `delivery: queue` with
// `workers` (BENCH_WORKERS, default 2), spool on disk, its delivery log read for
// queue_delay_ms (acceptance to delivery) per delivered message. Reports p50 / p99 / max and
// the longest time with no arrival at the sinks (a stall), per round; medians over rounds.
// On the 16-core machine: BENCH_WORKERS=8 BENCH_MESSAGES=30000 (see ../shared/bench/).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, freePort, portOpen, waitFor } from '../test/helpers/peers.js';
import { cpuTicks, descendants, median, SMTP_SINK as SINK, SMTP_SOURCE as SOURCE, stop, TICK } from './common.js';

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 6000);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 200);
const SESSIONS = (process.env.BENCH_SESSIONS ?? '60,600').split(',').map(Number);

// On a machine with 16 cores or more each side gets its own cores (as ../shared/bench/ does):
// sinks 0-2, generators 3-5, smtplb and its workers 8-15. SMTP_SINK / SMTP_SOURCE name the
// binaries where they are not in /usr/sbin (the 16-core machine runs them from a bundle).
const PIN = os.cpus().length >= 16 && process.env.BENCH_PIN !== '0';
function pinned(cores: string, cmd: string, args: string[]): [string, string[]] {
  return PIN ? ['taskset', ['-c', cores, cmd, ...args]] : [cmd, args];
}

interface Round { intake: number; failed: number; retried: number; seconds: number; msgPerSec: number; cpuPer1k: number; p50: number; p99: number; max: number; stall: number; delivered: number }

function sinks(ports: number[]) {
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'smtplb-delay-sink-'));
  fs.chmodSync(dir, 0o777);
  const procs = ports.map((p, i) => spawn(...pinned(String(i), SINK, ['-u', 'nobody', '-d', `${dir}/m${i}.`, `127.0.0.1:${p}`, '2000']), { stdio: 'ignore' }));
  return { procs, count: () => fs.readdirSync(dir).length, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

function source(port: number, messages: number, sessions: number, k: number): ChildProcess {
  return spawn(...pinned(String(3 + k), SOURCE, ['-s', String(sessions), '-m', String(messages), '-l', '1000', '-f', 'bench@source.test', '-t', 'rcpt@dest.test', '-d', `127.0.0.1:${port}`]), { stdio: 'ignore' });
}

async function round(sessions: number, sinkPorts: number[], count: () => number): Promise<Round> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtplb-delay-'));
  const [port, admin] = [await freePort(), await freePort()];
  const log = path.join(dir, 'delivery.log');
  fs.writeFileSync(
    path.join(dir, 'c.yaml'),
    `hostname: gw.bench.test
spool: ${dir}/spool
workers: ${WORKERS}
log: { level: warn }
delivery_log: { file: ${log} }
admin: { listen: 127.0.0.1:${admin}, token: bench-token }
listeners:
  - { name: l, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8], delivery: queue, max_connections_per_ip: 20000 }
pools:
  sinks:
    health: { check: tcp, interval: 2s, rise: 1, fall: 2 }
    reuse: { messages: 1000, seconds: 30s }
    destination_concurrency: ${CONCURRENCY}
    servers:
${sinkPorts.map((p, i) => `      - { name: s${i + 1}, address: 127.0.0.1:${p} }`).join('\n')}
routes:
  - { pool: sinks }
queue: { max_deliveries: 2000 }
`,
  );
  const lb = spawn(...pinned('8-15', process.execPath, [BIN, 'start', '-c', path.join(dir, 'c.yaml')]), { cwd: dir, stdio: 'ignore' });
  await waitFor('smtplb listening', () => portOpen(port), 30_000);
  await new Promise((r) => setTimeout(r, 2000)); // every worker up
  const base = count();
  const pids = () => descendants(lb.pid!);
  const c0 = cpuTicks(pids());
  const t0 = Date.now();
  const per = Math.floor(MESSAGES / 3);
  const gens = [0, 1, 2].map((k) => source(port, per, Math.max(1, Math.floor(sessions / 3)), k));
  // Intake time: until the last generator has had its last message accepted.
  let intake = NaN;
  void Promise.all(gens.map((g) => new Promise((r) => g.once('exit', r)))).then(() => (intake = (Date.now() - t0) / 1000));
  // Arrivals sampled every 100 ms: the longest stretch without one is the stall.
  let last = t0;
  let lastCount = base;
  let stall = 0;
  const want = base + per * 3;
  await waitFor(`${per * 3} messages at the sinks`, () => {
    const n = count();
    const now = Date.now();
    if (n > lastCount) {
      stall = Math.max(stall, now - last);
      last = now;
      lastCount = n;
    }
    return n >= want;
  }, 600_000, 100);
  const seconds = (Date.now() - t0) / 1000;
  const cpu = (cpuTicks(pids()) - c0) / TICK;
  await Promise.all(gens.map((g) => (g.exitCode === null ? new Promise((r) => g.once('exit', r)) : null)));
  await stop(lb);
  await new Promise((r) => setTimeout(r, 300));
  const lines = fs.readFileSync(log, 'utf8').split('\n');
  const failed = lines.filter((l) => l.includes('"event":"attempt"') && !l.includes('"code":250')).length;
  const retried = lines.filter((l) => l.includes('"event":"delivered"') && !l.includes('"attempt":1,') && !l.includes('"attempt":1}')).length;
  const delays = lines
    .filter((l) => l.includes('"event":"delivered"'))
    .map((l) => (JSON.parse(l) as { queue_delay_ms: number }).queue_delay_ms)
    .sort((a, b) => a - b);
  fs.rmSync(dir, { recursive: true, force: true });
  const q = (p: number) => delays[Math.min(delays.length - 1, Math.floor(delays.length * p))] ?? NaN;
  return { intake, failed, retried, seconds, msgPerSec: (per * 3) / seconds, cpuPer1k: (cpu * 1000) / (per * 3), p50: q(0.5), p99: q(0.99), max: delays[delays.length - 1] ?? NaN, stall, delivered: delays.length };
}

async function main() {
  const sinkPorts = [await freePort(), await freePort(), await freePort()];
  const s = sinks(sinkPorts);
  for (const p of sinkPorts) await waitFor(`smtp-sink ${p}`, () => portOpen(p));
  const rows: string[] = [];
  const machine = `${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim()}), Linux ${os.release()}, Node ${process.version}`;
  try {
    for (const sessions of SESSIONS) {
      const rs: Round[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const x = await round(sessions, sinkPorts, s.count);
        rs.push(x);
        console.log(`sessions ${sessions} round ${r + 1}: ${x.seconds.toFixed(2)} s (intake ${x.intake.toFixed(2)} s), ${x.failed} failed attempts, ${x.retried} delivered after a retry, ${x.msgPerSec.toFixed(0)} msg/s, ${x.cpuPer1k.toFixed(3)} CPU s/1k, queue delay p50 ${x.p50} ms p99 ${x.p99} ms max ${x.max} ms, longest stall ${x.stall} ms (${x.delivered} in the log)`);
      }
      const m = (f: (x: Round) => number) => median(rs.map(f));
      rows.push(`| ${sessions} | ${m((x) => x.seconds).toFixed(2)} | ${m((x) => x.msgPerSec).toFixed(0)} | ${m((x) => x.cpuPer1k).toFixed(3)} | ${m((x) => x.p50)} | ${m((x) => x.p99)} | ${m((x) => x.max)} | ${m((x) => x.stall)} |`);
    }
  } finally {
    for (const p of s.procs) p.kill('SIGKILL');
    s.remove();
  }
  const table = [
    `# Queue delay at 60 and 600 client sessions`,
    '',
    `Machine: ${machine}. smtplb \`delivery: queue\`, workers: ${WORKERS}, spool on disk, ${MESSAGES} messages of 1 KB from three smtp-source generators (connections reused) to three smtp-sink sinks (256 sessions each); medians of ${ROUNDS} rounds. Queue delay is acceptance to delivery, from the delivery log; a stall is the longest time with no arrival at the sinks.`,
    '',
    '| sessions | seconds | msg/s | CPU s / 1k msgs | queue delay p50 (ms) | p99 (ms) | max (ms) | longest stall (ms) |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Command: \`BENCH_WORKERS=${WORKERS} BENCH_MESSAGES=${MESSAGES} BENCH_ROUNDS=${ROUNDS} node dist/bench/queue-delay.js\``,
    '',
  ].join('\n');
  console.log(table);
  if (!process.env.BENCH_NO_WRITE) fs.writeFileSync(process.env.BENCH_RESULT ?? path.join(path.dirname(BIN), '..', 'bench', 'results-queue-delay.md'), table);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
