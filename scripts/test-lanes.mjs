// Runs the compiled test files in two lanes side by side, then the few tests whose assertions
// measure time closely, alone with nothing beside them. Most of the suite waits on sockets and
// timers, not on the CPU, so two lanes on 2 cores take a little over half the time of one; the
// tests in SOLO_TESTS assert latencies and rates that a busy neighbour would distort.
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

// The tests that assert latencies and rates closely run alone, after the lanes: a dashboard
// refresh under 100 ms, a rate within 10%, a greeting within 100 ms or 1 s under load, 10
// messages past a 20,000 backlog within 2 s. They are written `timingTest(...)`
// (test/helpers/peers.ts), which skips them in the lanes (SMTPLB_TEST_PHASE=lanes); their
// files' other tests run there. Here they are named, to run them alone after the lanes; the
// count of tests skipped in the lanes must equal the count run alone, or the suite fails.
const SOLO_TESTS = {
  'dashboard-charts': ['refreshes in under 100 ms', 'charts in headless Chromium'],
  'queue-manager': ['arrive within 2 s', 'greets within 100 ms'],
  'cluster-redis': ['is within 10% of 30/s'],
  'hardening': ['slowloris'],
};
const SOLO = Object.keys(SOLO_TESTS);
const escape = (t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const soloPattern = Object.values(SOLO_TESTS).flat().map(escape).join('|');
// One Postfix at a time (/etc/postfix, one master): these share a lane.
const POSTFIX = ['deliverability', 'extensions', 'relay-postfix', 'tcp-peers', 'upstream-tls-verify', 'dkim', 'pushback'];
// Seconds per file on the 2-core CI machine (session 12's run; the solo files without their
// solo tests), to balance the lanes; a file not listed counts as 10 s.
const SECONDS = {
  'queue-manager': 52, 'cluster-redis': 49, 'dashboard-charts': 23, 'hardening': 12,
  'events': 30, 'relay': 30, 'workers-admin': 27, 'workers-relay': 24, 'kill-under-load': 22,
  'tcp-proxy': 20, 'discovery': 15, 'demo': 13, 'spool-blob': 12, 'mx': 11, 'fuzz': 11,
  'relay-durability': 10, 'suppression': 10, 'ops': 10, 'config': 9, 'tcp-relay': 8, 'edge': 8,
  'relay-edges': 7, 'upstream-garbage': 7, 'spool-readonly': 6, 'doctor': 6, 'hardening-reload': 5,
  'hardening-decisions': 5, 'upstream-idle': 5, 'spool-full': 4, 'sink': 3, 'pipelining': 3,
  'cluster': 2, 'hardening-dkim': 2, 'durability-order': 2, 'sites': 20, 'unsubscribe': 3, 'feedback': 3, 'pushback': 10, 'compliance': 13,
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
// The solo files run in the lanes too, for their other tests (a negative name pattern).
const rest = files.filter((f) => !lanes[0].files.includes(f)).sort((a, b) => weight(b) - weight(a));
for (const f of rest) {
  const lane = lanes[0].load <= lanes[1].load ? lanes[0] : lanes[1];
  lane.files.push(f);
  lane.load += weight(f);
}

const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtplb-lanes-'));
const ARGS = ['--test', '--test-concurrency=1', '--test-timeout=600000', '--test-force-exit', '--test-reporter=spec'];

/** One `node --test` over `list`; its report goes to a file (printed whole when it ends) or to our stdout. */
function runLane(name, list, lane, toFile, pattern, phase) {
  return new Promise((resolve) => {
    if (!list.length) return resolve({ name, text: '' });
    const log = path.join(logDir, `${name}.log`);
    const out = toFile ? fs.openSync(log, 'w') : 'pipe';
    const child = spawn(process.execPath, [...ARGS, ...(pattern ? [`--test-name-pattern=${pattern}`] : []), ...list], {
      cwd: root,
      env: { ...process.env, SMTPLB_TEST_LANE: String(lane), SMTPLB_TEST_PHASE: phase },
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
const results = await Promise.all([runLane('a', lanes[0].files, 0, true, '', 'lanes'), runLane('b', lanes[1].files, 1, true, '', 'lanes')]);
console.log(`\n===== alone: ${Object.values(SOLO_TESTS).flat().join('; ')} =====`);
const alone = await runLane('solo', solo, 2, false, soloPattern, 'solo');

const count = (text, key) => [...text.matchAll(new RegExp(`^ℹ ${key} (\\d+)$`, 'gm'))].reduce((s, m) => s + Number(m[1]), 0);
// Every test skipped in the lanes must appear in the solo phase (a timingTest missing from
// SOLO_TESTS would otherwise run nowhere, silently).
const skippedNames = (text) => [...text.matchAll(/^﹣ (.*) \([\d.]+m?s\)(?: # .*)?$/gm)].map((m) => m[1]);
const aloneNames = new Set([...alone.text.matchAll(/^[✔✖﹣] (.*) \([\d.]+m?s\)(?: # .*)?$/gm)].map((m) => m[1]));
const nowhere = results.flatMap((r) => skippedNames(r.text)).filter((n) => !aloneNames.has(n));
results.push(alone);
const passed = results.reduce((s, r) => s + count(r.text, 'pass'), 0);
let failed = results.reduce((s, r) => s + count(r.text, 'fail') + count(r.text, 'cancelled'), 0);
if (nowhere.length) {
  console.log(`\nskipped in the lanes and not run alone (add them to SOLO_TESTS in scripts/test-lanes.mjs):\n  ${nowhere.join('\n  ')}`);
  failed += nowhere.length;
}
const badExit = results.filter((r) => r.code !== undefined && r.code !== 0).map((r) => r.name);
console.log(`\nsuite: ${Math.round((Date.now() - started) / 1000)} s`);
if (badExit.length && failed === 0) console.log(`lanes that exited non-zero without a failed test: ${badExit.join(', ')}`);
console.log(`${passed} passed, ${failed} failed`);
fs.rmSync(logDir, { recursive: true, force: true });
process.exit(failed > 0 || badExit.length ? 1 : 0);
