// `npm run bench` (issue 24 part): what the suppression list and the events cost.
// 1. RCPT latency with an empty list and with BENCH_SUPPRESSIONS entries (default 10 million),
//    one client, one RCPT at a time, suppressed and not-suppressed addresses mixed.
// 2. CPU seconds per 1,000 messages and msg/s of a queueing relay with events off and with a
//    webhook (a local node:http receiver answering 200) on, BENCH_ROUNDS rounds each, medians.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { BIN, freePort, portOpen, ROOT, session, waitFor } from '../test/helpers/peers.js';
import { cpuTicks, descendants, median, runSmtpSource, SMTP_SINK, startQueueRelay, stop, TICK } from './common.js';
import { SuppressionList } from '../src/suppression/list.js';

const ENTRIES = Number(process.env.BENCH_SUPPRESSIONS ?? 10_000_000);
const RCPTS = Number(process.env.BENCH_RCPTS ?? 4000);
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 5000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

async function rcptLatency(entries: number): Promise<{ build: number; free: number[]; suppressed: number[]; mb: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-suppression-'));
  const spool = path.join(dir, 'spool');
  const t0 = Date.now();
  const list = new SuppressionList(spool);
  const now = Date.now();
  for (let i = 0; i < entries; i += 50_000) {
    const batch = [];
    for (let j = i; j < Math.min(entries, i + 50_000); j++) batch.push({ address: `u${j}@d${j % 1000}.test`, scope: 'global', reason: 'bench', class: null, source: 'import', created: now, expires: null });
    list.add(batch);
  }
  list.close();
  const build = (Date.now() - t0) / 1000;
  const mb = fs.statSync(path.join(spool, 'suppressions.db')).size / 1048576;
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'c.yaml'), `hostname: bench.test
log: { level: warn }
spool: ./spool
listeners:
  - { name: in, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8], max_recipients: 1000 }
pools:
  out: { servers: [ { name: s, address: 127.0.0.1:${await freePort()} } ] }
routes: [ { pool: out } ]
suppression: { scope: global }
`);
  const p: ChildProcess = spawn(process.execPath, [BIN, 'start', '-c', 'c.yaml'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  const free: number[] = [];
  const suppressed: number[] = [];
  try {
    await waitFor('smtplb', () => portOpen(port), 30_000);
    const s = session(port);
    await s.reply();
    await s.send('EHLO bench.test');
    for (let i = 0; i < RCPTS; i++) {
      if (i % 900 === 0) {
        await s.send('RSET');
        await s.send('MAIL FROM:<bench@bench.test>');
      }
      const hit = entries > 0 && i % 2 === 1;
      const n = Math.floor(Math.random() * Math.max(entries, 1));
      const addr = hit ? `u${n}@d${n % 1000}.test` : `x${i}@d${i % 1000}.test`;
      const t = process.hrtime.bigint();
      const r = await s.send(`RCPT TO:<${addr}>`);
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      if (i < 200) continue; // warm-up
      if (hit !== r.startsWith('550')) throw new Error(`${addr}: ${r}`);
      (hit ? suppressed : free).push(ms);
    }
    s.close();
  } finally {
    await stop(p);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return { build, free, suppressed, mb };
}

const pct = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))] ?? NaN;

async function eventsCost(webhook: boolean, hookPort: number): Promise<{ rate: number; cpuPer1k: number }> {
  const sinkPort = await freePort();
  const sink = spawn(SMTP_SINK, ['-u', 'nobody', '-c', `127.0.0.1:${sinkPort}`, '1000'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  sink.stdout!.on('data', (c) => (out += c));
  await waitFor('smtp-sink', () => portOpen(sinkPort), 10_000);
  const extra = webhook ? `events: { webhooks: [ { url: "http://127.0.0.1:${hookPort}/", secret: bench-secret-0123456789 } ] }\n` : '';
  const relay = await startQueueRelay(ROOT, webhook ? 'events-on' : 'events-off', sinkPort, { extra });
  try {
    await waitFor('smtplb', () => portOpen(relay.port), 15_000);
    const pids = () => [relay.p.pid!, ...descendants(relay.p.pid!)];
    const c0 = cpuTicks(pids());
    const t0 = Date.now();
    await runSmtpSource(relay.port, { messages: MESSAGES, sessions: 20, reuse: true });
    // Delivered: smtp-sink -c prints its running count on stdout.
    await waitFor('all delivered', () => Number(/(\d+)\s*$/.exec(out.trim())?.[1] ?? 0) >= MESSAGES, 120_000, 100);
    const secs = (Date.now() - t0) / 1000;
    const cpu = (cpuTicks(pids()) - c0) / TICK;
    return { rate: MESSAGES / secs, cpuPer1k: (cpu / MESSAGES) * 1000 };
  } finally {
    await stop(relay.p);
    await stop(sink);
  }
}

async function main() {
  const lines: string[] = [];
  const hostInfo = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`;
  console.log(`RCPT latency, ${RCPTS} RCPTs, list empty and ${ENTRIES.toLocaleString('en')} entries`);
  // BENCH_PARTS=events skips the lookups (building 10 million entries takes about a minute).
  const parts = process.env.BENCH_PARTS ?? 'rcpt,events';
  const none = { build: 0, free: [], suppressed: [], mb: 0 };
  const empty = parts.includes('rcpt') ? await rcptLatency(0) : none;
  const full = parts.includes('rcpt') ? await rcptLatency(ENTRIES) : none;
  lines.push(`| entries | RCPT p50 (not suppressed) | p99 | RCPT p50 (suppressed) | p99 | list file | build |`, '|---|---|---|---|---|---|---|');
  lines.push(`| 0 | ${pct(empty.free, 0.5).toFixed(3)} ms | ${pct(empty.free, 0.99).toFixed(3)} ms | - | - | ${empty.mb.toFixed(1)} MB | - |`);
  lines.push(`| ${ENTRIES.toLocaleString('en')} | ${pct(full.free, 0.5).toFixed(3)} ms | ${pct(full.free, 0.99).toFixed(3)} ms | ${pct(full.suppressed, 0.5).toFixed(3)} ms | ${pct(full.suppressed, 0.99).toFixed(3)} ms | ${full.mb.toFixed(0)} MB | ${full.build.toFixed(0)} s |`);
  console.log(lines.join('\n'));
  const hookPort = await freePort();
  let received = 0;
  const hook = http.createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => {
      received++;
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => hook.listen(hookPort, '127.0.0.1', () => r()));
  const off: { rate: number; cpuPer1k: number }[] = [];
  const on: { rate: number; cpuPer1k: number }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    off.push(await eventsCost(false, hookPort));
    on.push(await eventsCost(true, hookPort));
    console.log(`round ${i + 1}: off ${off[i].rate.toFixed(0)} msg/s ${off[i].cpuPer1k.toFixed(3)} CPU s/1k; on ${on[i].rate.toFixed(0)} msg/s ${on[i].cpuPer1k.toFixed(3)} CPU s/1k`);
  }
  hook.close();
  const m = (xs: { rate: number; cpuPer1k: number }[]) => ({ rate: median(xs.map((x) => x.rate)), cpu: median(xs.map((x) => x.cpuPer1k)) });
  const [mo, mn] = [m(off), m(on)];
  const md = `# After the attempt: suppression lookups and events (issue 24)

${new Date().toISOString()}, ${hostInfo}. \`node dist/bench/after-attempt.js\` (BENCH_SUPPRESSIONS=${ENTRIES}, BENCH_RCPTS=${RCPTS}, BENCH_MESSAGES=${MESSAGES}, BENCH_ROUNDS=${ROUNDS}).

## RCPT latency (one client, one RCPT at a time, round trip on loopback)

${lines.join('\n')}

## Events: a queueing relay, ${MESSAGES} 1 KB messages by smtp-source (20 sessions) to smtp-sink, medians of ${ROUNDS} rounds

| events | msg/s | CPU s per 1,000 messages (smtplb) |
|---|---|---|
| off | ${mo.rate.toFixed(0)} | ${mo.cpu.toFixed(3)} |
| webhook (signed, batches of 100) | ${mn.rate.toFixed(0)} | ${mn.cpu.toFixed(3)} |
| ratio on/off | ${(mn.rate / mo.rate).toFixed(2)} | ${(mn.cpu / mo.cpu).toFixed(2)} |

Webhook POSTs received over all rounds: ${received}.
`;
  console.log(`\n${md}`);
  if (!process.env.BENCH_NO_WRITE) fs.writeFileSync(path.join(ROOT, 'bench/results-after-attempt.md'), md);
}

main().catch((e) => {
  console.error(`bench failed: ${(e as Error).message}`);
  process.exit(1);
});
