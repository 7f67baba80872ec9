// strace -f -ttt output as a list of completed system calls, for the tests that check the
// order of writes, syncs and replies (a kill -9 test cannot tell a missing fsync from a
// present one: the page cache survives a process kill; a trace can).
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
