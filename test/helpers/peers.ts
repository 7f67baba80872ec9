// Real peers for the tests, each on a free loopback port and stopped by the test that started
// it: smtp-sink / smtp-source (Postfix), HAProxy, swaks, and smtplb itself as a child process.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = path.join(ROOT, 'bin/smtplb.js');

const cleanups: (() => Promise<void> | void)[] = [];
/** Register a cleanup; `stopAll` runs them (call it from `after`). */
export function onStop(fn: () => Promise<void> | void): void {
  cleanups.push(fn);
}
export async function stopAll(): Promise<void> {
  while (cleanups.length) {
    try {
      await cleanups.pop()!();
    } catch {
      /* keep stopping the rest */
    }
  }
}

export function tmpDir(prefix = 'smtplb-test-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(d, 0o777); // smtp-sink writes as nobody
  onStop(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

// Ports for the tests' servers come from below the kernel's ephemeral range (32768-60999
// here), so that no outgoing connection's source port can take one between the moment a test
// picks it and the moment a peer binds it, and each port is handed out once per test process:
// asking the kernel for port 0 and closing it again can hand the same port to the next caller
// before the first has bound it (a CI run saw the admin port taken by a sink started after it).
// scripts/test-lanes.mjs runs test files in lanes side by side; each lane (SMTPLB_TEST_LANE)
// has a range of its own, so two files running at once never pick the same port: up to three
// lanes and the tests run alone after them.
const LANES = 4;
const LANE = Math.min(LANES - 1, Math.max(0, Number(process.env.SMTPLB_TEST_LANE ?? 0) | 0));
const PORT_SPAN = 12_000 / LANES;
const PORT_LOW = 20_000 + LANE * PORT_SPAN;
let nextPort = PORT_LOW + ((process.pid * 97) % PORT_SPAN);
const handedOut = new Set<number>();

function bindable(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let tries = 0; tries < PORT_SPAN; tries++) {
    const port = nextPort;
    nextPort = nextPort + 1 >= PORT_LOW + PORT_SPAN ? PORT_LOW : nextPort + 1;
    if (handedOut.has(port)) continue;
    if (await bindable(port, host)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port between ${PORT_LOW} and ${PORT_LOW + PORT_SPAN - 1}`);
}

/**
 * A test that asserts a latency or a rate closely: skipped in the lanes of scripts/test-lanes.mjs
 * (SMTPLB_TEST_PHASE=lanes, where another file runs beside it) and run after them, alone (that
 * script's SOLO_TESTS names it). Anywhere else it is a plain test.
 */
export const timingTest: typeof test.skip = process.env.SMTPLB_TEST_PHASE === 'lanes' ? test.skip : test;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 10_000, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function portOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function stopChild(p: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    p.kill(signal);
  });
}

export interface Sink {
  port: number;
  dir: string;
  proc: ChildProcess;
  /** Messages written to the dump directory. */
  count(): number;
  messages(): string[];
  /** Wait until `n` messages are there and fully written (smtp-sink fills a file as DATA arrives). */
  settle(n: number, timeoutMs?: number): Promise<string[]>;
  stop(): Promise<void>;
  kill(): Promise<void>;
  restart(): Promise<void>;
}

/** smtp-sink on a free port, dumping every message to its own file. */
export async function startSink(opts: { port?: number; hostname?: string; args?: string[]; host?: string } = {}): Promise<Sink> {
  const port = opts.port ?? (await freePort());
  const dir = tmpDir('sink-');
  const host = opts.host ?? '127.0.0.1';
  const launch = () => {
    const args = ['-u', 'nobody', '-d', `${dir}/m.`, ...(opts.hostname ? ['-h', opts.hostname] : []), ...(opts.args ?? []), `${host}:${port}`, '1000'];
    return spawn('/usr/sbin/smtp-sink', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const sink: Sink = {
    port,
    dir,
    proc: launch(),
    count: () => fs.readdirSync(dir).filter((f) => f.startsWith('m.')).length,
    messages: () => fs.readdirSync(dir).filter((f) => f.startsWith('m.')).map((f) => fs.readFileSync(path.join(dir, f), 'latin1')),
    settle: async (n, timeoutMs = 15_000) => {
      await waitFor(`${n} messages at smtp-sink ${port}`, () => sink.count() >= n, timeoutMs);
      const size = () => fs.readdirSync(dir).reduce((t, f) => t + fs.statSync(path.join(dir, f)).size, 0);
      let last = -1;
      await waitFor('dump files complete', () => {
        const now = size();
        const stable = now === last;
        last = now;
        return stable;
      }, timeoutMs, 150);
      return sink.messages();
    },
    stop: () => stopChild(sink.proc),
    kill: () => stopChild(sink.proc, 'SIGKILL'),
    restart: async () => {
      sink.proc = launch();
      await waitFor(`smtp-sink on ${port}`, () => portOpen(port, host));
    },
  };
  onStop(() => sink.stop());
  await waitFor(`smtp-sink on ${port}`, () => portOpen(port, host));
  return sink;
}

export interface Smtplb {
  proc: ChildProcess;
  file: string;
  output(): string;
  stop(): Promise<void>;
  reload(): void;
}

/** smtplb start -c FILE as a child process; resolves once every listener accepts. */
export async function startSmtplb(configText: string, opts: { waitPorts?: number[]; dir?: string; env?: Record<string, string> } = {}): Promise<Smtplb> {
  const dir = opts.dir ?? tmpDir('smtplb-');
  const file = path.join(dir, 'smtplb.yaml');
  fs.writeFileSync(file, configText);
  let out = '';
  const proc = spawn(process.execPath, [BIN, 'start', '-c', file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ? { ...process.env, ...opts.env } : process.env });
  proc.stdout!.on('data', (c) => (out += c));
  proc.stderr!.on('data', (c) => (out += c));
  const lb: Smtplb = {
    proc,
    file,
    output: () => out,
    stop: () => stopChild(proc),
    reload: () => proc.kill('SIGHUP'),
  };
  onStop(() => lb.stop());
  const ports = opts.waitPorts ?? [...configText.matchAll(/listen:\s*127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
  await waitFor(`smtplb listening (${ports.join(', ')})\n${out}`, async () => {
    if (proc.exitCode !== null) throw new Error(`smtplb exited ${proc.exitCode}:\n${out}`);
    for (const p of ports) if (!(await portOpen(p))) return false;
    return true;
  });
  return lb;
}

export function runCli(args: string[], opts: { cwd?: string; input?: string; timeoutMs?: number } = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: opts.cwd, input: opts.input, encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface RunResult { code: number | null; stdout: string; stderr: string }

/** Run a program to completion without blocking the event loop (peers keep being served). */
export function run(cmd: string, args: string[], timeoutMs = 120_000): Promise<RunResult> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => (stdout += c));
    p.stderr.on('data', (c) => (stderr += c));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

export function swaks(args: string[]): Promise<RunResult> {
  return run('swaks', ['--hide-informational', ...args], 60_000);
}

/** smtp-source load: `sessions` in parallel, `messages` in all, each message 1 KB. */
export function smtpSource(port: number, messages: number, sessions = 10, extra: string[] = []): Promise<RunResult> {
  return run('/usr/sbin/smtp-source', ['-s', String(sessions), '-m', String(messages), '-l', '1000', '-f', 'load@source.test', '-t', 'rcpt@dest.test', ...extra, `127.0.0.1:${port}`], 300_000);
}

/** Read the SMTP greeting line through `port` and QUIT. */
export function greeting(port: number, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const t = setTimeout(() => {
      s.destroy();
      resolve(`timeout ${buf}`);
    }, timeoutMs);
    s.on('data', (c) => {
      buf += c.toString('latin1');
      if (/^\d{3} [^\r\n]*\r?\n/m.test(buf)) {
        clearTimeout(t);
        s.end('QUIT\r\n');
        resolve(buf.trim());
      }
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      resolve(`error ${e.code}`);
    });
    s.on('close', () => {
      clearTimeout(t);
      resolve(buf ? buf.trim() : 'closed');
    });
  });
}

export function haveCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

export interface HAProxy { port: number; stop(): Promise<void> }

export async function startHaproxy(cfgText: string, port: number): Promise<HAProxy> {
  const dir = tmpDir('haproxy-');
  const file = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(file, cfgText);
  const proc = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (c) => (err += c));
  const h = { port, stop: () => stopChild(proc) };
  onStop(h.stop);
  await waitFor(`haproxy on ${port}`, async () => {
    if (proc.exitCode !== null) throw new Error(`haproxy exited: ${err}`);
    return portOpen(port);
  });
  return h;
}

/** A self-signed certificate for TLS tests. */
export function selfSignedCert(dir: string, cn = 'localhost'): { cert: string; key: string } {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${cn}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  fs.chmodSync(key, 0o644);
  return { cert, key };
}

/** A raw SMTP client over one connection, for holding a session open across a reload. */
export function session(port: number, host = '127.0.0.1', localAddress?: string) {
  const sock = net.connect({ host, port, localAddress });
  sock.on('error', () => {});
  let buf = '';
  const waiters: (() => void)[] = [];
  let ended = false;
  sock.on('data', (c) => {
    buf += c.toString('latin1');
    waiters.splice(0).forEach((w) => w());
  });
  sock.on('close', () => {
    ended = true;
    waiters.splice(0).forEach((w) => w());
  });
  const reply = () =>
    new Promise<string>((resolve) => {
      const tryRead = () => {
        const m = /^(\d{3}) [^\n]*\n/m.exec(buf);
        if (!m && ended) return resolve(buf ? `closed after: ${buf.trim()}` : 'closed');
        if (!m) return waiters.push(tryRead);
        const end = m.index + m[0].length;
        const out = buf.slice(0, end);
        buf = buf.slice(end);
        resolve(out.trim());
      };
      tryRead();
    });
  return {
    reply,
    send: async (line: string) => {
      sock.write(`${line}\r\n`);
      return reply();
    },
    raw: (data: string | Buffer) => sock.write(data),
    closed: () => new Promise<void>((r) => (sock.destroyed ? r() : sock.once('close', () => r()))),
    close: () => sock.destroy(),
  };
}

