// `npm run bench` (relay part): end-to-end store-and-forward and cut-through, timed from the
// first message sent until the last one reaches the smtp-sink, side by side in one run:
// smtplb `delivery: queue` against Postfix 3.7 (relayhost to the same sink, default fsync),
// smtplb `delivery: cutthrough` against HAProxy mode tcp, and both against Haraka 3 (outbound
// queue and smtp_forward) when scripts/bench.sh could install it. Rounds alternate; medians.
// Both queues log each delivery as operators run them: smtplb at `info` with its delivery log
// file, Postfix with its maillog file. smtplb queue also runs with `workers: 2` (its own
// process and spool), beside one process; the load generator's and the sink's CPU are
// reported per system, since on a small machine they share the cores with the system measured.
// HAProxy runs a thread per core by default, so cut-through is measured both ways too.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, freePort, portOpen, ROOT, waitFor } from '../test/helpers/peers.js';
import { startPostfix } from '../test/helpers/postfix.js';
import { cpuTicks, descendants, median, peakRssMb, runSmtpSource, startProc, stop, TICK } from './common.js';
import { harakaAvailable, startHaraka } from './haraka.js';

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20000);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 20);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

interface Sample { msgPerSec: number; cpuSec: number; rssMb: number; loadCpuSec: number }

/**
 * smtp-sink dumping each message to a file on tmpfs; `delivered()` counts the files. (Its
 * `-c` counters are block-buffered on a pipe, so they arrive too late to time a run.)
 */
function countingSink(port: number) {
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'smtplb-bench-sink-'));
  fs.chmodSync(dir, 0o777);
  const p = spawn('/usr/sbin/smtp-sink', ['-u', 'nobody', '-d', `${dir}/m.`, `127.0.0.1:${port}`, '2000'], { stdio: 'ignore' });
  return {
    proc: p,
    delivered: () => fs.readdirSync(dir).length,
    clear: () => {
      for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { force: true });
    },
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

function postfixPids(): number[] {
  try {
    const master = Number(fs.readFileSync('/var/spool/postfix/pid/master.pid', 'utf8').trim());
    return descendants(master);
  } catch {
    return [];
  }
}

async function main() {
  const sinkPort = await freePort();
  const sink = countingSink(sinkPort);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtplb-bench-relay-'));
  const qPort = await freePort();
  const ctPort = await freePort();
  const hpPort = await freePort();
  const pfPort = await freePort();
  const w2Port = await freePort();
  const w2CtPort = await freePort();
  const pool = `pools:
  sink:
    health: { check: smtp, interval: 1s }
    reuse: { messages: 1000, seconds: 30s }
    destination_concurrency: 20
    servers: [ { name: sink, address: 127.0.0.1:${sinkPort} } ]
routes: [ { pool: sink } ]
queue: { retry: [1s], max_age: 1h }
`;
  // One process, and `workers: 2` in a process of its own with its own spool: the same
  // listeners (queue and cut-through) and pool.
  const smtplbConfig = (queuePort: number, cutPort: number, workers?: number) => `hostname: bench.test
log: { level: info }
delivery_log: { file: ./delivery.log }
${workers ? `workers: ${workers}\n` : ''}spool: ./spool
listeners:
  - { name: queue, listen: 127.0.0.1:${queuePort}, mode: smtp, relay_networks: [127.0.0.0/8] }
  - { name: cutthrough, listen: 127.0.0.1:${cutPort}, mode: smtp, relay_networks: [127.0.0.0/8], delivery: cutthrough }
${pool}`;
  const w2dir = path.join(dir, 'workers2');
  fs.mkdirSync(w2dir);
  fs.writeFileSync(path.join(w2dir, 'smtplb.yaml'), smtplbConfig(w2Port, w2CtPort, 2));
  fs.writeFileSync(path.join(dir, 'smtplb.yaml'), smtplbConfig(qPort, ctPort));
  fs.writeFileSync(
    path.join(dir, 'haproxy.cfg'),
    `global\n  maxconn 8000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\nfrontend smtp\n  bind 127.0.0.1:${hpPort}\n  default_backend sink\nbackend sink\n  option smtpchk HELO bench.test\n  server sink 127.0.0.1:${sinkPort} check inter 1s\n`,
  );
  console.log('starting smtp-sink, smtplb, HAProxy, Postfix');
  const smtplb = spawn(process.execPath, [BIN, 'start', '-c', path.join(dir, 'smtplb.yaml')], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  const smtplb2 = spawn(process.execPath, [BIN, 'start', '-c', path.join(w2dir, 'smtplb.yaml')], { cwd: w2dir, stdio: ['ignore', 'ignore', 'inherit'] });
  const haproxy = startProc('haproxy', ['-db', '-f', path.join(dir, 'haproxy.cfg')]);
  const postfix = await startPostfix([{ port: pfPort }], { default_transport: 'smtp', relay_transport: 'smtp', relayhost: `[127.0.0.1]:${sinkPort}`, maillog_file: '/var/log/postfix-smtplb-bench.log' });
  const withHaraka = harakaAvailable();
  const hkQPort = await freePort();
  const hkFPort = await freePort();
  const haraka = withHaraka ? [startHaraka('queue', hkQPort, sinkPort), startHaraka('forward', hkFPort, sinkPort)] : [];
  try {
    for (const p of [sinkPort, qPort, w2Port, w2CtPort, ctPort, hpPort, pfPort, ...(withHaraka ? [hkQPort, hkFPort] : [])]) await waitFor(`port ${p}`, () => portOpen(p), 15_000);
    await new Promise((r) => setTimeout(r, 1500));
    const systems: { name: string; port: number; pids: () => number[] }[] = [
      { name: 'postfix queue', port: pfPort, pids: postfixPids },
      { name: 'smtplb queue', port: qPort, pids: () => descendants(smtplb.pid!) },
      { name: 'smtplb queue (2 workers)', port: w2Port, pids: () => descendants(smtplb2.pid!) },
      { name: 'smtplb cutthrough', port: ctPort, pids: () => descendants(smtplb.pid!) },
      { name: 'smtplb cutthrough (2 workers)', port: w2CtPort, pids: () => descendants(smtplb2.pid!) },
      { name: 'haproxy tcp', port: hpPort, pids: () => descendants(haproxy.pid!) },
      ...(withHaraka
        ? [
            { name: 'haraka queue', port: hkQPort, pids: () => descendants(haraka[0].proc.pid!) },
            { name: 'haraka forward', port: hkFPort, pids: () => descendants(haraka[1].proc.pid!) },
          ]
        : []),
    ];
    // BENCH_ONLY=name,name: a subset, for a quick look (the results file wants them all).
    const only = process.env.BENCH_ONLY?.split(',').map((x) => x.trim());
    if (only) systems.splice(0, systems.length, ...systems.filter((s) => only.includes(s.name)));
    const measure = async (s: (typeof systems)[number], reuse: boolean): Promise<Sample> => {
      sink.clear();
      // Dirty pages the previous system left (queue files, logs) are written back now, not
      // dispatched from inside the next system's fsyncs and charged to its CPU.
      spawnSync('sync');
      await new Promise((r) => setTimeout(r, 500));
      const before = sink.delivered();
      const pidsBefore = s.pids();
      const cpu0 = cpuTicks(pidsBefore);
      const sink0 = cpuTicks([sink.proc.pid!]);
      let sourceCpu = 0;
      const t0 = process.hrtime.bigint();
      await runSmtpSource(s.port, { messages: MESSAGES, sessions: SESSIONS, reuse, cpu: (c) => (sourceCpu = c) });
      await waitFor(`${s.name}: all messages at the sink`, () => sink.delivered() - before >= MESSAGES, 600_000, 50);
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      const pids = [...new Set([...pidsBefore, ...s.pids()])];
      return { msgPerSec: MESSAGES / secs, cpuSec: (cpuTicks(pids) - cpu0) / TICK, rssMb: peakRssMb(pids), loadCpuSec: sourceCpu + (cpuTicks([sink.proc.pid!]) - sink0) / TICK };
    };
    // Warm-up (JIT, caches), not measured.
    for (const s of systems) {
      console.log(`warm-up: ${s.name}`);
      await runSmtpSource(s.port, { messages: 500, sessions: SESSIONS, reuse: false });
    }
    await new Promise((r) => setTimeout(r, 2000));
    const results: Record<string, Record<string, Sample[]>> = {};
    for (const reuse of [false, true]) {
      const key = reuse ? 'reuse' : 'conn_per_msg';
      results[key] = Object.fromEntries(systems.map((s) => [s.name, []]));
      for (let round = 0; round < ROUNDS; round++) {
        const order = round % 2 === 0 ? systems : [...systems].reverse();
        for (const s of order) {
          const r = await measure(s, reuse);
          results[key][s.name].push(r);
          console.log(`${key.padEnd(13)} round ${round + 1} ${s.name.padEnd(24)} ${r.msgPerSec.toFixed(0).padStart(6)} msg/s  cpu ${r.cpuSec.toFixed(2)}s  source+sink cpu ${r.loadCpuSec.toFixed(2)}s`);
        }
      }
    }
    const med = (xs: Sample[], f: (s: Sample) => number) => median(xs.map(f));
    const lines = [
      '# Relay benchmark: smtplb mode smtp vs Postfix 3.7 (store-and-forward) and HAProxy 2.6 (cut-through)',
      '',
      `${new Date().toISOString()}, ${machine()}, Node ${process.version}.`,
      `smtp-source -s ${SESSIONS} -m ${MESSAGES} -l 1000 into each, timed until the last message reaches one smtp-sink; ${ROUNDS} rounds alternating, medians.`,
      'smtplb queue and Postfix both fsync before 250, both with a destination concurrency of 20, and both log each delivery: smtplb at `info` with its delivery log file, Postfix with its maillog file. CPU seconds per 1,000 messages are the system\'s own processes (Postfix: master and all its children; smtplb with 2 workers: the primary and both workers).',
      '"source+sink CPU s/1k" is what the load generator (smtp-source) and the receiver (smtp-sink) used meanwhile, on the same cores: the share of the machine left to the system measured is the rest.',
      '',
      '| workload | system | msg/s | CPU s/1k | source+sink CPU s/1k | peak RSS MB |',
      '|---|---|---|---|---|---|',
    ];
    const summary: Record<string, Record<string, unknown>> = {};
    for (const [key, bySystem] of Object.entries(results)) {
      summary[key] = {};
      for (const [name, xs] of Object.entries(bySystem)) {
        const row = { msg_s: Math.round(med(xs, (s) => s.msgPerSec)), cpu_s_per_1k: Number(((med(xs, (s) => s.cpuSec) * 1000) / MESSAGES).toFixed(3)), load_cpu_s_per_1k: Number(((med(xs, (s) => s.loadCpuSec) * 1000) / MESSAGES).toFixed(3)), rss_mb: Math.round(Math.max(...xs.map((s) => s.rssMb))) };
        summary[key][name] = row;
        lines.push(`| ${key === 'reuse' ? 'connection reuse (-d)' : 'one connection per message'} | ${name} | ${row.msg_s} | ${row.cpu_s_per_1k} | ${row.load_cpu_s_per_1k} | ${row.rss_mb} |`);
      }
      // Paired: each round's ratio of the two systems (run one after the other, so a slow
      // spell of this shared host weighs on both), then the median over the rounds.
      const paired = (a: Sample[], b: Sample[], f: (s: Sample) => number) => median(a.map((x, i) => f(x) / f(b[i])));
      const ratio = (label: string, a: string, b: string) => {
        const [xa, xb] = [bySystem[a], bySystem[b]];
        if (!xa?.length || !xb?.length) return;
        const rounds = (f: (s: Sample) => number) => xa.map((x, i) => (f(x) / f(xb[i])).toFixed(2)).join(', ');
        const [rate, cpu] = [paired(xa, xb, (x) => x.msgPerSec), paired(xa, xb, (x) => x.cpuSec)];
        lines.push(`| | **${label}** | **${rate.toFixed(2)}** (${rounds((x) => x.msgPerSec)}) | **${cpu.toFixed(2)}** (${rounds((x) => x.cpuSec)}) | | |`);
        summary[key][`${a} / ${b}`] = { msg_s: Number(rate.toFixed(3)), cpu_s_per_1k: Number(cpu.toFixed(3)), per_round_cpu: xa.map((x, i) => Number((x.cpuSec / xb[i].cpuSec).toFixed(3))) };
      };
      ratio('smtplb queue / Postfix', 'smtplb queue', 'postfix queue');
      ratio('smtplb queue (2 workers) / Postfix', 'smtplb queue (2 workers)', 'postfix queue');
      ratio('smtplb queue (2 workers) / 1 process', 'smtplb queue (2 workers)', 'smtplb queue');
      ratio('smtplb cutthrough / HAProxy', 'smtplb cutthrough', 'haproxy tcp');
      ratio('smtplb cutthrough (2 workers) / HAProxy', 'smtplb cutthrough (2 workers)', 'haproxy tcp');
      if (withHaraka) {
        ratio('smtplb queue / Haraka queue', 'smtplb queue', 'haraka queue');
        ratio('smtplb cutthrough / Haraka smtp_forward', 'smtplb cutthrough', 'haraka forward');
      }
    }
    lines.push(
      '',
      'The ratio rows give msg/s and CPU s/1k as ratios (CPU: below 1 is less CPU per message than the other system), each the median over the rounds of that round\'s ratio (the rounds\' own ratios in brackets): the two systems ran one after the other, so a slow spell of this shared host weighs on both. Every round starts after `sync`, so no system pays for writing back what the previous one left.',
      '',
      withHaraka
        ? "Haraka 3.3.4: `haraka queue` is its outbound queue (which writes queue files without fsync, so it promises less than smtplb and Postfix); `haraka forward` is queue/smtp_forward. Both run one process (smtp.ini nodes unset)."
        : 'Haraka was not measured in this run (scripts/bench.sh could not install it).',
    );
    const md = `${lines.join('\n')}\n`;
    console.log(`\n${md}`);
    if (!process.env.BENCH_NO_WRITE) {
      fs.writeFileSync(path.join(ROOT, 'bench/results-relay.md'), md);
      fs.writeFileSync(path.join(ROOT, 'bench/results-relay.json'), `${JSON.stringify({ date: new Date().toISOString(), messages: MESSAGES, sessions: SESSIONS, rounds: ROUNDS, results: summary }, null, 2)}\n`);
    }
  } finally {
    postfix.stop();
    await Promise.all([stop(smtplb as ChildProcess), stop(smtplb2 as ChildProcess), stop(haproxy), stop(sink.proc), ...haraka.map((h) => stop(h.proc))]);
    fs.rmSync(dir, { recursive: true, force: true });
    for (const h of haraka) fs.rmSync(h.dir, { recursive: true, force: true });
    sink.remove();
  }
}

/** The machine, named: CPU model and count, kernel, the spool's filesystem. */
function machine(): string {
  const cpus = os.cpus();
  return `${cpus.length} CPUs (${cpus[0]?.model.trim() ?? 'unknown'}), Linux ${os.release()}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`;
}

main().catch((e) => {
  console.error(`bench failed: ${(e as Error).message}`);
  process.exit(1);
});
