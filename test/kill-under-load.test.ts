// kill -9 under load, three times over one spool (SMTPLB_KILL_RUNS=10 and the nightly soak run ten): clients injecting while the queue manager
// delivers to two real smtp-sinks. Every message a client saw 250 for is delivered; a
// duplicate can only be a delivery that was in flight at a kill (the upstream took it, the
// outcome was not yet committed), so there are at most (destination concurrency) per kill,
// and the test counts them. Run with one process, and with two workers (each with its shard of
// the spool) killed together as a crashed machine would be, where every third start has one
// worker only, so a crashed shard is also merged into the other before anything delivers.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { sendOne } from '../src/cli/send.js';
import { BIN, freePort, onStop, portOpen, sleep, startSink, stopAll, tmpDir, waitFor } from './helpers/peers.js';

after(stopAll);

const RUNS = Number(process.env.SMTPLB_KILL_RUNS ?? 3);
// A process killed by a signal keeps exitCode null: its signalCode says it is gone.
const exited = (p: ChildProcess) => new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(null) : p.once('exit', r)));
const CONCURRENCY = 10;

for (const WORKERS of [1, 2])
test(`kill -9 under load, ${RUNS} runs on one spool, workers: ${WORKERS}: nothing acknowledged lost, duplicates only from deliveries in flight, counted`, async () => {
  const sinks = [await startSink(), await startSink()];
  const port = await freePort();
  const dir = tmpDir('kill9-');
  const file = path.join(dir, 'smtplb.yaml');
  const config = (workers: number) => fs.writeFileSync(
    file,
    `hostname: gw.test
log: { level: warn }
workers: ${workers}
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  relays:
    balance: roundrobin
    destination_concurrency: ${CONCURRENCY}
    servers:
${sinks.map((s, i) => `      - { name: s${i + 1}, address: 127.0.0.1:${s.port} }`).join('\n')}
routes:
  - { pool: relays }
queue: { retry: [1s], max_age: 1h }
`,
  );
  // Its own process group: a kill takes the primary and its workers at once.
  const kill = (p: ChildProcess, sig: NodeJS.Signals) => {
    try {
      process.kill(-p.pid!, sig);
    } catch {
      /* gone */
    }
  };
  const start = async (workers = WORKERS): Promise<ChildProcess> => {
    config(workers);
    const p = spawn(process.execPath, [BIN, 'start', '-c', file], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let err = '';
    p.stderr!.on('data', (c) => (err += c));
    onStop(() => kill(p, 'SIGKILL'));
    await waitFor(`smtplb up\n${err}`, async () => {
      if (p.exitCode !== null) throw new Error(`exited ${p.exitCode}: ${err}`);
      return portOpen(port);
    }, 15_000);
    return p;
  };

  const acked = new Set<string>();
  let n = 0;
  let shardsSeen = 0;
  for (let run = 0; run < RUNS; run++) {
    const proc = await start(WORKERS > 1 && run % 3 === 2 ? 1 : WORKERS);
    let stop = false;
    const worker = async () => {
      while (!stop) {
        const i = n++;
        const r = await sendOne({ server: `127.0.0.1:${port}`, from: 'app@client.test', to: [`u${i}@dest${i % 7}.test`], headers: [], subject: `run ${run}`, body: 'kill -9 under load', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true }, i);
        if (r.ok) acked.add(r.id);
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    // Long enough for the queue manager to be delivering when the kill comes.
    await sleep(700 + Math.floor(Math.random() * 800));
    kill(proc, 'SIGKILL');
    stop = true;
    await Promise.allSettled(workers);

    await exited(proc);
    // Wait for the whole group, workers included, before the next start takes the spool.
    await waitFor('the killed process group gone', () => spawnSync('pgrep', ['-g', String(proc.pid)]).status !== 0, 10_000, 50);
    if (fs.existsSync(path.join(dir, 'spool', 'shard-1', 'queue.db'))) shardsSeen++;
  }
  if (WORKERS > 1) assert.ok(shardsSeen > 0, 'the second worker spooled into its own shard');
  // The last start delivers whatever is left.
  const last = await start();
  await waitFor('every acknowledged message delivered', () => sinks[0].count() + sinks[1].count() >= acked.size, 60_000, 200);
  await sleep(2000);
  await Promise.all(sinks.map((s) => s.settle(0)));
  const delivered = new Map<string, number>();
  for (const s of sinks)
    for (const m of s.messages()) {
      const id = /^Message-ID: (.+)$/im.exec(m)?.[1]?.trim() ?? '';
      delivered.set(id, (delivered.get(id) ?? 0) + 1);
    }
  const missing = [...acked].filter((id) => !delivered.has(id));
  assert.deepEqual(missing, [], `${missing.length} of ${acked.size} acknowledged messages lost`);
  const dups = [...delivered].filter(([, c]) => c > 1).reduce((a, [, c]) => a + c - 1, 0);
  // The bound allows each worker the whole destination_concurrency (it takes ceil(limit / workers)).
  assert.ok(dups <= RUNS * CONCURRENCY * WORKERS, `${dups} duplicates: more than the ${RUNS} × ${CONCURRENCY} × ${WORKERS} deliveries that can be in flight at the kills`);
  console.log(`kill -9 ×${RUNS}, workers: ${WORKERS}: ${acked.size} acknowledged, all delivered; ${delivered.size - acked.size} accepted but never acknowledged also delivered; ${dups} duplicate deliveries (in flight at a kill)`);
  kill(last, 'SIGTERM');
  await exited(last);
});
