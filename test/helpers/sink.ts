// `smtplb sink` as a child process (the real CLI, `node bin/smtplb.js sink ...`) on free
// loopback ports, for tests that need an MTA which misbehaves on cue. Stopped by `stopAll`.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { SinkStats } from '../../src/sink/sink.js';
import { BIN, freePort, onStop, tmpDir } from './peers.js';

export type { SinkStats } from '../../src/sink/sink.js';

export interface SmtplbSink {
  port: number;
  statsPort: number;
  proc: ChildProcess;
  /** stdout + stderr so far. */
  output(): string;
  /** GET /stats (with the per-recipient map unless `recipients: false`). */
  stats(opts?: { recipients?: boolean }): Promise<SinkStats>;
  /** POST /reset: counters back to zero. */
  reset(): Promise<void>;
  /** SIGTERM, and wait for the exit (SIGKILL after 5 s). Resolves with the exit code. */
  stop(): Promise<number | null>;
}

export interface SinkStartOptions {
  /** Compact rules, each passed as `--rule TEXT`, e.g. `rcpt=bad*@*,reply=550 5.1.1 User unknown`. */
  rules?: string[];
  /** YAML written to a file and passed as `-c FILE`. */
  yaml?: string;
  /** More CLI arguments (`--verbose`, `--greeting ...`). */
  args?: string[];
  port?: number;
  /** The loopback address to listen on (127.0.0.1 by default; any 127/8 address works on Linux). */
  host?: string;
}

/** Start `smtplb sink`; resolves once it printed "sink listening on ...". */
export async function startSmtplbSink(opts: SinkStartOptions = {}): Promise<SmtplbSink> {
  const port = opts.port ?? (await freePort());
  const statsPort = await freePort();
  const args = [BIN, 'sink', '--listen', `${opts.host ?? '127.0.0.1'}:${port}`, '--stats', `127.0.0.1:${statsPort}`];
  if (opts.yaml !== undefined) {
    const file = path.join(tmpDir('smtplb-sink-'), 'sink.yaml');
    fs.writeFileSync(file, opts.yaml);
    args.push('-c', file);
  }
  for (const r of opts.rules ?? []) args.push('--rule', r);
  args.push(...(opts.args ?? []));
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (c) => (out += c));
  proc.stderr!.on('data', (c) => (out += c));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const base = `http://127.0.0.1:${statsPort}`;
  const sink: SmtplbSink = {
    port,
    statsPort,
    proc,
    output: () => out,
    stats: async (o) => {
      const res = await fetch(`${base}/stats${o?.recipients === false ? '?recipients=0' : ''}`);
      if (!res.ok) throw new Error(`sink stats: HTTP ${res.status}`);
      return (await res.json()) as SinkStats;
    },
    reset: async () => {
      const res = await fetch(`${base}/reset`, { method: 'POST' });
      if (!res.ok) throw new Error(`sink reset: HTTP ${res.status}`);
      await res.arrayBuffer();
    },
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      proc.kill('SIGTERM');
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
  onStop(() => sink.stop().then(() => undefined));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`smtplb sink did not start within 10 s:\n${out}`)), 10_000);
    const check = () => {
      if (/^sink listening on /m.test(out)) {
        clearTimeout(t);
        proc.stdout!.off('data', check);
        resolve();
      }
    };
    proc.stdout!.on('data', check);
    exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`smtplb sink exited ${code} before listening:\n${out}`));
    });
    check();
  });
  return sink;
}
