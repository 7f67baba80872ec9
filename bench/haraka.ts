// Haraka 3 as a benchmark peer (npm `Haraka`, installed by scripts/bench.sh into
// ~/.cache/smtplb-bench/haraka, outside the repo: not a project dependency): `queue` is its store-and-forward outbound, `forward` its
// smtp_forward (the upstream's answer before the client's). Both deliver to the bench sink;
// reverse DNS is answered locally, as smtplb does none.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BIN = path.join(os.homedir(), '.cache/smtplb-bench/haraka/node_modules/Haraka/bin/haraka');

export function harakaAvailable(): boolean {
  return fs.existsSync(BIN);
}

export function startHaraka(kind: 'queue' | 'forward', port: number, sinkPort: number): { proc: ChildProcess; dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `smtplb-bench-haraka-${kind}-`));
  fs.rmSync(dir, { recursive: true });
  spawnSync(process.execPath, [BIN, '-i', dir], { stdio: 'ignore' });
  const cfg = (f: string, text: string) => fs.writeFileSync(path.join(dir, 'config', f), text);
  cfg('smtp.ini', `[main]\nlisten=127.0.0.1:${port}\n`);
  cfg('log.ini', '[main]\nlevel=WARN\n');
  cfg('relay.ini', '[relay]\nacl=true\n');
  cfg('relay_acl_allow', '127.0.0.0/8\n');
  cfg('plugins', kind === 'queue' ? 'relay\nbench_sink\n' : 'relay\nbench_sink\nqueue/smtp_forward\n');
  cfg('smtp_forward.ini', `host=127.0.0.1\nport=${sinkPort}\nenable_outbound=true\nenable_tls=false\nmax_connections=1000\n`);
  fs.mkdirSync(path.join(dir, 'queue'), { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'plugins', 'bench_sink.js'),
    `exports.hook_lookup_rdns = function (next) { next(OK, 'localhost'); };\nexports.hook_get_mx = function (next) { next(OK, { exchange: '127.0.0.1', port: ${sinkPort}, priority: 0 }); };\n`,
  );
  const proc = spawn(process.execPath, [BIN, '-c', dir], { stdio: 'ignore' });
  return { proc, dir };
}
