// `npm run bench`: smtplb mode tcp side by side with HAProxy 2.6 mode tcp over the same two
// smtp-sink upstreams, on this machine, in the same run. Rounds alternate between the two;
// medians are reported with the smtplb/HAProxy ratio, CPU seconds and peak RSS.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, portOpen, ROOT, BIN, waitFor } from '../test/helpers/peers.js';
import { cpuTicks, descendants, median, peakRssMb, runSmtpSource, startProc, stop, TICK, type Sample } from './common.js';

const smtpSource = (port: number, reuse: boolean) => runSmtpSource(port, { messages: MESSAGES, sessions: SESSIONS, reuse });

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20000);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 20);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WORKERS = process.env.BENCH_WORKERS ?? '1';

async function measure(proc: ChildProcess, port: number, reuse: boolean): Promise<Sample> {
  const pids = descendants(proc.pid!);
  const before = cpuTicks(pids);
  const secs = await smtpSource(port, reuse);
  const cpu = (cpuTicks(pids) - before) / TICK;
  return { msgPerSec: MESSAGES / secs, cpuSec: cpu, rssMb: peakRssMb(pids) };
}


async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtplb-bench-'));
  const sinkPorts = [await freePort(), await freePort()];
  const sinks = sinkPorts.map((p) => startProc('/usr/sbin/smtp-sink', ['-u', 'nobody', `127.0.0.1:${p}`, '1000']));
  const lbPort = await freePort();
  const hpPort = await freePort();
  const admin = await freePort();
  fs.writeFileSync(
    path.join(dir, 'smtplb.yaml'),
    `hostname: bench.test
workers: ${WORKERS}
log: { level: warn }
admin: { listen: 127.0.0.1:${admin}, token: bench-token-1 }
listeners:
  - { name: bench, listen: 127.0.0.1:${lbPort}, mode: tcp, pool: sinks }
pools:
  sinks:
    balance: roundrobin
    health: { check: smtp, interval: 1s, timeout: 2s, rise: 2, fall: 3 }
    servers:
${sinkPorts.map((p, i) => `      - { name: sink${i + 1}, address: 127.0.0.1:${p} }`).join('\n')}
`,
  );
  fs.writeFileSync(
    path.join(dir, 'haproxy.cfg'),
    `global
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend smtp
  bind 127.0.0.1:${hpPort}
  default_backend sinks
backend sinks
  balance roundrobin
  option smtpchk HELO bench.test
${sinkPorts.map((p, i) => `  server sink${i + 1} 127.0.0.1:${p} check inter 1s`).join('\n')}
`,
  );
  const smtplb = spawn(process.execPath, [BIN, 'start', '-c', path.join(dir, 'smtplb.yaml')], { stdio: ['ignore', 'ignore', 'inherit'] });
  const haproxy = startProc('haproxy', ['-db', '-f', path.join(dir, 'haproxy.cfg')]);
  try {
    for (const p of [...sinkPorts, lbPort, hpPort]) await waitFor(`port ${p}`, () => portOpen(p), 15_000);
    await new Promise((r) => setTimeout(r, 1500)); // let workers and health checks settle
    // Warm-up, not measured.
    await smtpSource(lbPort, false).catch(() => 0);
    await smtpSource(hpPort, false).catch(() => 0);
    const results: Record<string, { smtplb: Sample[]; haproxy: Sample[] }> = {};
    for (const reuse of [false, true]) {
      const key = reuse ? 'reuse' : 'conn_per_msg';
      results[key] = { smtplb: [], haproxy: [] };
      for (let round = 0; round < ROUNDS; round++) {
        const order: ['smtplb' | 'haproxy', ChildProcess, number][] =
          round % 2 === 0 ? [['smtplb', smtplb, lbPort], ['haproxy', haproxy, hpPort]] : [['haproxy', haproxy, hpPort], ['smtplb', smtplb, lbPort]];
        for (const [name, proc, port] of order) {
          const s = await measure(proc, port, reuse);
          results[key][name].push(s);
          console.log(`${key.padEnd(13)} round ${round + 1} ${name.padEnd(7)} ${s.msgPerSec.toFixed(0).padStart(6)} msg/s  cpu ${s.cpuSec.toFixed(2)}s  peak rss ${s.rssMb.toFixed(0)} MB`);
        }
      }
    }
    const lines = [
      `# L4 benchmark: smtplb mode tcp vs HAProxy ${spawnSync('haproxy', ['-v'], { encoding: 'utf8' }).stdout.split(' ')[2]} mode tcp`,
      '',
      `${new Date().toISOString()}, ${os.cpus().length} cores, Node ${process.version}, smtplb workers: ${WORKERS}.`,
      `smtp-source -s ${SESSIONS} -m ${MESSAGES} -l 1000 over two smtp-sink upstreams; ${ROUNDS} rounds alternating, medians.`,
      'CPU seconds are the balancer\'s own (all its processes) per 1,000 messages; RSS is peak resident memory.',
      '',
      '| workload | smtplb msg/s | HAProxy msg/s | ratio | smtplb CPU s/1k | HAProxy CPU s/1k | smtplb peak RSS MB | HAProxy peak RSS MB |',
      '|---|---|---|---|---|---|---|---|',
    ];
    const summary: Record<string, unknown> = {};
    for (const [key, r] of Object.entries(results)) {
      const m = (xs: Sample[], f: (s: Sample) => number) => median(xs.map(f));
      const lb = m(r.smtplb, (s) => s.msgPerSec);
      const hp = m(r.haproxy, (s) => s.msgPerSec);
      const row = {
        smtplb_msg_s: Math.round(lb),
        haproxy_msg_s: Math.round(hp),
        ratio: Number((lb / hp).toFixed(2)),
        smtplb_cpu_s_per_1k: Number(((m(r.smtplb, (s) => s.cpuSec) * 1000) / MESSAGES).toFixed(3)),
        haproxy_cpu_s_per_1k: Number(((m(r.haproxy, (s) => s.cpuSec) * 1000) / MESSAGES).toFixed(3)),
        smtplb_rss_mb: Math.round(Math.max(...r.smtplb.map((s) => s.rssMb))),
        haproxy_rss_mb: Math.round(Math.max(...r.haproxy.map((s) => s.rssMb))),
      };
      summary[key] = row;
      lines.push(`| ${key === 'reuse' ? 'connection reuse (-d)' : 'one connection per message'} | ${row.smtplb_msg_s} | ${row.haproxy_msg_s} | **${row.ratio}** | ${row.smtplb_cpu_s_per_1k} | ${row.haproxy_cpu_s_per_1k} | ${row.smtplb_rss_mb} | ${row.haproxy_rss_mb} |`);
    }
    const md = `${lines.join('\n')}\n`;
    console.log(`\n${md}`);
    if (!process.env.BENCH_NO_WRITE) {
      fs.writeFileSync(path.join(ROOT, 'bench/results-l4.md'), md);
      fs.writeFileSync(path.join(ROOT, 'bench/results-l4.json'), `${JSON.stringify({ date: new Date().toISOString(), messages: MESSAGES, sessions: SESSIONS, rounds: ROUNDS, workers: WORKERS, results: summary }, null, 2)}\n`);
    }
  } finally {
    await Promise.all([stop(smtplb), stop(haproxy), ...sinks.map(stop)]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`bench failed: ${(e as Error).message}`);
  process.exit(1);
});
