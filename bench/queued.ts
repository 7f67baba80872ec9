// `npm run bench` (queue-depth part): memory with a deep queue. The upstream is down, so
// every message stays queued; BENCH_QUEUED messages (default 100,000) go in through
// smtp-source, and we record smtplb's peak RSS, the spool's size, and how long the admin API
// takes to answer status and a filtered queue listing with that queue.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, freePort, portOpen, ROOT, waitFor } from '../test/helpers/peers.js';
import { peakRssMb, runSmtpSource, stop } from './common.js';

const QUEUED = Number(process.env.BENCH_QUEUED ?? 100_000);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 20);

async function timed(url: string, token: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const r = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  await r.text();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtplb-bench-queued-'));
  const port = await freePort();
  const admin = await freePort();
  const dead = await freePort(); // nothing listens here: the upstream is down
  fs.writeFileSync(
    path.join(dir, 'smtplb.yaml'),
    `hostname: bench.test
log: { level: warn }
admin: { listen: 127.0.0.1:${admin}, token: bench-token-1 }
spool: ./spool
listeners:
  - { name: queue, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  down: { health: { check: tcp, interval: 1s, fall: 1 }, servers: [ { name: gone, address: 127.0.0.1:${dead} } ] }
routes: [ { pool: down } ]
queue: { retry: [1h], max_age: 5d }
`,
  );
  const smtplb: ChildProcess = spawn(process.execPath, [BIN, 'start', '-c', path.join(dir, 'smtplb.yaml')], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    await waitFor('smtplb', () => portOpen(port), 15_000);
    console.log(`queueing ${QUEUED} messages with the upstream down`);
    const secs = await runSmtpSource(port, { messages: QUEUED, sessions: SESSIONS, reuse: true });
    await new Promise((r) => setTimeout(r, 3000));
    const rss = peakRssMb([smtplb.pid!]);
    const statusMs = await timed(`http://127.0.0.1:${admin}/api/status`, 'bench-token-1');
    const listMs = await timed(`http://127.0.0.1:${admin}/api/queue?domain=dest.test&older_than=1s`, 'bench-token-1');
    const metricsMs = await timed(`http://127.0.0.1:${admin}/metrics`, '');
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    const queued = Number(/^smtplb_queue_state_recipients\{state="queued"\} (\d+)/m.exec(metrics)?.[1] ?? 0);
    const du = spawnSync('du', ['-sm', path.join(dir, 'spool')], { encoding: 'utf8' }).stdout.split('\t')[0];
    const md = `# Deep queue: ${QUEUED.toLocaleString('en')} messages queued, upstream down

${new Date().toISOString()}, ${os.cpus().length} cores, Node ${process.version}. smtp-source -s ${SESSIONS} -d -l 1000.

| measure | value |
|---|---|
| messages queued (per /metrics) | ${queued} |
| injection rate | ${Math.round(QUEUED / secs)} msg/s |
| smtplb peak RSS | ${Math.round(rss)} MB (target ≤ 300 MB) |
| spool on disk | ${du} MB |
| GET /api/status | ${statusMs.toFixed(0)} ms |
| GET /api/queue?domain=…&older_than=1s (first 1,000) | ${listMs.toFixed(0)} ms |
| GET /metrics | ${metricsMs.toFixed(0)} ms |
`;
    console.log(`\n${md}`);
    if (!process.env.BENCH_NO_WRITE) fs.writeFileSync(path.join(ROOT, 'bench/results-queued.md'), md);
  } finally {
    await stop(smtplb);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`bench failed: ${(e as Error).message}`);
  process.exit(1);
});
