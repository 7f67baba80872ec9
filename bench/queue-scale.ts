// `npm run bench` (queue-manager part, issue #9): how the queue manager behaves as the queue
// grows from 10,000 to 1,000,000 recipients. For each size N a spool is filled BEFORE smtplb
// starts: queue.db rows written with better-sqlite3 (the schema made by the Spool itself, rows
// as Spool.accept writes them, 50,000 messages per transaction) and one 1 KB message file per
// message, hard links of a few real files (ext4 allows 65,000 links per inode). smtplb then
// runs as a child process (`node bin/smtplb.js start -c FILE`) against Postfix smtp-sink
// upstreams on loopback, twice per round:
//
//  held:       the N recipients are for backlog.test on pool `main`, whose only server is an
//              smtp-sink that answers each DATA after 1 s (-w 1), with `shaping: backlog.test:
//              { concurrency: 1 }`: the backlog stays. Measured: start-up time, RSS after
//              start-up and at the end, /api/status and /metrics latency, and the time to
//              first attempt for new destinations: 100 messages one by one to new.test on
//              another pool (client's 250 → the message at that pool's smtp-sink, and the
//              delivery log's queue_delay_ms), and 100 to samepool.test on the backlog's own
//              (slow) pool, one every 100 ms (delivery log's queue_delay_ms).
//  throughput: the same N recipients with pool `main` pointing at a fast smtp-sink
//              (destination_concurrency 20, no shaping): messages per second over the first
//              20,000 deliveries (counted at the sink, from the moment the admin port answers)
//              and the smtplb process's CPU seconds (utime+stime) per 1,000 messages.
//
// Before every run the spool is topped up to exactly N queued. Rounds alternate the order of
// sizes; the tables give medians over rounds. Env knobs: BENCH_SIZES (default
// 10000,100000,1000000), BENCH_ROUNDS (3), BENCH_WINDOW (20000 deliveries), BENCH_PROBES (100
// messages per new-destination probe), BENCH_REQUESTS (50 per admin endpoint), BENCH_NO_WRITE.
import Database from 'better-sqlite3';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { idAt, Spool } from '../src/spool/spool.js';
import { BIN, freePort, portOpen, ROOT, waitFor } from '../test/helpers/peers.js';
import { cpuTicks, median, stop, TICK } from './common.js';
import { SmtpConn } from './smtp-client.js';

const SIZES = (process.env.BENCH_SIZES ?? '10000,100000,1000000').split(',').map((s) => Number(s.trim())).filter((n) => n > 0);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 20_000);
const PROBES = Number(process.env.BENCH_PROBES ?? 100);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 50);
/** A held run with an empty spool in every round, as the reference (BENCH_REFERENCE=0: none). */
const REFERENCE = process.env.BENCH_REFERENCE !== '0';
/**
 * The backlog spread over this many destinations (d0.backlog.test …), each held the same way;
 * with more than one, the throughput run is skipped (20 connections per destination).
 */
const DESTINATIONS = Number(process.env.BENCH_DESTINATIONS ?? 1);
/** How the backlog is held: `shaping` (concurrency 1 on a sink answering DATA after BENCH_SLOW_DELAY s) or `suspension`. */
const HOLD = process.env.BENCH_HOLD === 'suspension' ? 'suspension' : 'shaping';
const SLOW_DELAY = Number(process.env.BENCH_SLOW_DELAY ?? 1);
/** Throughput: wait this long after the admin port answers before the window starts (start-up work done by then). */
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 0);
/** BENCH_HELD=0: throughput runs only. */
const HELD_RUNS = process.env.BENCH_HELD !== '0';
/** Extra node options for smtplb (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"). */
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
/** Messages per fill transaction. */
const BATCH = 50_000;
/** Hard links per real message file (ext4: at most 65,000 links to one inode). */
const LINKS_PER_FILE = 60_000;
const TOKEN = 'bench-token-queue-scale';
const BACKLOG = 'backlog.test';
const SHM = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
/** The p-th percentile, nearest rank (p99 of 50 samples is their maximum). */
function pct(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
}

function body(to: string, i: number): Buffer {
  const head = [`From: bench@source.test`, `To: ${to}`, `Subject: queue-scale bench ${i}`, `Message-ID: <qs-${i}-${Date.now()}@source.test>`, `Date: ${new Date().toUTCString()}`, 'MIME-Version: 1.0', 'Content-Type: text/plain', '', ''].join('\r\n');
  const line = 'The quick brown fox jumps over the lazy dog, queue-scale benchmark body line.\r\n';
  let text = head;
  while (text.length < 1000) text += line;
  return Buffer.from(text);
}

// ---------------------------------------------------------------------------------------------
// The pre-filled spool.

/** One spool directory, filled and topped up without smtplb running. */
class Backlog {
  readonly spool: string;
  private msgDir: string;
  private dirs = new Set<string>();
  private src?: { file: string; links: number };
  private sources = 0;
  private readonly fileBody = body(`rcpt@${BACKLOG}`, 0);
  /** Written by fills so far (for unique rcpt addresses). */
  private made = 0;

  constructor(readonly dir: string) {
    this.spool = path.join(dir, 'spool');
    this.msgDir = path.join(this.spool, 'messages');
    // The Spool makes its schema (and its later column additions) itself.
    new Spool(this.spool).close();
  }

  /** Opening the Spool as smtplb does at start (schema, lease reset, counters from one GROUP BY): ms and queued count. */
  open(): { ms: number; queued: number } {
    const t0 = nowMs();
    const s = new Spool(this.spool);
    const ms = nowMs() - t0;
    const queued = s.counts().find((c) => c.state === 'queued')?.n ?? 0;
    s.close();
    return { ms, queued };
  }

  /**
   * The start-up sweep for message files the index does not know (Spool.sweepOrphans, which
   * smtplb starts without waiting for it), run here in-process: how long it takes, and the
   * longest the event loop was held meanwhile. Null when the Spool has no such sweep.
   */
  async sweep(): Promise<{ ms: number; maxSliceMs: number; removed: number } | null> {
    const s = new Spool(this.spool) as Spool & { sweepOrphans?: (startedAt?: number) => Promise<number> };
    try {
      if (typeof s.sweepOrphans !== 'function') return null;
      const h = monitorEventLoopDelay({ resolution: 1 });
      h.enable();
      const t0 = nowMs();
      const removed = await s.sweepOrphans(Date.now());
      const ms = nowMs() - t0;
      h.disable();
      return { ms, maxSliceMs: h.max / 1e6, removed };
    } finally {
      s.close();
    }
  }

  private linkSource(): string {
    if (!this.src || this.src.links >= LINKS_PER_FILE) {
      const file = path.join(this.dir, `source-${this.sources++}.eml`);
      fs.writeFileSync(file, this.fileBody);
      this.src = { file, links: 0 };
    }
    this.src.links++;
    return this.src.file;
  }

  /** Add `n` queued messages (one recipient each) for backlog.test on pool main. Returns ms taken. */
  add(n: number): number {
    if (n <= 0) return 0;
    const t0 = nowMs();
    const db = new Database(path.join(this.spool, 'queue.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = OFF'); // the fill is not measured; smtplb syncs its own writes
    const insMsg = db.prepare(`INSERT INTO messages (id, created, sender, size, message_id, listener, user, class, client, file, dsn_of) VALUES (?, ?, 'bench@source.test', ?, NULL, 'queue', NULL, NULL, '127.0.0.1', ?, NULL)`);
    const insRcpt = db.prepare(`INSERT INTO recipients (msg, rcpt, domain, pool, route, state, attempts, next_at, updated, leased) VALUES (?, ?, ?, 'main', 1, 'queued', 0, ?, ?, 0)`);
    const insEvent = db.prepare(`INSERT INTO events (msg, at, rcpt, kind, server, code, text) VALUES (?, ?, NULL, 'accepted', NULL, 250, ?)`);
    const size = this.fileBody.length;
    // Ids as Spool.newId() makes them: 9 base-36 characters of ms, a 6-character salt, a
    // 3-character sequence (0-4095). A fresh salt per fill keeps them unique across top-ups;
    // the ms advance every 4,096 ids, ending now (all due at once, none in the future).
    const salt = randomBytes(3).toString('hex').toUpperCase();
    const base = Date.now() - Math.ceil(n / 4096) - 1;
    const updated = Date.now();
    const tx = db.transaction((rows: { id: string; created: number; file: string }[]) => {
      for (const r of rows) {
        insMsg.run(r.id, r.created, size, r.file);
        const domain = backlogDomain(this.made);
        insRcpt.run(r.id, `u${this.made++}@${domain}`, domain, r.created, updated);
        insEvent.run(r.id, r.created, `from 127.0.0.1 via queue, 1 recipient(s), ${size} bytes`);
      }
    });
    for (let from = 0; from < n; from += BATCH) {
      const rows: { id: string; created: number; file: string }[] = [];
      for (let i = from; i < Math.min(n, from + BATCH); i++) {
        const created = base + Math.floor(i / 4096);
        const id = `${idAt(created)}${salt}${(i % 4096).toString(36).toUpperCase().padStart(3, '0')}`;
        const sub = path.join(this.msgDir, id.slice(-2));
        if (!this.dirs.has(sub)) {
          fs.mkdirSync(sub, { recursive: true });
          this.dirs.add(sub);
        }
        const file = path.join(sub, id);
        // The file exists before the index says so, as in the Spool.
        fs.linkSync(this.linkSource(), file);
        rows.push({ id, created, file });
      }
      tx(rows);
    }
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
    return nowMs() - t0;
  }

  /** Top up to exactly `n` queued; returns what was added. */
  topUp(n: number): { added: number; openMs: number } {
    const { ms, queued } = this.open();
    const added = Math.max(0, n - queued);
    this.add(added);
    return { added, openMs: ms };
  }

  /** An operator's suspension of the backlog, written where smtplb reads it at start (or removed). */
  suspend(on: boolean): void {
    const db = new Database(path.join(this.spool, 'queue.db'));
    db.prepare(`DELETE FROM suspensions WHERE id = 'bench'`).run();
    if (on) db.prepare(`INSERT INTO suspensions VALUES ('bench', 'main', ?, ?, 'queue-scale bench', 'bench', ?)`).run(backlogPattern, Date.now() + 3_600_000, Date.now());
    db.close();
  }

  dbBytes(): number {
    return ['queue.db', 'queue.db-wal'].reduce((t, f) => t + (fs.existsSync(path.join(this.spool, f)) ? fs.statSync(path.join(this.spool, f)).size : 0), 0);
  }

  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
/** The backlog's destination(s) and the shaping or suspension pattern covering them. */
const backlogDomain = (i: number) => (DESTINATIONS > 1 ? `d${i % DESTINATIONS}.${BACKLOG}` : BACKLOG);
const backlogPattern = DESTINATIONS > 1 ? `*.${BACKLOG}` : BACKLOG;
const isBacklog = (domain: string) => domain === BACKLOG || domain.endsWith(`.${BACKLOG}`);

// ---------------------------------------------------------------------------------------------
// Peers: smtp-sink dumping each message to its own file on tmpfs. Counting them by listing
// the directory costs the bench ~10 ms of CPU per look at 20,000 files, taken from the 2 CPUs
// smtplb runs on; on tmpfs a directory's size is 20 bytes per entry plus 40 (shmem's
// BOGO_DIRENT_SIZE), so a stat() counts them. Checked on the directory first, else listed.

interface CountingSink { port: number; dir: string; proc: ChildProcess; count(): number; clear(): void; remove(): void }

async function countingSink(args: string[] = []): Promise<CountingSink> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(SHM, 'smtplb-bench-qs-sink-'));
  fs.chmodSync(dir, 0o777); // smtp-sink writes as nobody
  const bogo = (() => {
    const empty = fs.statSync(dir).size;
    fs.writeFileSync(path.join(dir, 'probe'), '');
    const one = fs.statSync(dir).size;
    fs.rmSync(path.join(dir, 'probe'));
    return empty === 40 && one === 60 && fs.statSync(dir).size === 40;
  })();
  const proc = spawn('/usr/sbin/smtp-sink', ['-u', 'nobody', '-d', `${dir}/m.`, ...args, `127.0.0.1:${port}`, '2000'], { stdio: 'ignore' });
  await waitFor(`smtp-sink on ${port}`, () => portOpen(port), 10_000);
  return {
    port,
    dir,
    proc,
    count: bogo ? () => fs.statSync(dir).size / 20 - 2 : () => fs.readdirSync(dir).length,
    clear: () => {
      for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { force: true });
    },
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

// ---------------------------------------------------------------------------------------------
// smtplb.

interface Proc { proc: ChildProcess; startMs: number; stderr(): string }

function memKb(pid: number): { rss: number; hwm: number } {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? NaN), hwm: Number(/VmHWM:\s+(\d+)/.exec(s)?.[1] ?? NaN) };
}

/**
 * Other work on the machine while a run is measured: CPU time of every process that is not
 * this bench's (smtplb, the sinks, the bench itself), from /proc/stat minus /proc/PID/stat, in
 * cores; and the hypervisor's steal. Other sessions' tests on the same machine show up here.
 */
function loadMeter(pids: () => number[]): () => { otherCores: number; stealCores: number } {
  const stat = () => {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return { busy: f[0] + f[1] + f[2] + f[5] + f[6], steal: f[7] ?? 0 };
  };
  const t0 = nowMs();
  const s0 = stat();
  const o0 = cpuTicks(pids());
  return () => {
    const secs = (nowMs() - t0) / 1000;
    const s1 = stat();
    const o1 = cpuTicks(pids());
    return { otherCores: Math.max(0, s1.busy - s0.busy - (o1 - o0)) / TICK / secs, stealCores: (s1.steal - s0.steal) / TICK / secs };
  };
}

async function httpOk(url: string, token?: string): Promise<boolean> {
  try {
    const r = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    await r.text();
    return r.ok;
  } catch {
    return false;
  }
}

/** Start smtplb and wait until its admin port (opened last, after the spool and the listeners) answers. */
async function startSmtplb(dir: string, name: string, config: string, admin: number): Promise<Proc> {
  const file = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(file, config);
  let err = '';
  const t0 = nowMs();
  const proc = spawn(process.execPath, [...NODE_ARGS, BIN, 'start', '-c', file], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  proc.stderr!.on('data', (c) => (err = (err + c).slice(-4000)));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  let ready = false;
  const deadline = t0 + 300_000;
  const up = (async () => {
    while (nowMs() < deadline) {
      if (await httpOk(`http://127.0.0.1:${admin}/healthz`)) return (ready = true);
      if (proc.exitCode !== null || proc.signalCode !== null) return false;
      await sleep(5);
    }
    return false;
  })();
  await Promise.race([up, exited]);
  if (!ready) {
    await stop(proc);
    throw new Error(`smtplb did not start: ${err}`);
  }
  return { proc, startMs: nowMs() - t0, stderr: () => err };
}

/** SIGTERM, then SIGKILL only after the deliveries in flight could have ended (smtplb waits for them). */
function stopSmtplb(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise<void>((r) => {
    const t = setTimeout(() => p.kill('SIGKILL'), Math.max(5, SLOW_DELAY + 10) * 1000);
    p.once('exit', () => {
      clearTimeout(t);
      r();
    });
    p.kill('SIGTERM');
  });
}

/** A run's failure, with smtplb's exit status and the end of its stderr when it is gone. */
function died(e: unknown, s: Proc): Error {
  const gone = s.proc.exitCode !== null || s.proc.signalCode !== null;
  return new Error(`${(e as Error).message}${gone ? `; smtplb exited (${s.proc.exitCode ?? s.proc.signalCode}): ${s.stderr().trim() || 'no stderr'}` : ''}`);
}

async function timedGet(url: string, n: number, gapMs: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = nowMs();
    const r = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    await r.text();
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    out.push(nowMs() - t0);
    await sleep(gapMs);
  }
  return out;
}

/**
 * smtplb's event-loop delay since the previous scrape (prom-client's default metrics reset
 * their monitorEventLoopDelay histogram on each collect): max and p99 in ms.
 */
async function loopLag(admin: number): Promise<{ max: number; p99: number }> {
  const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  const v = (name: string) => Number(new RegExp(`^smtplb_nodejs_eventloop_lag_${name}_seconds (\\S+)`, 'm').exec(text)?.[1] ?? NaN) * 1000;
  return { max: v('max'), p99: v('p99') };
}

interface LogLine { event: string; recipient_domain: string; queue_delay_ms: number; code: number | null }
function deliveryLog(file: string): LogLine[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogLine);
}
const attemptsFor = (file: string, domain: string) => deliveryLog(file).filter((l) => l.event === 'attempt' && l.recipient_domain === domain);

// ---------------------------------------------------------------------------------------------
// One run each.

interface Held {
  queuedAtStart: number;
  queuedAtEnd: number;
  startMs: number;
  rssStartMb: number;
  rssEndMb: number;
  hwmMb: number;
  status: number[];
  metrics: number[];
  newDest: number[];
  newDestLog: number[];
  samePoolLog: number[];
  backlogDelivered: number;
  /** CPU used by other processes on the machine during the run (cores), and steal. */
  load: { otherCores: number; stealCores: number };
  /** Event-loop delay during the new-destination probes (ms). */
  lag: { max: number; p99: number };
  /** Event-loop delay from start to 1 s after the admin port answered (ms). */
  startLag: { max: number; p99: number };
}
interface Thru { load: { otherCores: number; stealCores: number }; startMs: number; queuedAtStart: number; window: number; msgPerSec: number; cpuSecPer1k: number; rssMb: number; hwmMb: number; lag: { max: number; p99: number } }

interface Ports { listen: number; admin: number }
interface Sinks { slow: CountingSink; fast: CountingSink; bulk: CountingSink }

const head = (p: Ports, spool: string) => `hostname: bench.test
log: { level: warn }
admin: { listen: 127.0.0.1:${p.admin}, token: ${TOKEN} }
spool: ${spool}
listeners:
  - { name: queue, listen: 127.0.0.1:${p.listen}, mode: smtp, relay_networks: [127.0.0.0/8] }
queue: { retry: [1h], max_age: 5d }
`;

async function heldRun(b: Backlog, n: number, p: Ports, sinks: Sinks): Promise<Held> {
  const log = path.join(b.dir, 'delivery.log');
  fs.rmSync(log, { force: true });
  sinks.slow.clear();
  sinks.fast.clear();
  const config = `${head(p, b.spool)}delivery_log: { file: ${log} }
pools:
  main: { health: { check: none }, destination_concurrency: 20, servers: [ { name: slow, address: 127.0.0.1:${sinks.slow.port} } ] }
  fast: { health: { check: none }, destination_concurrency: 20, servers: [ { name: fast, address: 127.0.0.1:${sinks.fast.port} } ] }
routes:
  - { domains: [new.test, warm.test], pool: fast }
  - { pool: main }
shaping:
  "${backlogPattern}": { concurrency: 1 }
`;
  b.suspend(HOLD === 'suspension');
  const s = await startSmtplb(b.dir, 'held', config, p.admin);
  const pid = s.proc.pid!;
  const meter = loadMeter(() => [pid, process.pid, ...Object.values(sinks).map((k: CountingSink) => k.proc.pid!)]);
  try {
    const afterStart = memKb(pid);
    const st0 = (await (await fetch(`http://127.0.0.1:${p.admin}/api/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { queue: { counts: { queued: number } } };
    await sleep(1000);
    // Since start: the first passes over the queue (and the spool's opening, when the monitor has begun by then).
    const startLag = await loopLag(p.admin);
    const client = await SmtpConn.open(p.listen);
    // Warm-up (connections, JIT), not measured.
    for (let i = 0; i < 5; i++) {
      const before = sinks.fast.count();
      await client.send('bench@source.test', `w${i}@warm.test`, body(`w${i}@warm.test`, i));
      await waitFor('warm-up message at the fast sink', () => sinks.fast.count() > before, 10_000, 2);
    }
    const status = await timedGet(`http://127.0.0.1:${p.admin}/api/status`, REQUESTS, 50);
    const metrics = await timedGet(`http://127.0.0.1:${p.admin}/metrics`, REQUESTS, 50);
    await loopLag(p.admin); // resets the event-loop delay histogram
    // New destination on another pool: client's 250 → the message at that pool's sink.
    const newDest: number[] = [];
    for (let i = 0; i < PROBES; i++) {
      const before = sinks.fast.count();
      const to = `n${i}@new.test`;
      await client.send('bench@source.test', to, body(to, i));
      const t250 = nowMs();
      await waitFor('probe at the fast sink', () => sinks.fast.count() > before, 30_000, 1);
      newDest.push(nowMs() - t250);
      await sleep(20);
    }
    // New destination on the backlog's own pool (its sink answers after 1 s): one every 100 ms,
    // timed by the delivery log (attempt start − acceptance; logged when the attempt ends, so
    // not with a slow sink much slower than 1 s).
    const samePool = SLOW_DELAY <= 5 ? PROBES : 0;
    for (let i = 0; i < samePool; i++) {
      const t0 = nowMs();
      const to = `s${i}@samepool.test`;
      await client.send('bench@source.test', to, body(to, i));
      await sleep(Math.max(0, 100 - (nowMs() - t0)));
    }
    await client.quit();
    await waitFor('same-pool probes in the delivery log', () => attemptsFor(log, 'samepool.test').length >= samePool, 60_000, 100);
    const end = memKb(pid);
    const lag = await loopLag(p.admin);
    const st1 = (await (await fetch(`http://127.0.0.1:${p.admin}/api/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { queue: { counts: { queued: number } } };
    return {
      queuedAtStart: st0.queue.counts.queued,
      queuedAtEnd: st1.queue.counts.queued,
      startMs: s.startMs,
      rssStartMb: afterStart.rss / 1024,
      rssEndMb: end.rss / 1024,
      hwmMb: end.hwm / 1024,
      status,
      metrics,
      newDest,
      newDestLog: attemptsFor(log, 'new.test').map((l) => l.queue_delay_ms),
      samePoolLog: attemptsFor(log, 'samepool.test').map((l) => l.queue_delay_ms),
      backlogDelivered: deliveryLog(log).filter((l) => l.event === 'attempt' && isBacklog(l.recipient_domain) && l.code === 250).length,
      lag,
      startLag,
      load: meter(),
    };
  } catch (e) {
    throw died(e, s);
  } finally {
    await stopSmtplb(s.proc);
    b.suspend(false);
  }
}

async function throughputRun(b: Backlog, n: number, p: Ports, sinks: Sinks): Promise<Thru> {
  sinks.bulk.clear();
  const config = `${head(p, b.spool)}pools:
  main: { health: { check: none }, destination_concurrency: 20, servers: [ { name: bulk, address: 127.0.0.1:${sinks.bulk.port} } ] }
routes:
  - { pool: main }
`;
  const s = await startSmtplb(b.dir, 'throughput', config, p.admin);
  const pid = s.proc.pid!;
  try {
    if (SETTLE_MS) await sleep(SETTLE_MS);
    await loopLag(p.admin);
    const meter = loadMeter(() => [pid, process.pid, ...Object.values(sinks).map((k: CountingSink) => k.proc.pid!)]);
    const c0 = sinks.bulk.count();
    const cpu0 = cpuTicks([pid]);
    const t0 = nowMs();
    const window = Math.min(WINDOW, n - c0);
    await waitFor(`${window} deliveries at the sink`, () => sinks.bulk.count() - c0 >= window, 600_000, 20);
    const secs = (nowMs() - t0) / 1000;
    const cpu = (cpuTicks([pid]) - cpu0) / TICK;
    const mem = memKb(pid);
    const lag = await loopLag(p.admin);
    const load = meter();
    return { load, startMs: s.startMs, queuedAtStart: n, window, msgPerSec: window / secs, cpuSecPer1k: (cpu * 1000) / window, rssMb: mem.rss / 1024, hwmMb: mem.hwm / 1024, lag };
  } catch (e) {
    throw died(e, s);
  } finally {
    await stopSmtplb(s.proc);
  }
}

// ---------------------------------------------------------------------------------------------

function revision(): string {
  const git = (...args: string[]) => spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' }).stdout.trim();
  const head = git('rev-parse', '--short', 'HEAD');
  if (!head) return 'not a git checkout';
  const dirty = git('status', '--porcelain', '--', 'src').split('\n').filter(Boolean).length;
  return `commit ${head}${dirty ? ` with ${dirty} uncommitted change(s) under src/` : ''}`;
}

function machine(dir: string): string[] {
  const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const nproc = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim() || String(os.cpus().length);
  const mem = Math.round(os.totalmem() / 2 ** 30);
  const df = spawnSync('df', ['-T', dir], { encoding: 'utf8' }).stdout.trim().split('\n')[1]?.split(/\s+/) ?? [];
  const dev = df[0] ?? '?';
  const base = /^\/dev\/([a-z]+?)(p?\d+)?$/.exec(dev)?.[1];
  let rot = '';
  try {
    if (base) rot = fs.readFileSync(`/sys/block/${base}/queue/rotational`, 'utf8').trim() === '1' ? ' (the kernel reports it rotational; virtio disks often do whatever the medium)' : ' (non-rotational)';
  } catch {
    /* not visible */
  }
  const sqlite = (() => {
    const db = new Database(':memory:');
    const v = (db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v;
    db.close();
    return v;
  })();
  return [
    `- Machine: ${nproc} CPUs (nproc), ${cpu}, ${mem} GB RAM, Linux ${os.release()}.`,
    `- Spool disk: ${dev}, ${df[1] ?? '?'}${rot}; sinks dump to tmpfs.`,
    `- Node ${process.version}, SQLite ${sqlite} (better-sqlite3); smtplb at ${revision()}.`,
  ];
}

function queryPlans(spool: string): string[] {
  // Read-write only for the lease reset, which changes nothing here (no row is leased).
  const db = new Database(path.join(spool, 'queue.db'));
  const plans: [string, string, unknown[]][] = [
    ['due rows of a destination (dueFor)', `SELECT * FROM recipients WHERE pool = ? AND domain = ? AND state = 'queued' AND leased = 0 AND next_at <= ? ORDER BY next_at LIMIT ?`, ['main', backlogDomain(0), Date.now(), 100]],
    ['next due (refreshDue)', `SELECT MIN(next_at) AS at FROM recipients WHERE pool = ? AND domain = ? AND state = 'queued' AND leased = 0`, ['main', backlogDomain(0)]],
    ['oldest message (status, metrics)', `SELECT msg FROM recipients WHERE pool = ? AND domain = ? AND state IN ('queued', 'held', 'failed') ORDER BY msg LIMIT 1`, ['main', backlogDomain(0)]],
    ['max_age sweep (expiredRows)', `SELECT * FROM recipients WHERE msg < ? AND state = 'queued' AND leased = 0 LIMIT ?`, [idAt(Date.now() - 5 * 86_400_000), 500]],
    ['start-up: lease reset', `UPDATE recipients SET leased = 0 WHERE leased = 1`, []],
    ['start-up: counters', `SELECT pool, domain, state, COUNT(*) AS n, MIN(CASE WHEN leased = 0 THEN next_at END) AS due FROM recipients WHERE state IN ('queued', 'held', 'failed') GROUP BY pool, domain, state`, []],
  ];
  const out: string[] = [];
  for (const [what, sql, args] of plans) {
    const rows = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as { detail: string }[];
    const stmt = db.prepare(sql);
    const t0 = nowMs();
    if (stmt.reader) stmt.all(...args);
    else stmt.run(...args);
    const ms = nowMs() - t0;
    out.push(`| ${what} | ${rows.map((r) => r.detail).join('; ')} | ${ms.toFixed(2)} |`);
  }
  db.close();
  return out;
}

async function main() {
  const started = Date.now();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'smtplb-bench-queue-scale-'));
  const sinks: Sinks = { slow: await countingSink(['-w', String(SLOW_DELAY)]), fast: await countingSink(), bulk: await countingSink() };
  const backlogs = new Map<number, Backlog>();
  const fills: { n: number; ms: number; dbMb: number; openMs: number; sweep: { ms: number; maxSliceMs: number; removed: number } | null }[] = [];
  const HELD = REFERENCE ? [0, ...SIZES] : SIZES;
  const held = new Map<number, Held[]>(HELD.map((n) => [n, []]));
  const thru = new Map<number, Thru[]>(SIZES.map((n) => [n, []]));
  const topUps = new Map<number, number[]>(SIZES.map((n) => [n, []]));
  let plans: string[] = [];
  try {
    for (const n of SIZES) {
      const b = new Backlog(fs.mkdtempSync(path.join(work, `n${n}-`)));
      backlogs.set(n, b);
      console.log(`filling a spool with ${n.toLocaleString('en')} queued recipients`);
      const ms = b.add(n);
      const { ms: openMs, queued } = b.open();
      if (queued !== n) throw new Error(`spool holds ${queued} queued, expected ${n}`);
      const sweep = await b.sweep();
      fills.push({ n, ms, dbMb: b.dbBytes() / 2 ** 20, openMs, sweep });
      console.log(`  ${(ms / 1000).toFixed(1)} s (${Math.round(n / (ms / 1000))} msg/s), queue.db ${(b.dbBytes() / 2 ** 20).toFixed(0)} MB, Spool open ${openMs.toFixed(0)} ms${sweep ? `, file sweep ${(sweep.ms / 1000).toFixed(1)} s (longest slice ${sweep.maxSliceMs.toFixed(1)} ms, ${sweep.removed} removed)` : ''}`);
    }
    plans = queryPlans(backlogs.get(Math.max(...SIZES))!.spool);
    if (REFERENCE) backlogs.set(0, new Backlog(fs.mkdtempSync(path.join(work, 'n0-'))));
    const ports: Ports = { listen: await freePort(), admin: await freePort() };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? SIZES : [...SIZES].reverse();
      if (REFERENCE && HELD_RUNS) {
        const b = backlogs.get(0)!;
        b.topUp(0);
        const h = await heldRun(b, 0, ports, sinks);
        held.get(0)!.push(h);
        console.log(`round ${round + 1} empty queue (reference): start ${h.startMs.toFixed(0)} ms, RSS ${h.rssStartMb.toFixed(0)}/${h.rssEndMb.toFixed(0)} MB, status p50 ${pct(h.status, 0.5).toFixed(1)} ms p99 ${pct(h.status, 0.99).toFixed(1)}, metrics p50 ${pct(h.metrics, 0.5).toFixed(1)} p99 ${pct(h.metrics, 0.99).toFixed(1)}, new dest p50 ${pct(h.newDest, 0.5).toFixed(1)} p99 ${pct(h.newDest, 0.99).toFixed(1)} ms`);
      }
      for (const n of order) {
        const b = backlogs.get(n)!;
        let t = b.topUp(n);
        topUps.get(n)!.push(t.openMs);
        const h = HELD_RUNS ? await heldRun(b, n, ports, sinks) : undefined;
        if (h) held.get(n)!.push(h);
        if (h) console.log(
          `round ${round + 1} N=${n}: held: start ${h.startMs.toFixed(0)} ms, RSS ${h.rssStartMb.toFixed(0)}/${h.rssEndMb.toFixed(0)} MB, status p50 ${pct(h.status, 0.5).toFixed(1)} ms p99 ${pct(h.status, 0.99).toFixed(1)}, metrics p50 ${pct(h.metrics, 0.5).toFixed(1)} p99 ${pct(h.metrics, 0.99).toFixed(1)}, new dest p50 ${pct(h.newDest, 0.5).toFixed(1)} p99 ${pct(h.newDest, 0.99).toFixed(1)} ms, same pool p99 ${pct(h.samePoolLog, 0.99).toFixed(0)} ms, loop lag max ${h.lag.max.toFixed(1)} ms (start-up ${h.startLag.max.toFixed(1)}), other load ${h.load.otherCores.toFixed(2)} cores, queued ${h.queuedAtStart}→${h.queuedAtEnd}`,
        );
        if (DESTINATIONS > 1) continue; // 20 connections per destination: not this bench's question
        t = b.topUp(n);
        topUps.get(n)!.push(t.openMs);
        const r = await throughputRun(b, n, ports, sinks);
        thru.get(n)!.push(r);
        console.log(`round ${round + 1} N=${n}: throughput: start ${r.startMs.toFixed(0)} ms, ${r.msgPerSec.toFixed(0)} msg/s over ${r.window}, CPU ${r.cpuSecPer1k.toFixed(3)} s/1k, RSS ${r.rssMb.toFixed(0)} MB (peak ${r.hwmMb.toFixed(0)}), loop lag max ${r.lag.max.toFixed(1)} ms, other load ${r.load.otherCores.toFixed(2)} cores`);
      }
    }
  } finally {
    for (const s of Object.values(sinks)) {
      await stop(s.proc);
      s.remove();
    }
    fs.rmSync(work, { recursive: true, force: true });
  }

  // -------------------------------------------------------------------------------------------
  const f = (x: number | undefined, d = 0) => (x !== undefined && Number.isFinite(x) ? x.toFixed(d) : '–');
  const m = <T>(xs: T[], fn: (x: T) => number) => median(xs.map(fn));
  const lines: string[] = [
    '# Queue manager at scale: 10,000 to 1,000,000 queued (issue #9)',
    '',
    `${new Date(started).toISOString().slice(0, 10)}, \`node dist/bench/queue-scale.js\` (BENCH_SIZES=${SIZES.join(',')}, BENCH_ROUNDS=${ROUNDS}${DESTINATIONS > 1 ? `, BENCH_DESTINATIONS=${DESTINATIONS}` : ''}${HOLD !== 'shaping' ? `, BENCH_HOLD=${HOLD}` : ''}${SLOW_DELAY !== 1 ? `, BENCH_SLOW_DELAY=${SLOW_DELAY}` : ''}), ${((Date.now() - started) / 60000).toFixed(1)} min in all.`,
    '',
    ...machine(os.tmpdir()),
    '',
    'Each spool is filled before smtplb starts (queue.db rows as Spool.accept writes them, one recipient per 1 KB message, files hard-linked), then topped up to exactly N queued before every run. smtplb is a child process; upstreams are Postfix smtp-sink on loopback. Each cell is the median over rounds (rounds alternate the order of sizes).',
    '',
    `- **held**: the N recipients are for ${DESTINATIONS > 1 ? `${DESTINATIONS.toLocaleString('en')} destinations d0…d${DESTINATIONS - 1}.backlog.test` : 'backlog.test'} on pool \`main\` → smtp-sink \`-w ${SLOW_DELAY}\` (each DATA answered after ${SLOW_DELAY} s), ${HOLD === 'suspension' ? `held by a suspension of \`${backlogPattern}\` on \`main\` (in the spool before start)` : `\`shaping: { "${backlogPattern}": { concurrency: 1 } }\``}.`,
    `  Start-up: spawn → the admin port (opened last, after the spool and listeners) answers. RSS after start-up: right then; at end: after the probes below (~${Math.round(PROBES * 0.135 + REQUESTS * 0.11 + 3)} s later).`,
    `  Admin latency: ${REQUESTS} sequential requests 50 ms apart with the token, timed by the client (HTTP on loopback included); /metrics caches the queue part for 500 ms, so about one request in ten computes it. p99 of ${REQUESTS} is the maximum.`,
    `  New destination, other pool: ${PROBES} messages one by one to new.test (pool \`fast\` → its own smtp-sink), from the client's 250 to the message's file at that sink; and the delivery log's queue_delay_ms (attempt start − acceptance) for the same messages.`,
    `  New destination, same pool: ${PROBES} messages to samepool.test, one every 100 ms, through pool \`main\` (the backlog's slow sink): the delivery log's queue_delay_ms.`,
    `- **throughput**: the same N recipients, pool \`main\` → a fast smtp-sink, destination_concurrency 20, no shaping. Messages per second over the first ${WINDOW.toLocaleString('en')} deliveries (or N when smaller), counted at the sink from the moment the admin port answers; the smtplb process's utime+stime over the same interval.`,
    "- **event-loop delay**: smtplb's own `smtplb_nodejs_eventloop_lag_max_seconds` / `_p99_seconds` (prom-client resets them at each scrape): scraped 1 s after start-up (covering the start), before and after the new-destination probes, and at the start and end of the throughput window. prom-client samples with a 10 ms timer, so an idle loop reads about 10-12 ms.",
    "- **other load**: CPU time of every process outside this bench's own (smtplb, the sinks, the bench) during each run, in cores, from /proc/stat: on a shared machine, a round with other work running is visible in the last table.",
    ...(REFERENCE ? ['- **reference**: in every round, the held run with an empty spool (no backlog): what the admin API, start-up and a new destination cost with nothing queued.'] : []),
    '',
    '## Results',
    '',
    '| N queued | start-up held / throughput (ms) | RSS after start-up (MB) | RSS at end of held (MB) | peak RSS held / throughput (MB) | /api/status p50 / p99 (ms) | /metrics p50 / p99 (ms) | new dest, other pool: 250 → sink p50 / p99 (ms) | same, delivery log p50 / p99 (ms) | new dest, same pool: delivery log p50 / p99 (ms) | throughput (msg/s) | CPU s / 1k msg | event-loop delay max, start-up / probes / throughput (ms) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const base = SIZES[0];
  for (const n of HELD) {
    const h = held.get(n)!;
    const t = thru.get(n) ?? [];
    lines.push(
      `| ${n ? n.toLocaleString('en') : '0 (reference: held run, empty queue)'} | ${f(m(h, (x) => x.startMs))} / ${f(m(t, (x) => x.startMs))} | ${f(m(h, (x) => x.rssStartMb))} | ${f(m(h, (x) => x.rssEndMb))} | ${f(m(h, (x) => x.hwmMb))} / ${f(m(t, (x) => x.hwmMb))} | ${f(m(h, (x) => pct(x.status, 0.5)), 1)} / ${f(m(h, (x) => pct(x.status, 0.99)), 1)} | ${f(m(h, (x) => pct(x.metrics, 0.5)), 1)} / ${f(m(h, (x) => pct(x.metrics, 0.99)), 1)} | ${f(m(h, (x) => pct(x.newDest, 0.5)), 1)} / ${f(m(h, (x) => pct(x.newDest, 0.99)), 1)} | ${f(m(h, (x) => pct(x.newDestLog, 0.5)))} / ${f(m(h, (x) => pct(x.newDestLog, 0.99)))} | ${f(m(h, (x) => pct(x.samePoolLog, 0.5)))} / ${f(m(h, (x) => pct(x.samePoolLog, 0.99)))} | ${f(m(t, (x) => x.msgPerSec))} | ${f(m(t, (x) => x.cpuSecPer1k), 3)} | ${f(m(h, (x) => x.startLag.max), 1)} / ${f(m(h, (x) => x.lag.max), 1)} / ${f(m(t, (x) => x.lag.max), 1)} |`,
    );
  }
  const tp = (n: number) => m(thru.get(n)!, (x) => x.msgPerSec);
  const cpu = (n: number) => m(thru.get(n)!, (x) => x.cpuSecPer1k);
  const rss = (n: number) => m(held.get(n)!, (x) => x.rssStartMb);
  const biggest = Math.max(...SIZES);
  lines.push('', '## Against the targets', '');
  lines.push(`| target | measured | |`, '|---|---|---|');
  if (held.get(100_000)?.length) {
    const p99 = m(held.get(100_000)!, (x) => pct(x.newDest, 0.99));
    lines.push(`| time to first attempt, new destination, 100,000 backlogged: p99 < 1 s | ${f(p99, 1)} ms (other pool, 250 → sink); ${f(m(held.get(100_000)!, (x) => pct(x.samePoolLog, 0.99)))} ms (same pool, delivery log) | ${p99 < 1000 ? 'met' : '**not met**'} |`);
  }
  for (const n of SIZES.filter((x) => x !== base && thru.get(x)!.length && thru.get(base)!.length)) {
    const ratio = tp(n) / tp(base);
    lines.push(`| throughput flat within 20%: N=${n.toLocaleString('en')} vs ${base.toLocaleString('en')} | ${ratio.toFixed(2)}× msg/s (${f(tp(n))} vs ${f(tp(base))}); CPU/1k ${(cpu(n) / cpu(base)).toFixed(2)}× | ${Math.abs(1 - ratio) <= 0.2 ? 'met' : '**not met**'} |`);
  }
  for (const n of SIZES.filter((x) => x >= 100_000 && held.get(x)!.length)) {
    const s99 = m(held.get(n)!, (x) => pct(x.status, 0.99));
    const m99 = m(held.get(n)!, (x) => pct(x.metrics, 0.99));
    const ref = held.get(0);
    const refText = ref?.length ? ` (empty queue: ${f(m(ref, (x) => pct(x.status, 0.99)), 1)} / ${f(m(ref, (x) => pct(x.metrics, 0.99)), 1)} ms)` : '';
    lines.push(`| /api/status and /metrics under 10 ms at N=${n.toLocaleString('en')} | status p99 ${f(s99, 1)} ms, metrics p99 ${f(m99, 1)} ms${refText}; p50 ${f(m(held.get(n)!, (x) => pct(x.status, 0.5)), 1)} / ${f(m(held.get(n)!, (x) => pct(x.metrics, 0.5)), 1)} ms | ${s99 < 10 && m99 < 10 ? 'met' : '**not met**'} |`);
  }
  if (SIZES.length > 1 && HELD_RUNS) lines.push(`| memory of the in-memory index: RSS after start-up, N=${biggest.toLocaleString('en')} − N=${base.toLocaleString('en')} | ${f(rss(biggest) - rss(base), 1)} MB (${f(rss(biggest))} vs ${f(rss(base))} MB) | |`);
  lines.push(
    '',
    '## The spools',
    '',
    'Measured in the bench process on the same spool, smtplb not running: opening the Spool (synchronous, before the listeners open) and the start-up sweep for uncommitted message files (Spool.sweepOrphans, which smtplb starts in the background at start-up: one index lookup per file, yielding every 500), with the longest event-loop slice it held.',
    '',
    '| N | fill (s) | fill rate (msg/s) | queue.db (MB) | Spool open: schema, lease reset, counters (ms, median of top-ups) | file sweep at start-up (s) | its longest event-loop slice (ms) |',
    '|---|---|---|---|---|---|---|',
  );
  for (const x of fills) lines.push(`| ${x.n.toLocaleString('en')} | ${f(x.ms / 1000, 1)} | ${f(x.n / (x.ms / 1000))} | ${f(x.dbMb)} | ${f(median([x.openMs, ...topUps.get(x.n)!]))} | ${x.sweep ? f(x.sweep.ms / 1000, 1) : '–'} | ${x.sweep ? f(x.sweep.maxSliceMs, 1) : '–'} |`);
  lines.push('', `Query plans on the ${biggest.toLocaleString('en')} spool (SQLite, no ANALYZE), with one run's time in the bench process:`, '', '| statement | plan | ms |', '|---|---|---|', ...plans);
  lines.push('', '## Every round', '', '| N | round | queued at start → end (held) | backlog delivered during held | start-up held / thru (ms) | RSS start / end / peak (MB) | status p50/p99 | metrics p50/p99 | other pool p50/p99 | same pool p50/p99 | msg/s | CPU s/1k | loop delay max / p99, probes (ms) | loop delay max / p99, throughput (ms) | CPU of other processes, held / throughput (cores) |', '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const n of HELD) {
    const rounds = Math.max(held.get(n)!.length, thru.get(n)?.length ?? 0);
    for (let i = 0; i < rounds; i++) {
      const h = held.get(n)![i] as Held | undefined;
      const t = thru.get(n)?.[i];
      const p = (xs: number[] | undefined, q: number, d = 1) => f(xs ? pct(xs, q) : undefined, d);
      lines.push(
        `| ${n.toLocaleString('en')} | ${i + 1} | ${h ? `${h.queuedAtStart} → ${h.queuedAtEnd}` : '–'} | ${h?.backlogDelivered ?? '–'} | ${f(h?.startMs)} / ${f(t?.startMs)} | ${f(h?.rssStartMb)} / ${f(h?.rssEndMb)} / ${f(h?.hwmMb)} | ${p(h?.status, 0.5)} / ${p(h?.status, 0.99)} | ${p(h?.metrics, 0.5)} / ${p(h?.metrics, 0.99)} | ${p(h?.newDest, 0.5)} / ${p(h?.newDest, 0.99)} | ${p(h?.samePoolLog, 0.5, 0)} / ${p(h?.samePoolLog, 0.99, 0)} | ${f(t?.msgPerSec)} | ${f(t?.cpuSecPer1k, 3)} | ${f(h?.lag.max, 1)} / ${f(h?.lag.p99, 1)} | ${f(t?.lag.max, 1)} / ${f(t?.lag.p99, 1)} | ${f(h?.load.otherCores, 2)} / ${f(t?.load.otherCores, 2)} |`,
      );
    }
  }
  const md = `${lines.join('\n')}\n`;
  console.log(`\n${md}`);
  // Runs with other backlog shapes go to their own file; the default run is results-queue-scale.md.
  const variant = `${SETTLE_MS ? `-settle${SETTLE_MS}` : ''}${HELD_RUNS ? '' : '-throughput'}${DESTINATIONS > 1 ? `-d${DESTINATIONS}` : ''}${HOLD !== 'shaping' ? `-${HOLD}` : ''}${SLOW_DELAY !== 1 ? `-w${SLOW_DELAY}` : ''}`;
  if (!process.env.BENCH_NO_WRITE) fs.writeFileSync(path.join(ROOT, `bench/results-queue-scale${variant}.md`), md);
}

main().catch((e) => {
  console.error(`bench failed: ${(e as Error).stack ?? e}`);
  process.exit(1);
});
