// Measuring helpers shared by the benchmarks: CPU and peak memory of a process tree read
// from /proc, child process control, medians.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../test/helpers/peers.js';

export const TICK = 100;

/** The Postfix test tools, where they are not in /usr/sbin (the 16-core machine runs them from a bundle). */
export const SMTP_SOURCE = process.env.SMTP_SOURCE ?? '/usr/sbin/smtp-source';
export const SMTP_SINK = process.env.SMTP_SINK ?? '/usr/sbin/smtp-sink'; // clock ticks per second for /proc/*/stat (Linux default)

export interface Sample { msgPerSec: number; cpuSec: number; rssMb: number }

export function descendants(pid: number): number[] {
  // Read from /proc (not `ps`): the 16-core machine the benches also run on may lack procps.
  const parent = new Map<number, number[]>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const ppid = Number(fs.readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      parent.set(ppid, [...(parent.get(ppid) ?? []), Number(d)]);
    } catch {
      /* exited */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const c of parent.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

export function cpuTicks(pids: number[]): number {
  let t = 0;
  for (const pid of pids) {
    try {
      const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      t += Number(f[11]) + Number(f[12]);
    } catch {
      /* exited */
    }
  }
  return t;
}

export function peakRssMb(pids: number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      kb += Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      /* exited */
    }
  }
  return kb / 1024;
}

export function startProc(cmd: string, args: string[]): ChildProcess {
  const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  return p;
}

export async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null) return;
  await new Promise<void>((r) => {
    p.once('exit', () => r());
    p.kill('SIGTERM');
    setTimeout(() => p.kill('SIGKILL'), 5000).unref();
  });
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * smtp-source with 1 KB messages; resolves with the seconds it took. `cpu` gets the CPU
 * seconds smtp-source itself used (bash's `times` after it, since its /proc entry is gone once
 * it exits), to say how much of the machine the load generator took.
 */
export function runSmtpSource(port: number, o: { messages: number; sessions: number; reuse: boolean; cpu?: (sec: number) => void }): Promise<number> {
  return new Promise((resolve, reject) => {
    const args = ['-s', String(o.sessions), '-m', String(o.messages), '-l', '1000', '-f', 'bench@source.test', '-t', 'rcpt@dest.test', ...(o.reuse ? ['-d'] : []), `127.0.0.1:${port}`];
    const started = process.hrtime.bigint();
    const p = spawn('bash', ['-c', `${SMTP_SOURCE} "$@"; rc=$?; times >&2; exit $rc`, 'smtp-source', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c) => (err += c));
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`smtp-source exited ${code}: ${err}`));
      // The second line of `times`: children's user and system time, as 0m1.234s 0m0.567s.
      const t = [...(err.trim().split('\n').pop() ?? '').matchAll(/(\d+)m([\d.]+)s/g)].reduce((a, m) => a + Number(m[1]) * 60 + Number(m[2]), 0);
      o.cpu?.(t);
      resolve(Number(process.hrtime.bigint() - started) / 1e9);
    });
  });
}

/**
 * smtplb (`start` from the checkout at `root`) as a queueing relay in front of one sink, in a
 * directory of its own: the setup the queue benchmarks share. `pool` and `extra` are YAML
 * lines added to the sink pool and to the top level.
 */
export async function startQueueRelay(root: string, name: string, sinkPort: number, o: { pool?: string[]; extra?: string; listener?: string } = {}): Promise<{ port: number; p: ChildProcess }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `bench-${name}-`));
  const port = await freePort();
  fs.writeFileSync(
    path.join(dir, 'c.yaml'),
    `hostname: ${name}.bench.test
log: { level: warn }
spool: ./spool
listeners:
  - { name: queue, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8]${o.listener ? `, ${o.listener}` : ''} }
pools:
  sink:
    reuse: { messages: 1000, seconds: 30s }
${(o.pool ?? []).map((l) => `    ${l}\n`).join('')}    servers: [ { name: sink, address: 127.0.0.1:${sinkPort} } ]
routes: [ { pool: sink } ]
queue: { retry: [1s], max_age: 1h }
${o.extra ?? ''}`,
  );
  const p = spawn(process.execPath, [path.join(root, 'bin/smtplb.js'), 'start', '-c', 'c.yaml'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  return { port, p };
}
