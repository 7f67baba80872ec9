// `npm run soak` (issue #10): a long run at half the measured capacity with one upstream
// flapping, not part of CI. smtplb runs as a child process (`node bin/smtplb.js start -c FILE`)
// with a `mode: smtp` listener (queue, not cut-through), an admin port, and one relay pool of
// two `smtplb sink` upstreams (balance roundrobin, smtp health checks with rise/fall). The
// bench is the SMTP client: every message has its own number, in its recipient address
// (s<N>@soak.test) and its Message-ID, so the sinks' per-recipient counts show each one
// delivered once, never, or more than once.
//
//  1. capacity: SOAK_CAPACITY_SECONDS (45) unthrottled on SOAK_CONNECTIONS (16) connections;
//     capacity = messages reaching the sinks per second after the first 5 s (the relay's
//     end-to-end rate: when acceptance outruns delivery, the queue grows and this is the
//     delivery rate). Then the queue is left to drain.
//  2. soak: SOAK_MINUTES (30) at SOAK_RATE_FRACTION (0.5) of that rate, paced (message k is
//     due at start + k / rate), while sink `b` is stopped every SOAK_FLAP_SECONDS (120) for
//     SOAK_DOWN_SECONDS (min(30, flap / 2)) and started again on the same port.
//  3. drain: sending stops; the wait (at most SOAK_DRAIN_SECONDS, 600) until smtplb's queue
//     has no open recipient and the sinks hold every accepted message.
//
// Every SOAK_SAMPLE_SECONDS (10): smtplb's VmRSS and open descriptors (/proc/PID/status,
// /proc/PID/fd), its heap (/metrics), queue counts (/api/status), the spool's index size, the
// messages accepted and delivered. RSS and descriptor slopes are least-squares fits over the
// soak's samples after its first SOAK_WARMUP_SECONDS (120). Output: a summary on stdout,
// bench/results-soak.md and the raw samples in bench/results-soak.json (SOAK_NO_WRITE=1:
// neither). Exit 1 when a message is missing or duplicated or the queue did not drain; the
// work directory (spool, smtplb log, delivery log, sink dumps) is then kept for evidence.
//
// The sinks are `smtplb sink` (src/sink) run by this file itself (`node dist/bench/soak.js
// sink ...`), not the CLI: stopping the CLI loses its counters, and reading /stats just before
// SIGTERM races with the messages still arriving. Here SIGTERM closes the sink (listener and
// sessions) and only then writes its final counters, per recipient, to a file.
import Database from 'better-sqlite3';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startSink, type SinkStats } from '../src/sink/sink.js';
import { SmtpConn } from './smtp-client.js';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '../..');
const BIN = path.join(ROOT, 'bin/smtplb.js');

const env = process.env;
const num = (name: string, dflt: number) => (env[name] !== undefined && env[name] !== '' ? Number(env[name]) : dflt);
const MINUTES = num('SOAK_MINUTES', 30);
const FLAP_S = num('SOAK_FLAP_SECONDS', 120);
const DOWN_S = num('SOAK_DOWN_SECONDS', Math.min(30, Math.floor(FLAP_S / 2)));
const CAPACITY_S = num('SOAK_CAPACITY_SECONDS', 45);
const FRACTION = num('SOAK_RATE_FRACTION', 0.5);
/** A fixed soak rate (msg/s) instead of FRACTION of a measured capacity (the capacity run is then skipped). */
const FIXED_RATE = num('SOAK_RATE', 0);
const CONNECTIONS = num('SOAK_CONNECTIONS', 16);
const PER_CONNECTION = num('SOAK_MESSAGES_PER_CONNECTION', 100);
const SAMPLE_S = num('SOAK_SAMPLE_SECONDS', 10);
const WARMUP_S = num('SOAK_WARMUP_SECONDS', 120);
const DRAIN_S = num('SOAK_DRAIN_SECONDS', 600);
const DELIVERY_LOG = env.SOAK_DELIVERY_LOG !== '0';
const TOKEN = 'soak-bench-token';
const DOMAIN = 'soak.test';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const f = (x: number | undefined | null, d = 0) => (x !== undefined && x !== null && Number.isFinite(x) ? x.toFixed(d) : '–');

// =============================================================================================
// The sink child: `node dist/bench/soak.js sink NAME PORT STATS_PORT DUMP_FILE`.

async function sinkMain(args: string[]): Promise<void> {
  const [name, port, statsPort, dump] = args;
  const sink = await startSink({
    listen: { host: '127.0.0.1', port: Number(port) },
    stats: { host: '127.0.0.1', port: Number(statsPort) },
    hostname: `sink-${name}.soak.test`,
    maxTrackedRecipients: 50_000_000,
  });
  process.stdout.write(`sink listening on 127.0.0.1:${sink.port}, stats on ${sink.statsPort}\n`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await sink.close();
    // Closed: no session is left, so these are the final counters.
    const tmp = `${dump}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(sink.stats({ recipients: true })));
    fs.renameSync(tmp, dump);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

// =============================================================================================
// Processes we start, all stopped at the end (and on SIGINT).

const children = new Set<ChildProcess>();

function track(p: ChildProcess): ChildProcess {
  children.add(p);
  p.once('exit', () => children.delete(p));
  return p;
}

function stopChild(p: ChildProcess, graceMs: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

/** A port that is free now and outside the kernel's ephemeral range, so no outgoing connection takes it while sink b is down. */
async function stablePort(): Promise<number> {
  let lo = 32768;
  try {
    lo = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    /* default */
  }
  const base = Math.max(1025, Math.min(20000, lo - 5000));
  for (let i = 0; i < 200; i++) {
    const port = base + Math.floor(Math.random() * Math.max(100, lo - base - 1));
    if (await canListen(port)) return port;
  }
  return freePort();
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

// =============================================================================================
// One upstream sink, across its restarts.

interface Incarnation { n: number; started: number; stopped?: number; stats?: SinkStats; lost?: string }

class SoakSink {
  proc?: ChildProcess;
  statsPort = 0;
  readonly incarnations: Incarnation[] = [];
  private last?: SinkStats;
  constructor(readonly name: string, readonly port: number, private dir: string) {}

  get up(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async start(): Promise<void> {
    this.statsPort = await freePort();
    const n = this.incarnations.length + 1;
    const dump = path.join(this.dir, `sink-${this.name}-${n}.json`);
    let out = '';
    for (let attempt = 0; ; attempt++) {
      const p = track(spawn(process.execPath, [SELF, 'sink', this.name, String(this.port), String(this.statsPort), dump], { stdio: ['ignore', 'pipe', 'pipe'] }));
      p.stdout!.on('data', (c) => (out += c));
      p.stderr!.on('data', (c) => (out += c));
      const ok = await new Promise<boolean>((resolve) => {
        const check = () => /^sink listening/m.test(out) && resolve(true);
        p.stdout!.on('data', check);
        p.once('exit', () => resolve(false));
        setTimeout(() => resolve(false), 15_000).unref();
      });
      if (ok) {
        this.proc = p;
        this.incarnations.push({ n, started: Date.now() });
        return;
      }
      await stopChild(p, 1000);
      // EADDRINUSE right after the stop (a connection in TIME_WAIT does not block a listener, but be patient).
      if (attempt >= 20) throw new Error(`sink ${this.name} did not start on ${this.port}: ${out}`);
      await sleep(500);
      this.statsPort = await freePort();
    }
  }

  /** SIGTERM: the sink closes and writes its final counters, which are kept here. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    const inc = this.incarnations[this.incarnations.length - 1];
    await stopChild(p, 20_000);
    this.proc = undefined;
    inc.stopped = Date.now();
    const dump = path.join(this.dir, `sink-${this.name}-${inc.n}.json`);
    try {
      inc.stats = JSON.parse(fs.readFileSync(dump, 'utf8')) as SinkStats;
    } catch (e) {
      inc.lost = `no final counters (${(e as Error).message}); exit ${p.exitCode ?? p.signalCode}`;
    }
  }

  /** Messages taken so far, over every incarnation (the running one's from GET /stats). */
  async delivered(): Promise<{ messages: number; refused: number; connections: number }> {
    let messages = 0;
    let refused = 0;
    let connections = 0;
    for (const inc of this.incarnations) {
      if (inc.stats) {
        messages += inc.stats.messages;
        refused += inc.stats.messages_refused;
        connections += inc.stats.connections;
      }
    }
    if (this.up) {
      try {
        const r = await fetch(`http://127.0.0.1:${this.statsPort}/stats?recipients=0`);
        this.last = (await r.json()) as SinkStats;
      } catch {
        /* keep the last answer */
      }
      if (this.last) {
        messages += this.last.messages;
        refused += this.last.messages_refused;
        connections += this.last.connections;
      }
    }
    return { messages, refused, connections };
  }
}

// =============================================================================================
// The client: numbered messages over a few connections, paced or as fast as they go.

/** A byte per message number: 0 not taken (yet), 1 accepted (250 to the final dot), 2 unknown (connection lost after the dot). */
class Marks {
  a = new Uint8Array(1 << 16);
  set(i: number, v: number): void {
    while (i >= this.a.length) {
      const b = new Uint8Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[i] = v;
  }
  get(i: number): number {
    return i < this.a.length ? this.a[i] : 0;
  }
}

const LINE = 'The quick brown fox jumps over the lazy dog: a soak-test body line, 1 KB in all.\r\n';

function message(i: number): Buffer {
  const to = `s${i}@${DOMAIN}`;
  let text = [`From: soak@source.test`, `To: ${to}`, `Subject: soak ${i}`, `Message-ID: <soak-${i}@source.test>`, `Date: ${new Date().toUTCString()}`, 'MIME-Version: 1.0', 'Content-Type: text/plain', '', ''].join('\r\n');
  while (text.length < 1000) text += LINE;
  return Buffer.from(`${text}.\r\n`);
}

class Generator {
  readonly marks = new Marks();
  /** Message numbers handed out so far (0 … next-1). */
  next = 0;
  /** Numbers refused (or not sent because the connection went before the dot): sent again. */
  private again: number[] = [];
  accepted = 0;
  unknown = 0;
  refusals = 0;
  readonly refusalCodes: Record<string, number> = {};
  connectErrors = 0;
  lostBeforeDot = 0;
  connections = 0;
  latencies: number[] = [];
  lastErrors: string[] = [];
  stopped = false;

  constructor(private port: number) {}

  private note(e: string): void {
    this.lastErrors.push(`${new Date().toISOString()} ${e}`);
    if (this.lastErrors.length > 50) this.lastErrors.shift();
  }

  /** Run `connections` workers until `until` (ms, nowMs clock); paced at `rate` msg/s when given. Resolves when all are done. */
  async run(o: { connections: number; until: number; rate?: number }): Promise<{ slots: number; seconds: number; behindMs: number }> {
    const t0 = nowMs();
    let slot = 0;
    let behindMs = 0;
    const worker = async () => {
      let conn: SmtpConn | undefined;
      let backoff = 100;
      while (!this.stopped) {
        if (o.rate) {
          const due = t0 + (slot++ * 1000) / o.rate;
          const wait = due - nowMs();
          if (wait > 0) await sleep(wait);
          else behindMs = Math.max(behindMs, -wait);
        }
        if (this.stopped || nowMs() >= o.until) break;
        if (!conn) {
          try {
            conn = await SmtpConn.open(this.port, 'client.soak.test');
            this.connections++;
            backoff = 100;
          } catch (e) {
            this.connectErrors++;
            this.note(`connect: ${(e as Error).message}`);
            conn = undefined;
            await sleep(backoff);
            backoff = Math.min(2000, backoff * 2);
            continue;
          }
        }
        const i = this.again.length ? this.again.shift()! : this.next++;
        const t = nowMs();
        try {
          const r = await conn.transaction('soak@source.test', `s${i}@${DOMAIN}`, message(i));
          if (r.stage === 'dot' && r.reply.code === 250) {
            this.marks.set(i, 1);
            this.accepted++;
            this.latencies.push(nowMs() - t);
          } else {
            this.refusals++;
            this.refusalCodes[r.reply.code] = (this.refusalCodes[r.reply.code] ?? 0) + 1;
            this.note(`s${i}: ${r.stage}: ${r.reply.text}`);
            this.again.push(i);
          }
        } catch (e) {
          const err = e as Error & { afterDot?: boolean };
          conn.destroy();
          conn = undefined;
          if (err.afterDot) {
            this.marks.set(i, 2);
            this.unknown++;
            this.note(`s${i}: after the dot: ${err.message}`);
          } else {
            this.lostBeforeDot++;
            this.note(`s${i}: before the dot: ${err.message}`);
            this.again.push(i);
          }
          continue;
        }
        if (conn.sent >= PER_CONNECTION) {
          await conn.quit();
          conn = undefined;
        }
      }
      if (conn) await conn.quit();
    };
    await Promise.all(Array.from({ length: o.connections }, worker));
    return { slots: slot, seconds: (nowMs() - t0) / 1000, behindMs };
  }

  /** Numbers that were handed out and are still waiting to be sent again (refused): none once a run ends cleanly. */
  get pendingAgain(): number {
    return this.again.length;
  }

  takeLatencies(): { p50: number; p99: number; n: number } {
    const xs = this.latencies.sort((a, b) => a - b);
    this.latencies = [];
    const at = (p: number) => (xs.length ? xs[Math.min(xs.length - 1, Math.max(0, Math.ceil(p * xs.length) - 1))] : NaN);
    return { p50: at(0.5), p99: at(0.99), n: xs.length };
  }
}

// =============================================================================================
// smtplb and its measurements.

interface Status {
  pools: { name: string; servers: { name: string; up: boolean; active?: number; connections?: number; failures?: number }[] }[];
  queue: { counts: Record<string, number> };
}

async function api<T>(port: number, p: string): Promise<T> {
  const r = await fetch(`http://127.0.0.1:${port}${p}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  if (!r.ok) throw new Error(`${p}: HTTP ${r.status}`);
  return (await r.json()) as T;
}

const openCount = (c: Record<string, number>) => (c.queued ?? 0) + (c.held ?? 0) + (c.failed ?? 0);

function procStatus(pid: number): { rssMb: number; hwmMb: number; threads: number } {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? NaN);
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024, threads: kb('Threads') };
}

function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

function cpuSec(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function fileMb(...files: string[]): number {
  return files.reduce((t, x) => t + (fs.existsSync(x) ? fs.statSync(x).size : 0), 0) / 2 ** 20;
}

interface SampleRow {
  t: number; // s since the soak started (negative: capacity run and its drain)
  t_bench: number; // s since the bench started
  at: string;
  phase: string;
  rss_mb: number;
  hwm_mb: number;
  fds: number;
  threads: number;
  heap_used_mb: number | null;
  external_mb: number | null;
  cpu_s: number;
  queue_open: number;
  queue_counts: Record<string, number>;
  accepted: number;
  unknown: number;
  refused: number;
  delivered_a: number;
  delivered_b: number;
  sink_b_process_up: boolean;
  sink_b_up_in_smtplb: boolean | null;
  accept_p50_ms: number | null;
  accept_p99_ms: number | null;
  spool_index_mb: number;
  spool_files: number | null;
  loadavg: number;
}

/** Least squares y = a + b·x; b with its standard error. */
function fit(xs: number[], ys: number[]): { slope: number; se: number; intercept: number; n: number } {
  const n = xs.length;
  if (n < 3) return { slope: NaN, se: NaN, intercept: NaN, n };
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (xs[i] - mx) ** 2;
    sxy += (xs[i] - mx) * (ys[i] - my);
  }
  const slope = sxy / sxx;
  const intercept = my - slope * mx;
  let sse = 0;
  for (let i = 0; i < n; i++) sse += (ys[i] - intercept - slope * xs[i]) ** 2;
  return { slope, intercept, se: Math.sqrt(sse / (n - 2) / sxx), n };
}

function countFiles(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? countFiles(path.join(dir, e.name)) : 1;
  return n;
}

function machine(): string[] {
  const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const nproc = spawnSync('nproc', { encoding: 'utf8' }).stdout?.trim() || String(os.cpus().length);
  const git = (...args: string[]) => spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' }).stdout?.trim() ?? '';
  const head = git('rev-parse', '--short', 'HEAD');
  const dirty = git('status', '--porcelain', '--', 'src').split('\n').filter(Boolean).length;
  const df = spawnSync('df', ['-T', os.tmpdir()], { encoding: 'utf8' }).stdout?.trim().split('\n')[1]?.split(/\s+/) ?? [];
  return [
    `- Machine: ${nproc} CPUs (nproc), ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GB RAM, kernel ${os.release()} (${os.hostname()}).`,
    `- Node ${process.version}; smtplb at ${head ? `commit ${head}${dirty ? ` with ${dirty} uncommitted change(s) under src/` : ''}` : 'not a git checkout'}; spool in ${os.tmpdir()} (${df[0] ?? '?'}, ${df[1] ?? '?'}).`,
    '- Shared machine: other sessions may run tests at the same time (see the load average column); throughput varies, the slopes are the point.',
  ];
}

// =============================================================================================

async function main(): Promise<number> {
  const started = new Date();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'smtplb-soak-'));
  const spool = path.join(work, 'spool');
  const smtplbLog = path.join(work, 'smtplb.log');
  const deliveryLog = path.join(work, 'delivery.log');
  const listenPort = await freePort();
  const adminPort = await freePort();
  const sinks = { a: new SoakSink('a', await stablePort(), work), b: new SoakSink('b', await stablePort(), work) };
  const gen = new Generator(listenPort);
  const samples: SampleRow[] = [];
  const events: { t: number; at: string; what: string }[] = [];
  let soakStart = Number.NaN;
  const benchStart = nowMs();
  let phase = 'start';
  let smtplb: ChildProcess | undefined;
  let aborted = false;
  let keepWork = false;
  const rel = () => (Number.isFinite(soakStart) ? (nowMs() - soakStart) / 1000 : -1);
  const event = (what: string) => {
    const e = { t: Number(rel().toFixed(1)), at: new Date().toISOString(), what };
    events.push(e);
    console.log(`[${e.at.slice(11, 19)}] ${what}`);
  };

  const onSigint = () => {
    if (aborted) return;
    aborted = true;
    gen.stopped = true;
    event('SIGINT: stopping');
    // If the orderly path hangs, make sure nothing we started outlives us.
    setTimeout(() => {
      for (const c of children) c.kill('SIGKILL');
      process.exit(130);
    }, 60_000).unref();
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);

  const config = `hostname: relay.soak.test
log: { level: warn }
admin: { listen: 127.0.0.1:${adminPort}, token: ${TOKEN} }
spool: ${spool}
${DELIVERY_LOG ? `delivery_log: { file: ${deliveryLog} }\n` : ''}listeners:
  - { name: in, listen: 127.0.0.1:${listenPort}, mode: smtp, delivery: queue, relay_networks: [127.0.0.0/8] }
pools:
  sinks:
    balance: roundrobin
    health: { check: smtp, interval: 1s, timeout: 1s, rise: 2, fall: 2 }
    reuse: { messages: 100, seconds: 30s }
    destination_concurrency: 20
    servers:
      - { name: a, address: 127.0.0.1:${sinks.a.port} }
      - { name: b, address: 127.0.0.1:${sinks.b.port} }
routes: [ { pool: sinks } ]
queue: { retry: [5s, 30s, 1m], max_age: 1d }
`;
  fs.writeFileSync(path.join(work, 'smtplb.yaml'), config);

  let sampling = true;
  let sampler: Promise<void> | undefined;
  const sample = async () => {
    const pid = smtplb?.pid;
    if (!pid || smtplb!.exitCode !== null) return;
    try {
      const ps = procStatus(pid);
      const fds = fdCount(pid);
      const cpu = cpuSec(pid);
      const st = await api<Status>(adminPort, '/api/status');
      const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
      const metric = (name: string) => {
        const v = Number(new RegExp(`^smtplb_${name} (\\S+)`, 'm').exec(metrics)?.[1] ?? NaN);
        return Number.isFinite(v) ? v / 2 ** 20 : null;
      };
      const [da, db] = await Promise.all([sinks.a.delivered(), sinks.b.delivered()]);
      const lat = gen.takeLatencies();
      const serverB = st.pools.find((p) => p.name === 'sinks')?.servers.find((s) => s.name === 'b');
      const row: SampleRow = {
        t: Number(rel().toFixed(1)),
        t_bench: Number(((nowMs() - benchStart) / 1000).toFixed(1)),
        at: new Date().toISOString(),
        phase,
        rss_mb: Number(ps.rssMb.toFixed(1)),
        hwm_mb: Number(ps.hwmMb.toFixed(1)),
        fds,
        threads: ps.threads,
        heap_used_mb: metric('nodejs_heap_size_used_bytes'),
        external_mb: metric('nodejs_external_memory_bytes'),
        cpu_s: cpu,
        queue_open: openCount(st.queue.counts),
        queue_counts: st.queue.counts,
        accepted: gen.accepted,
        unknown: gen.unknown,
        refused: gen.refusals,
        delivered_a: da.messages,
        delivered_b: db.messages,
        sink_b_process_up: sinks.b.up,
        sink_b_up_in_smtplb: serverB ? serverB.up : null,
        accept_p50_ms: Number.isFinite(lat.p50) ? Number(lat.p50.toFixed(1)) : null,
        accept_p99_ms: Number.isFinite(lat.p99) ? Number(lat.p99.toFixed(1)) : null,
        spool_index_mb: Number(fileMb(path.join(spool, 'queue.db'), path.join(spool, 'queue.db-wal'), path.join(spool, 'queue.db-shm')).toFixed(1)),
        spool_files: null,
        loadavg: Number(os.loadavg()[0].toFixed(2)),
      };
      if (row.heap_used_mb !== null) row.heap_used_mb = Number(row.heap_used_mb.toFixed(1));
      if (row.external_mb !== null) row.external_mb = Number(row.external_mb.toFixed(1));
      samples.push(row);
      console.log(
        `t=${f(row.t).padStart(5)}s ${phase.padEnd(8)} rss ${f(row.rss_mb, 1).padStart(6)} MB  fds ${String(fds).padStart(4)}  heap ${f(row.heap_used_mb, 1).padStart(5)} MB  queue ${String(row.queue_open).padStart(6)}  accepted ${row.accepted}  delivered ${row.delivered_a}+${row.delivered_b}  b ${row.sink_b_process_up ? 'up' : 'DOWN'}/${row.sink_b_up_in_smtplb ? 'up' : 'down'}  p99 ${f(row.accept_p99_ms)} ms  load ${row.loadavg}`,
      );
    } catch (e) {
      console.log(`sample failed: ${(e as Error).message}`);
    }
  };
  const startSampler = () => {
    sampler = (async () => {
      let next = nowMs();
      while (sampling && !aborted) {
        await sample();
        next += SAMPLE_S * 1000;
        while (sampling && !aborted && nowMs() < next) await sleep(Math.min(250, next - nowMs()));
      }
    })();
  };

  const delivered = async () => {
    const [a, b] = await Promise.all([sinks.a.delivered(), sinks.b.delivered()]);
    return a.messages + b.messages;
  };

  /** Until the queue has no open recipient and the sinks hold every accepted message (or the queue stays empty for 15 s). */
  const drain = async (what: string): Promise<{ seconds: number; drained: boolean; open: number; delivered: number }> => {
    const t0 = nowMs();
    let emptySince = 0;
    for (;;) {
      const st = await api<Status>(adminPort, '/api/status');
      const open = openCount(st.queue.counts);
      const d = await delivered();
      const secs = (nowMs() - t0) / 1000;
      if (open === 0) {
        emptySince ||= nowMs();
        if (d >= gen.accepted || nowMs() - emptySince > 15_000) return { seconds: secs, drained: true, open, delivered: d };
      } else emptySince = 0;
      if (secs > DRAIN_S || aborted) {
        event(`${what}: not drained after ${secs.toFixed(0)} s: ${open} open, ${d} of ${gen.accepted} delivered`);
        return { seconds: secs, drained: false, open, delivered: d };
      }
      await sleep(250);
    }
  };

  const result: Record<string, unknown> = {};
  let exit = 0;
  let flapper: Promise<void> | undefined;
  let flapping = true;
  try {
    await sinks.a.start();
    await sinks.b.start();
    event(`sinks a on ${sinks.a.port}, b on ${sinks.b.port}`);
    const logFd = fs.openSync(smtplbLog, 'a');
    smtplb = track(spawn(process.execPath, [BIN, 'start', '-c', path.join(work, 'smtplb.yaml')], { cwd: work, stdio: ['ignore', logFd, logFd] }));
    fs.closeSync(logFd);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (smtplb.exitCode !== null) throw new Error(`smtplb exited ${smtplb.exitCode}: ${fs.readFileSync(smtplbLog, 'utf8').slice(-2000)}`);
      const ok = (await portOpen(listenPort)) && (await fetch(`http://127.0.0.1:${adminPort}/healthz`).then((r) => r.ok, () => false));
      if (ok) {
        const st = await api<Status>(adminPort, '/api/status');
        if (st.pools[0]?.servers.every((s) => s.up)) break;
      }
      if (Date.now() > deadline) throw new Error('smtplb did not come up with both servers healthy within 60 s');
      await sleep(200);
    }
    event(`smtplb pid ${smtplb.pid} up: listener ${listenPort}, admin ${adminPort}, work dir ${work}`);
    startSampler();

    // ---- 1. capacity
    let capacity = FIXED_RATE / FRACTION;
    if (!FIXED_RATE) {
      phase = 'capacity';
      event(`capacity run: ${CAPACITY_S} s unthrottled on ${CONNECTIONS} connections`);
      const t0 = nowMs();
      const run = gen.run({ connections: CONNECTIONS, until: t0 + CAPACITY_S * 1000 });
      await sleep(5000);
      const d0 = await delivered();
      const a0 = gen.accepted;
      const t5 = nowMs();
      const r = await run;
      const secs = (nowMs() - t5) / 1000;
      const d1 = await delivered();
      const a1 = gen.accepted;
      capacity = (d1 - d0) / secs;
      const acceptRate = (a1 - a0) / secs;
      const st = await api<Status>(adminPort, '/api/status');
      result.capacity = { seconds: Number(r.seconds.toFixed(1)), connections: CONNECTIONS, delivered_msg_s: Number(capacity.toFixed(1)), accepted_msg_s: Number(acceptRate.toFixed(1)), accepted: gen.accepted, queue_open_at_end: openCount(st.queue.counts) };
      event(`capacity: ${capacity.toFixed(0)} msg/s delivered end to end (accepted ${acceptRate.toFixed(0)} msg/s; ${openCount(st.queue.counts)} queued at the end)`);
      phase = 'cap-drain';
      const dr = await drain('capacity run');
      (result.capacity as Record<string, unknown>).drain_s = Number(dr.seconds.toFixed(1));
      if (!dr.drained) throw new Error('the capacity run did not drain');
      event(`capacity run drained in ${dr.seconds.toFixed(1)} s`);
    }
    if (aborted) throw new Error('aborted');
    const rate = FIXED_RATE || capacity * FRACTION;
    const acceptedBefore = gen.accepted;
    const deliveredBefore = await delivered();
    const nextBefore = gen.next;

    // ---- 2. soak
    phase = 'soak';
    soakStart = nowMs();
    // Samples and events before the soak: seconds before it (negative).
    const offset = (soakStart - benchStart) / 1000;
    for (const s of samples) s.t = Number((s.t_bench - offset).toFixed(1));
    for (const e of events) e.t = Number(((Date.parse(e.at) - Date.now()) / 1000).toFixed(1));
    const soakEnd = soakStart + MINUTES * 60_000;
    event(`soak: ${MINUTES} min at ${rate.toFixed(1)} msg/s (${(FRACTION * 100).toFixed(0)}% of ${capacity.toFixed(0)}) on ${CONNECTIONS} connections; sink b down for ${DOWN_S} s every ${FLAP_S} s`);
    const flaps: { down_at_s: number; up_at_s: number; b_taken_in_incarnation: number | null; lb_saw_down_s: number | null; lb_saw_up_s: number | null }[] = [];
    flapper = (async () => {
      for (let k = 1; ; k++) {
        const at = soakStart + k * FLAP_S * 1000;
        // Each flap ends (sink b up again) at least 10 s before the soak does.
        if (at + DOWN_S * 1000 > soakEnd - 10_000) return;
        while (nowMs() < at) {
          if (!flapping || aborted) return;
          await sleep(Math.min(250, at - nowMs()));
        }
        if (!flapping || aborted) return;
        const downAt = rel();
        await sinks.b.stop();
        const inc = sinks.b.incarnations[sinks.b.incarnations.length - 1];
        event(`flap ${k}: sink b stopped (took ${inc.stats?.messages ?? '?'} messages since its start${inc.lost ? `; ${inc.lost}` : ''})`);
        // When smtplb's health check sees it down, and later up again.
        let sawDown: number | null = null;
        const upAt = nowMs() + DOWN_S * 1000;
        while (nowMs() < upAt && !aborted) {
          if (sawDown === null) {
            const st = await api<Status>(adminPort, '/api/status').catch(() => undefined);
            if (st && st.pools[0]?.servers.find((s) => s.name === 'b')?.up === false) sawDown = rel() - downAt;
          }
          await sleep(Math.min(250, Math.max(0, upAt - nowMs())));
        }
        const upAtS = rel();
        await sinks.b.start();
        let sawUp: number | null = null;
        for (let i = 0; i < 120 && !aborted; i++) {
          const st = await api<Status>(adminPort, '/api/status').catch(() => undefined);
          if (st && st.pools[0]?.servers.find((s) => s.name === 'b')?.up) {
            sawUp = rel() - upAtS;
            break;
          }
          await sleep(250);
        }
        event(`flap ${k}: sink b started again on ${sinks.b.port}; smtplb saw it down after ${f(sawDown, 1)} s and up again after ${f(sawUp, 1)} s`);
        flaps.push({ down_at_s: Number(downAt.toFixed(1)), up_at_s: Number(upAtS.toFixed(1)), b_taken_in_incarnation: inc.stats?.messages ?? null, lb_saw_down_s: sawDown === null ? null : Number(sawDown.toFixed(1)), lb_saw_up_s: sawUp === null ? null : Number(sawUp.toFixed(1)) });
      }
    })();
    const soakRun = await gen.run({ connections: CONNECTIONS, until: soakEnd, rate });
    flapping = false;
    await flapper;
    const soakSecs = (nowMs() - soakStart) / 1000;
    const soakAccepted = gen.accepted - acceptedBefore;
    event(`soak ended: ${soakAccepted} accepted in ${soakSecs.toFixed(0)} s (${(soakAccepted / soakSecs).toFixed(1)} msg/s; worst lag behind the schedule ${(soakRun.behindMs / 1000).toFixed(1)} s)`);
    if (!sinks.b.up) await sinks.b.start();

    // ---- 3. drain
    phase = 'drain';
    const dr = await drain('soak');
    event(`drain: ${dr.drained ? 'drained' : 'NOT drained'} in ${dr.seconds.toFixed(1)} s (${dr.open} open, ${dr.delivered} delivered of ${gen.accepted} accepted)`);
    phase = 'end';
    await sample();
    sampling = false;
    await sampler;

    // ---- smtplb and the sinks stop; the counts
    const hwm = procStatus(smtplb.pid!).hwmMb;
    const t0 = nowMs();
    await stopChild(smtplb, 60_000);
    const smtplbExit = smtplb.exitCode ?? smtplb.signalCode;
    event(`smtplb stopped (exit ${smtplbExit}) in ${((nowMs() - t0) / 1000).toFixed(1)} s`);
    await sinks.a.stop();
    await sinks.b.stop();

    // The spool after the stop.
    const db = new Database(path.join(spool, 'queue.db'), { readonly: true });
    const spoolRows = {
      messages: (db.prepare('SELECT COUNT(*) AS n FROM messages').get() as { n: number }).n,
      recipients: Object.fromEntries((db.prepare('SELECT state, COUNT(*) AS n FROM recipients GROUP BY state').all() as { state: string; n: number }[]).map((r) => [r.state, r.n])),
      events: (db.prepare('SELECT COUNT(*) AS n FROM events').get() as { n: number }).n,
    };
    const spoolFiles = countFiles(path.join(spool, 'messages'));
    const indexMb = fileMb(path.join(spool, 'queue.db'), path.join(spool, 'queue.db-wal'));

    // Exactly once: every number's copies over both sinks and all their incarnations.
    const total = gen.next;
    const copies = new Uint16Array(total);
    const where = new Map<number, string[]>();
    const unexpected: Record<string, number> = {};
    const lost: string[] = [];
    for (const s of [sinks.a, sinks.b]) {
      for (const inc of s.incarnations) {
        if (!inc.stats) {
          lost.push(`sink ${s.name} #${inc.n}: ${inc.lost}`);
          continue;
        }
        if (inc.stats.recipients_untracked) lost.push(`sink ${s.name} #${inc.n}: ${inc.stats.recipients_untracked} copies not tracked per address`);
        for (const [addr, n] of Object.entries(inc.stats.recipients)) {
          const m = /^s(\d+)@soak\.test$/.exec(addr);
          const i = m ? Number(m[1]) : -1;
          if (i < 0 || i >= total) {
            unexpected[addr] = (unexpected[addr] ?? 0) + n;
            continue;
          }
          copies[i] += n;
          if (copies[i] > 1 || n > 1) {
            const w = where.get(i) ?? [];
            w.push(`${s.name}#${inc.n}×${n}`);
            where.set(i, w);
          }
        }
      }
    }
    // `where` only noted the second copy on; add the first where it was.
    let missing = 0;
    let duplicated = 0;
    let extraCopies = 0;
    let unknownDelivered = 0;
    let unknownNotDelivered = 0;
    let refusedButDelivered = 0;
    let deliveredTotal = 0;
    const missingList: number[] = [];
    const dupList: number[] = [];
    for (let i = 0; i < total; i++) {
      const c = copies[i];
      const m = gen.marks.get(i);
      deliveredTotal += c;
      if (c > 1) {
        duplicated++;
        extraCopies += c - 1;
        if (dupList.length < 50) dupList.push(i);
      }
      if (m === 1 && c === 0) {
        missing++;
        if (missingList.length < 50) missingList.push(i);
      } else if (m === 2) {
        if (c) unknownDelivered++;
        else unknownNotDelivered++;
      } else if (m === 0 && c > 0) refusedButDelivered++;
    }
    const sinkStats = Object.fromEntries(
      [sinks.a, sinks.b].map((s) => [
        s.name,
        s.incarnations.map((inc) => ({ n: inc.n, started: new Date(inc.started).toISOString(), stopped: inc.stopped ? new Date(inc.stopped).toISOString() : null, messages: inc.stats?.messages ?? null, refused: inc.stats?.messages_refused ?? null, connections: inc.stats?.connections ?? null, data_replies: inc.stats?.data_replies ?? null, lost: inc.lost ?? null })),
      ]),
    );

    // The delivery log, all of it: attempts by server and reply code (did the flaps hit live
    // transactions, and what did smtplb make of them), final outcomes, and for any message lost
    // or duplicated its lines there and its rows in the spool.
    const evidence: string[] = [];
    const suspects = [...dupList.slice(0, 20), ...missingList.slice(0, 20)];
    const want = new Map<number, string[]>(suspects.map((i) => [i, []]));
    const dlog = { lines: 0, attempts: {} as Record<string, number>, finals: {} as Record<string, number>, retried_messages: 0, failed_replies: {} as Record<string, number>, delivered_twice: 0 };
    if (DELIVERY_LOG && fs.existsSync(deliveryLog)) {
      const deliveredSeen = new Uint8Array(total);
      const attemptLines = new Uint8Array(total);
      const rl = readline.createInterface({ input: fs.createReadStream(deliveryLog) });
      for await (const line of rl) {
        dlog.lines++;
        let r: { event: string; server: string | null; code: number | null; reply: string; attempt?: number; recipient?: string; message_id: string | null };
        try {
          r = JSON.parse(line) as typeof r;
        } catch {
          continue;
        }
        const n = Number(/^<soak-(\d+)@source\.test>$/.exec(r.message_id ?? '')?.[1] ?? /^s(\d+)@soak\.test$/.exec(r.recipient ?? '')?.[1] ?? -1);
        if (r.event === 'attempt') {
          const k = `${r.server ?? '-'} ${r.code ?? 'no reply'}`;
          dlog.attempts[k] = (dlog.attempts[k] ?? 0) + 1;
          if (r.code !== 250) {
            const t = `${r.server ?? '-'}: ${(r.reply ?? '').slice(0, 100)}`;
            dlog.failed_replies[t] = (dlog.failed_replies[t] ?? 0) + 1;
          }
          if (n >= 0 && n < total && ++attemptLines[n] === 2) dlog.retried_messages++;
        } else {
          dlog.finals[r.event] = (dlog.finals[r.event] ?? 0) + 1;
          if (r.event === 'delivered' && n >= 0 && n < total) {
            if (deliveredSeen[n]) dlog.delivered_twice++;
            deliveredSeen[n] = 1;
          }
        }
        if (want.has(n)) want.get(n)!.push(line);
      }
      // The 20 most frequent failure texts are enough.
      dlog.failed_replies = Object.fromEntries(Object.entries(dlog.failed_replies).sort((a, b) => b[1] - a[1]).slice(0, 20));
    }
    if (suspects.length) {
      keepWork = true;
      const rowsFor = db.prepare('SELECT * FROM recipients WHERE rcpt = ?');
      for (const i of suspects) {
        const addr = `s${i}@${DOMAIN}`;
        evidence.push(`s${i}: ${copies[i]} cop${copies[i] === 1 ? 'y' : 'ies'} (${where.get(i)?.join(', ') ?? 'first copy only'}), client saw ${['no 250', '250', 'the connection go after the dot'][gen.marks.get(i)]}`);
        for (const l of want.get(i) ?? []) evidence.push(`    delivery log: ${l}`);
        for (const r of rowsFor.all(addr)) evidence.push(`    spool row: ${JSON.stringify(r)}`);
      }
    }
    const logText = fs.existsSync(smtplbLog) ? fs.readFileSync(smtplbLog, 'utf8') : '';
    const logLines = logText.split('\n').filter(Boolean);
    db.close();

    // ---- figures
    const soakSamples = samples.filter((s) => s.phase === 'soak');
    const fitted = soakSamples.filter((s) => s.t >= WARMUP_S);
    const hours = (xs: SampleRow[]) => xs.map((s) => s.t / 3600);
    const rssFit = fit(hours(fitted), fitted.map((s) => s.rss_mb));
    const fdFit = fit(hours(fitted), fitted.map((s) => s.fds));
    const heapRows = fitted.filter((s) => s.heap_used_mb !== null);
    const heapFit = fit(hours(heapRows), heapRows.map((s) => s.heap_used_mb!));
    const windowH = fitted.length ? (fitted[fitted.length - 1].t - fitted[0].t) / 3600 : NaN;
    // Growth that stops (caches filling) against growth that goes on: the same fits per half.
    const halves = [fitted.slice(0, fitted.length >> 1), fitted.slice(fitted.length >> 1)].map((h) => ({ rss: fit(hours(h), h.map((x) => x.rss_mb)), fds: fit(hours(h), h.map((x) => x.fds)) }));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const rssMean = mean(fitted.map((s) => s.rss_mb));
    const fdMean = mean(fitted.map((s) => s.fds));
    const rssFlat = Math.abs(rssFit.slope * windowH) <= Math.max(0.05 * rssMean, 5);
    const fdFlat = Math.abs(fdFit.slope * windowH) <= Math.max(0.1 * fdMean, 5);
    const first = soakSamples[0];
    const afterWarm = fitted[0];
    const lastSoak = soakSamples[soakSamples.length - 1];
    const endRow = samples[samples.length - 1];
    const soakDelivered = deliveredTotal - deliveredBefore;
    const drained = dr.drained && spoolRows.messages === 0 && spoolFiles === 0;
    const ok = drained && missing === 0 && duplicated === 0 && refusedButDelivered === 0 && lost.length === 0 && gen.pendingAgain === 0 && Object.keys(unexpected).length === 0;
    if (!ok) {
      exit = 1;
      keepWork = true;
    }
    Object.assign(result, {
      date: started.toISOString(),
      command: `SOAK_MINUTES=${MINUTES} SOAK_FLAP_SECONDS=${FLAP_S} SOAK_DOWN_SECONDS=${DOWN_S} npm run soak`,
      settings: { minutes: MINUTES, flap_s: FLAP_S, down_s: DOWN_S, capacity_s: CAPACITY_S, fraction: FRACTION, fixed_rate: FIXED_RATE || null, connections: CONNECTIONS, messages_per_connection: PER_CONNECTION, sample_s: SAMPLE_S, warmup_s: WARMUP_S, drain_limit_s: DRAIN_S, delivery_log: DELIVERY_LOG },
      soak: {
        rate_target_msg_s: Number(rate.toFixed(1)),
        seconds: Number(soakSecs.toFixed(1)),
        accepted: soakAccepted,
        rate_achieved_msg_s: Number((soakAccepted / soakSecs).toFixed(1)),
        worst_lag_behind_schedule_s: Number((soakRun.behindMs / 1000).toFixed(1)),
        delivered_during_soak_and_drain: soakDelivered,
        numbers_used: total - nextBefore,
        flaps,
      },
      messages: {
        numbers_handed_out: total,
        accepted: gen.accepted,
        unknown_outcome: gen.unknown,
        unknown_outcome_delivered: unknownDelivered,
        unknown_outcome_not_delivered: unknownNotDelivered,
        refused_and_resent: gen.refusals,
        refusal_codes: gen.refusalCodes,
        lost_before_dot_and_resent: gen.lostBeforeDot,
        connect_errors: gen.connectErrors,
        client_connections: gen.connections,
        not_resent: gen.pendingAgain,
        delivered_copies: deliveredTotal,
        missing,
        duplicated,
        extra_copies: extraCopies,
        refused_but_delivered: refusedButDelivered,
        unexpected_recipients: unexpected,
        sink_counts_lost: lost,
        client_errors_last: gen.lastErrors,
      },
      drain: { drained: dr.drained, seconds: Number(dr.seconds.toFixed(1)), open_at_end: dr.open },
      spool_after_stop: { ...spoolRows, message_files: spoolFiles, index_mb: Number(indexMb.toFixed(1)), smtplb_exit: smtplbExit },
      memory: {
        rss_mb_soak_start: first?.rss_mb,
        rss_mb_after_warmup: afterWarm?.rss_mb,
        rss_mb_soak_end: lastSoak?.rss_mb,
        rss_mb_after_drain: endRow?.rss_mb,
        rss_mb_max_soak: Math.max(...soakSamples.map((s) => s.rss_mb)),
        rss_mb_min_fitted: Math.min(...fitted.map((s) => s.rss_mb)),
        hwm_mb: Number(hwm.toFixed(1)),
        rss_slope_mb_per_h: Number(rssFit.slope.toFixed(2)),
        rss_slope_se: Number(rssFit.se.toFixed(2)),
        heap_used_mb_after_warmup: afterWarm?.heap_used_mb,
        heap_used_mb_soak_end: lastSoak?.heap_used_mb,
        heap_slope_mb_per_h: Number(heapFit.slope.toFixed(2)),
        heap_slope_se: Number(heapFit.se.toFixed(2)),
        fds_soak_start: first?.fds,
        fds_after_warmup: afterWarm?.fds,
        fds_soak_end: lastSoak?.fds,
        fds_after_drain: endRow?.fds,
        fds_min_max_fitted: [Math.min(...fitted.map((s) => s.fds)), Math.max(...fitted.map((s) => s.fds))],
        fd_slope_per_h: Number(fdFit.slope.toFixed(2)),
        fd_slope_se: Number(fdFit.se.toFixed(2)),
        fitted_samples: fitted.length,
        fitted_window_h: Number(windowH.toFixed(3)),
        rss_slope_halves_mb_per_h: halves.map((h) => Number(h.rss.slope.toFixed(2))),
        fd_slope_halves_per_h: halves.map((h) => Number(h.fds.slope.toFixed(2))),
        rss_flat: rssFlat,
        fds_flat: fdFlat,
      },
      queue_during_soak: { max_open: Math.max(...soakSamples.map((s) => s.queue_open)), mean_open: Number(mean(soakSamples.map((s) => s.queue_open)).toFixed(1)) },
      sinks: sinkStats,
      delivery_log: dlog,
      smtplb_log: { lines: logLines.length, last: logLines.slice(-20) },
      ok,
    });

    // ---- report
    const mem = result.memory as Record<string, number | boolean | number[]>;
    const msgs = result.messages as Record<string, unknown>;
    const cap = result.capacity as Record<string, number> | undefined;
    const soak = result.soak as Record<string, number>;
    const rows: [string, string][] = [
      ['capacity (unthrottled, end to end)', cap ? `${f(cap.delivered_msg_s)} msg/s delivered (accepted ${f(cap.accepted_msg_s)} msg/s) over ${f(cap.seconds)} s on ${CONNECTIONS} connections; drained in ${f(cap.drain_s, 1)} s` : `not measured (SOAK_RATE=${FIXED_RATE})`],
      ['soak rate', `target ${f(rate, 1)} msg/s (${(FRACTION * 100).toFixed(0)}%), achieved ${f(soak.rate_achieved_msg_s, 1)} msg/s over ${f(soakSecs / 60, 1)} min; worst lag behind schedule ${f(soak.worst_lag_behind_schedule_s, 1)} s`],
      ['smtplb CPU during the soak', soakCpuPer1k(samples)],
      ['flaps of sink b', `${flaps.length} × ${DOWN_S} s down every ${FLAP_S} s; smtplb marked it down after ${f(median(flaps.map((x) => x.lb_saw_down_s)), 1)} s and up after ${f(median(flaps.map((x) => x.lb_saw_up_s)), 1)} s (medians)`],
      ['messages accepted (250 to the final dot)', `${gen.accepted} (capacity run ${acceptedBefore}, soak ${soakAccepted})`],
      ['refused and sent again / connection lost before the dot', `${gen.refusals}${Object.keys(gen.refusalCodes).length ? ` (${Object.entries(gen.refusalCodes).map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''} / ${gen.lostBeforeDot}`],
      ['outcome unknown (connection lost after the dot)', `${gen.unknown} (delivered ${unknownDelivered}, not ${unknownNotDelivered})`],
      ['copies at the sinks', `${deliveredTotal} (a ${sinkTotal(sinkStats.a)}, b ${sinkTotal(sinkStats.b)} over ${sinks.b.incarnations.length} runs)`],
      ['**missing / duplicated**', `**${missing} / ${duplicated}**${extraCopies ? ` (${extraCopies} extra copies)` : ''}${refusedButDelivered ? `; ${refusedButDelivered} refused but delivered` : ''}${Object.keys(unexpected).length ? `; unexpected recipients ${JSON.stringify(unexpected)}` : ''}${lost.length ? `; ${lost.join('; ')}` : ''}`],
      ['drain after the soak', `${dr.drained ? 'drained' : '**not drained**'} in ${f(dr.seconds, 1)} s; after stop: ${spoolRows.messages} messages in the index, ${spoolFiles} message files, recipients ${JSON.stringify(spoolRows.recipients)}`],
      ['delivery log', DELIVERY_LOG ? `attempts by server and code: ${Object.entries(dlog.attempts).sort().map(([k, v]) => `${k}: ${v}`).join(', ')}; final: ${Object.entries(dlog.finals).map(([k, v]) => `${k} ${v}`).join(', ')}; messages with more than one attempt: ${dlog.retried_messages}; delivered logged twice: ${dlog.delivered_twice}` : 'off'],
      ['accept latency (final dot → 250)', `p50 ${f(median(soakSamples.map((s) => s.accept_p50_ms)))} ms (median of 10 s windows), p99 ${f(median(soakSamples.map((s) => s.accept_p99_ms)))} ms (median), worst window p99 ${f(Math.max(...soakSamples.map((s) => s.accept_p99_ms ?? 0)))} ms`],
      ['smtplb log (level warn)', `${logLines.length} lines`],
      ['queue during the soak', `max ${(result.queue_during_soak as Record<string, number>).max_open}, mean ${(result.queue_during_soak as Record<string, number>).mean_open} open recipients`],
      ['RSS (VmRSS)', `soak start ${f(first?.rss_mb, 1)} MB, after warm-up ${f(afterWarm?.rss_mb, 1)}, soak end ${f(lastSoak?.rss_mb, 1)}, after drain ${f(endRow?.rss_mb, 1)}; peak (VmHWM) ${f(hwm, 1)} MB`],
      ['**RSS slope** (least squares, after warm-up)', `**${f(rssFit.slope, 2)} ± ${f(rssFit.se, 2)} MB/hour** over ${fitted.length} samples / ${f(windowH * 60, 1)} min (${f(rssFit.slope * windowH, 1)} MB over the window, mean ${f(rssMean, 1)} MB): ${rssFlat ? 'flat' : rssFit.slope > 0 ? '**growing**' : 'falling'}`],
      ['RSS / fd slope, first and second half of that window', `RSS ${f(halves[0].rss.slope, 2)} ± ${f(halves[0].rss.se, 2)} then ${f(halves[1].rss.slope, 2)} ± ${f(halves[1].rss.se, 2)} MB/hour; fds ${f(halves[0].fds.slope, 2)} then ${f(halves[1].fds.slope, 2)} per hour`],
      ['heap used', `after warm-up ${f(afterWarm?.heap_used_mb ?? undefined, 1)} MB, soak end ${f(lastSoak?.heap_used_mb ?? undefined, 1)} MB; slope ${f(heapFit.slope, 2)} ± ${f(heapFit.se, 2)} MB/hour`],
      ['open descriptors', `soak start ${first?.fds}, after warm-up ${afterWarm?.fds}, soak end ${lastSoak?.fds}, after drain ${endRow?.fds}; range after warm-up ${(mem.fds_min_max_fitted as number[]).join('–')}`],
      ['**fd slope** (least squares, after warm-up)', `**${f(fdFit.slope, 2)} ± ${f(fdFit.se, 2)} per hour** (${f(fdFit.slope * windowH, 1)} over the window, mean ${f(fdMean, 1)}): ${fdFlat ? 'flat' : fdFit.slope > 0 ? '**growing**' : 'falling'}`],
      ['spool index (queue.db + WAL)', `${f(soakSamples[0]?.spool_index_mb, 1)} MB at soak start, ${f(lastSoak?.spool_index_mb, 1)} MB at soak end, ${f(indexMb, 1)} MB after stop`],
      ['verdict', ok ? 'every accepted message delivered exactly once; the queue drained' : '**FAILED**: see above'],
    ];
    const perMinute: string[] = ['| t (min) | phase | RSS MB | heap MB | fds | queue open | accepted | delivered a + b | sink b | accept p99 ms | load |', '|---|---|---|---|---|---|---|---|---|---|---|'];
    let lastMin = -Infinity;
    for (const s of samples) {
      if (s.phase === 'soak' && s.t - lastMin < 60 && s !== lastSoak) continue;
      if (s.phase === 'capacity' || s.phase === 'cap-drain') {
        if (s !== samples.filter((x) => x.phase === s.phase).pop()) continue;
      }
      if (s.phase === 'soak') lastMin = s.t;
      perMinute.push(`| ${f(s.t / 60, 1)} | ${s.phase} | ${f(s.rss_mb, 1)} | ${f(s.heap_used_mb, 1)} | ${s.fds} | ${s.queue_open} | ${s.accepted} | ${s.delivered_a} + ${s.delivered_b} | ${s.sink_b_process_up ? 'up' : 'down'} | ${f(s.accept_p99_ms)} | ${s.loadavg} |`);
    }
    const lines = [
      `# Soak: ${MINUTES} minutes at ${(FRACTION * 100).toFixed(0)}% of capacity, one upstream flapping every ${FLAP_S} s (issue #10)${aborted ? ': INTERRUPTED (SIGINT)' : ''}`,
      '',
      `${started.toISOString()}, \`${result.command}\` (${((Date.now() - started.getTime()) / 60000).toFixed(1)} min in all). Not part of CI.`,
      '',
      ...machine(),
      '',
      `smtplb (\`node bin/smtplb.js start\`, one process) with a \`mode: smtp\` listener (\`delivery: queue\`: every message fsync'd before the 250), an admin port${DELIVERY_LOG ? ', a delivery log file' : ''}, and one pool of two \`smtplb sink\` upstreams on loopback (\`balance: roundrobin\`, \`health: { check: smtp, interval: 1s, timeout: 1s, rise: 2, fall: 2 }\`, \`destination_concurrency: 20\`, \`queue.retry: [5s, 30s, 1m]\`). The bench sends 1 KB messages over ${CONNECTIONS} connections (each closed and opened again after ${PER_CONNECTION} messages), every message to its own address s<N>@soak.test with Message-ID <soak-N@source.test>; the sinks count copies per address (each sink run writes its final counts when stopped). A message refused with 4xx/5xx, or whose connection went before the final dot, is sent again under the same number; one whose connection went after the dot is "unknown" and not sent again.`,
      '',
      `First ${FIXED_RATE ? '(skipped: a fixed rate was given)' : `${CAPACITY_S} s unthrottled: capacity = messages reaching the sinks per second after the first 5 s`}; the queue drains; then the soak, paced (message k due at start + k/rate), with sink b stopped (SIGTERM: it closes its listener and every session at once, mid-transaction ones too) for ${DOWN_S} s every ${FLAP_S} s and started again on the same port. Every ${SAMPLE_S} s: smtplb's VmRSS and /proc/PID/fd count, heap used (/metrics), queue (/api/status), counts. Slopes: least squares over the soak's samples from ${WARMUP_S} s on (± standard error). "Flat": the fitted change over the window is within 5% of the mean RSS (or 5 MB), and within 10% of the mean descriptor count (or 5).`,
      '',
      '## Figures',
      '',
      '| measure | value |',
      '|---|---|',
      ...rows.map(([k, v]) => `| ${k} | ${v} |`),
      '',
      '## Flaps',
      '',
      '| # | down at (s) | up at (s) | sink b took in that run | smtplb saw it down after (s) | and up after (s) |',
      '|---|---|---|---|---|---|',
      ...flaps.map((x, i) => `| ${i + 1} | ${x.down_at_s} | ${x.up_at_s} | ${x.b_taken_in_incarnation ?? '–'} | ${f(x.lb_saw_down_s, 1)} | ${f(x.lb_saw_up_s, 1)} |`),
      '',
      `## Samples (one a minute; all ${samples.length}, every ${SAMPLE_S} s, in bench/results-soak.json)`,
      '',
      ...perMinute,
      ...(Object.keys(dlog.failed_replies).length ? ['', '## Failed delivery attempts (delivery log, most frequent texts)', '', '| server: reply | attempts |', '|---|---|', ...Object.entries(dlog.failed_replies).map(([k, v]) => `| ${k.replace(/\|/g, '\\|')} | ${v} |`)] : []),
      ...(logLines.length ? ['', `## smtplb log (${logLines.length} lines at level warn; the last ${Math.min(20, logLines.length)})`, '', '```', ...logLines.slice(-20).map((l) => l.slice(0, 400)), '```'] : []),
      ...(evidence.length ? ['', '## Evidence (lost or duplicated messages)', '', '```', ...evidence, '```', '', `Work directory kept: ${work}`] : []),
      '',
    ];
    const md = lines.join('\n');
    console.log(`\n${md}`);
    if (aborted) {
      // An interrupted run does not replace the results; its figures stay with the work directory.
      keepWork = true;
      fs.writeFileSync(path.join(work, 'results-soak.md'), md);
      fs.writeFileSync(path.join(work, 'results-soak.json'), `${JSON.stringify({ ...result, events, samples }, null, 1)}\n`);
    } else if (!env.SOAK_NO_WRITE) {
      fs.writeFileSync(path.join(ROOT, 'bench/results-soak.md'), md);
      fs.writeFileSync(path.join(ROOT, 'bench/results-soak.json'), `${JSON.stringify({ ...result, events, samples }, null, 1)}\n`);
      console.log('written: bench/results-soak.md, bench/results-soak.json');
    }
    if (keepWork) console.log(`work directory kept for evidence: ${work}`);
  } catch (e) {
    exit = 1;
    keepWork = true;
    console.error(`soak failed: ${(e as Error).stack ?? e}`);
    if (smtplb) console.error(`smtplb log (end):\n${fs.existsSync(smtplbLog) ? fs.readFileSync(smtplbLog, 'utf8').slice(-3000) : ''}`);
    if (samples.length) {
      const partial = path.join(work, 'samples-partial.json');
      fs.writeFileSync(partial, `${JSON.stringify({ ...result, events, samples }, null, 1)}\n`);
      console.error(`partial samples: ${partial}`);
    }
  } finally {
    gen.stopped = true;
    flapping = false;
    sampling = false;
    await sampler?.catch(() => undefined);
    await flapper?.catch(() => undefined);
    if (smtplb) await stopChild(smtplb, 60_000);
    await Promise.all([sinks.a.stop().catch(() => undefined), sinks.b.stop().catch(() => undefined)]);
    for (const c of [...children]) await stopChild(c, 5000);
    if (!keepWork) fs.rmSync(work, { recursive: true, force: true });
    else console.log(`work directory kept: ${work}`);
  }
  return aborted ? 130 : exit;
}

function median(xs: (number | null)[]): number {
  const v = xs.filter((x): x is number => x !== null).sort((a, b) => a - b);
  return v.length ? v[Math.floor(v.length / 2)] : NaN;
}

function sinkTotal(runs: { messages: number | null }[]): number {
  return runs.reduce((t, r) => t + (r.messages ?? 0), 0);
}

if (process.argv[2] === 'sink') {
  sinkMain(process.argv.slice(3)).catch((e) => {
    console.error(`sink: ${(e as Error).message}`);
    process.exit(1);
  });
} else {
  main().then(
    (code) => process.exit(code),
    (e) => {
      console.error(`soak failed: ${(e as Error).stack ?? e}`);
      for (const c of children) c.kill('SIGKILL');
      process.exit(1);
    },
  );
}

/** smtplb's CPU seconds per 1,000 messages accepted over the paced soak (its first and last samples). */
function soakCpuPer1k(samples: { phase: string; cpu_s: number; accepted: number }[]): string {
  const soak = samples.filter((x) => x.phase === 'soak');
  if (soak.length < 2) return 'not sampled';
  const [a, b] = [soak[0], soak[soak.length - 1]];
  const n = b.accepted - a.accepted;
  return n > 0 ? `${((b.cpu_s - a.cpu_s) * 1000 / n).toFixed(2)} CPU s per 1,000 messages (${(b.cpu_s - a.cpu_s).toFixed(0)} s for ${n} messages; a paced rate, so fixed per-second costs weigh in)` : 'no messages';
}
