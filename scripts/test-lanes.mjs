// Runs the compiled test files in two lanes side by side, then the files whose assertions
// measure time closely, one at a time with nothing beside them. Most of the suite waits on
// sockets and timers, not on the CPU, so two lanes on 2 cores take a little over half the time
// of one; the files in SOLO assert latencies and rates that a busy neighbour would distort.
//
// Why by hand: node --test --test-concurrency=2 cannot keep the Postfix files (they share
// /etc/postfix and one master) apart, nor give each running file a port range of its own
// (SMTPLB_TEST_LANE, read by test/helpers/peers.ts).
//
// Usage: node scripts/test-lanes.mjs [file ...]   (default: every dist/test/**/*.test.js)
// Prints each lane's report when it ends, then "N passed, N failed"; exits 1 on any failure.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const dist = path.join(root, 'dist/test');

// Run alone: a dashboard refresh under 100 ms, a rate within 10%, a greeting within 100 ms,
// 10 messages past a 20,000 backlog within 2 s.
const SOLO = ['dashboard-charts', 'queue-manager', 'cluster-redis', 'hardening'];
// One Postfix at a time (/etc/postfix, one master): these share a lane.
const POSTFIX = ['deliverability', 'extensions', 'relay-postfix', 'tcp-peers', 'upstream-tls-verify', 'dkim', 'pushback'];
// Seconds per file on the 2-core CI machine (session 12's run), to balance the lanes; a file
// not listed counts as 10 s.
const SECONDS = {
  'events': 30, 'relay': 30, 'workers-admin': 27, 'workers-relay': 24, 'kill-under-load': 22,
  'tcp-proxy': 20, 'discovery': 15, 'demo': 13, 'spool-blob': 12, 'mx': 11, 'fuzz': 11,
  'relay-durability': 10, 'suppression': 10, 'ops': 10, 'config': 9, 'tcp-relay': 8, 'edge': 8,
  'relay-edges': 7, 'upstream-garbage': 7, 'spool-readonly': 6, 'doctor': 6, 'hardening-reload': 5,
  'hardening-decisions': 5, 'upstream-idle': 5, 'spool-full': 4, 'sink': 3, 'pipelining': 3,
  'cluster': 2, 'hardening-dkim': 2, 'durability-order': 2, 'sites': 17, 'unsubscribe': 3, 'feedback': 3, 'pushback': 10, 'compliance': 13,
};

function allFiles(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory() && e.name !== 'helpers') out.push(...allFiles(p));
    else if (e.isFile() && e.name.endsWith('.test.js')) out.push(p);
  }
  return out.sort();
}

const files = process.argv.length > 2 ? process.argv.slice(2).map((f) => path.resolve(f)) : allFiles(dist);
const base = (f) => path.basename(f, '.test.js');
const isUnit = (f) => path.basename(path.dirname(f)) === 'unit';
const weight = (f) => (isUnit(f) ? 1 : SECONDS[base(f)] ?? 10);

const solo = files.filter((f) => !isUnit(f) && SOLO.includes(base(f)));
const lanes = [{ files: [], load: 0 }, { files: [], load: 0 }];
for (const f of files.filter((f) => !isUnit(f) && POSTFIX.includes(base(f)))) {
  lanes[0].files.push(f);
  lanes[0].load += weight(f);
}
const rest = files.filter((f) => !solo.includes(f) && !lanes[0].files.includes(f)).sort((a, b) => weight(b) - weight(a));
for (const f of rest) {
  const lane = lanes[0].load <= lanes[1].load ? lanes[0] : lanes[1];
  lane.files.push(f);
  lane.load += weight(f);
}

const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtplb-lanes-'));
const ARGS = ['--test', '--test-concurrency=1', '--test-timeout=600000', '--test-force-exit', '--test-reporter=spec'];

/** One `node --test` over `list`; its report goes to a file (printed whole when it ends) or to our stdout. */
function runLane(name, list, lane, toFile) {
  return new Promise((resolve) => {
    if (!list.length) return resolve({ name, text: '' });
    const log = path.join(logDir, `${name}.log`);
    const out = toFile ? fs.openSync(log, 'w') : 'pipe';
    const child = spawn(process.execPath, [...ARGS, ...list], {
      cwd: root,
      env: { ...process.env, SMTPLB_TEST_LANE: String(lane) },
      stdio: ['ignore', out, out],
    });
    let text = '';
    if (!toFile) {
      child.stdout.on('data', (d) => {
        process.stdout.write(d);
        text += d;
      });
      child.stderr.on('data', (d) => {
        process.stderr.write(d);
        text += d;
      });
    }
    child.on('exit', (code) => {
      if (toFile) {
        fs.closeSync(out);
        text = fs.readFileSync(log, 'utf8');
        process.stdout.write(`\n===== lane ${name} (${list.length} files) =====\n${text}`);
      }
      resolve({ name, text, code });
    });
  });
}

const started = Date.now();
console.log(`lanes: a ${lanes[0].files.length} files (~${lanes[0].load} s), b ${lanes[1].files.length} files (~${lanes[1].load} s), then ${solo.length} alone`);
const results = await Promise.all([runLane('a', lanes[0].files, 0, true), runLane('b', lanes[1].files, 1, true)]);
console.log(`\n===== alone: ${solo.map(base).join(', ')} =====`);
results.push(await runLane('solo', solo, 2, false));

const count = (text, key) => [...text.matchAll(new RegExp(`^ℹ ${key} (\\d+)$`, 'gm'))].reduce((s, m) => s + Number(m[1]), 0);
const passed = results.reduce((s, r) => s + count(r.text, 'pass'), 0);
const failed = results.reduce((s, r) => s + count(r.text, 'fail') + count(r.text, 'cancelled'), 0);
const badExit = results.filter((r) => r.code !== undefined && r.code !== 0).map((r) => r.name);
console.log(`\nsuite: ${Math.round((Date.now() - started) / 1000)} s`);
if (badExit.length && failed === 0) console.log(`lanes that exited non-zero without a failed test: ${badExit.join(', ')}`);
console.log(`${passed} passed, ${failed} failed`);
fs.rmSync(logDir, { recursive: true, force: true });
process.exit(failed > 0 || badExit.length ? 1 : 0);
