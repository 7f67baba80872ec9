// strace -f -ttt output as a list of completed system calls, for the tests that check the
// order of writes, syncs and replies (a kill -9 test cannot tell a missing fsync from a
// present one: the page cache survives a process kill; a trace can).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, onStop, portOpen, waitFor } from './peers.js';

export interface Call { pid: string; at: number; name: string; args: string; ret: string }

/** strace -f -ttt lines, with unfinished calls joined to their resumption (completion time). */
export function parseStrace(trace: string): Call[] {
  const open = new Map<string, { at: number; name: string; args: string }>();
  const calls: Call[] = [];
  for (const line of trace.split('\n')) {
    const m = /^(\d+)\s+(\d+\.\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const [, pid, t, rest] = m;
    const at = Number(t);
    const resumed = /^<\.\.\. (\w+) resumed>(.*)\)\s+=\s+(-?\d+)/.exec(rest);
    if (resumed) {
      const o = open.get(`${pid}|${resumed[1]}`);
      if (o) calls.push({ pid, at, name: o.name, args: o.args + resumed[2], ret: resumed[3] });
      continue;
    }
    const unfinished = /^(\w+)\((.*) <unfinished \.\.\.>$/.exec(rest);
    if (unfinished) {
      open.set(`${pid}|${unfinished[1]}`, { at, name: unfinished[1], args: unfinished[2] });
      continue;
    }
    const done = /^(\w+)\((.*)\)\s+=\s+(-?\d+)/.exec(rest);
    if (done) calls.push({ pid, at, name: done[1], args: done[2], ret: done[3] });
  }
  return calls.sort((a, b) => a.at - b.at);
}

/**
 * smtplb (`start -c file`) run under `strace -f -ttt -e trace=<calls> -s <strsize>`, ready once
 * `port` answers, killed by the test's stopAll if it is still there. `finish()` stops smtplb
 * itself with SIGTERM (strace ends with it and flushes the trace) and returns its calls.
 */
export async function startUnderStrace(file: string, port: number, o: { dir: string; calls: string; strsize: number }): Promise<{ proc: ChildProcess; finish: () => Promise<Call[]> }> {
  const trace = path.join(o.dir, 'trace');
  const proc = spawn('strace', ['-f', '-ttt', '-s', String(o.strsize), '-e', `trace=${o.calls}`, '-o', trace, process.execPath, BIN, 'start', '-c', file], { cwd: o.dir, stdio: 'ignore' });
  onStop(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    spawnSync('pkill', ['-KILL', '-f', file]);
  });
  await waitFor('smtplb under strace', () => portOpen(port), 30_000, 200);
  const finish = async () => {
    const exited = new Promise((r) => proc.once('exit', r));
    const child = spawnSync('pgrep', ['-P', String(proc.pid)], { encoding: 'utf8' }).stdout.trim().split('\n')[0];
    if (child) process.kill(Number(child), 'SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    return parseStrace(fs.readFileSync(trace, 'utf8'));
  };
  return { proc, finish };
}
