// Runs the compiled test files in three lanes side by side, then the few tests whose
// assertions measure time closely, alone with nothing beside them. Most of the suite waits on
// sockets and timers, not on the CPU, so three lanes on 2 cores take well under half the time
// of one; the tests in SOLO_TESTS assert latencies and rates that a busy neighbour would distort.
//
// Each file is its own `node --test` process, handed to the next free lane, longest first (by
// the SECONDS table): lanes stay balanced however wrong a weight is, and each file's time is
// printed with its report, to keep the table right.
//
// Why by hand: node --test --test-concurrency=N cannot keep the Postfix files (they share
// /etc/postfix and one master) apart, nor give each running file a port range of its own
// (SMTPLB_TEST_LANE, read by test/helpers/peers.ts).
//
// Usage: node scripts/test-lanes.mjs [file ...]   (default: every dist/test/**/*.test.js)
// SMTPLB_TEST_LANES=1..3 sets the number of lanes (3 by default).
// Prints each file's report when it ends, then "N passed, N failed"; exits 1 on any failure.
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
// Seconds per file on the 2-core CI machine in three lanes (session 14's run), to start the
// longest first; a file not listed counts as 10 s.
const SECONDS = {
  'deliverability': 74, 'cluster-redis': 62, 'cluster-workers': 12, 'relay': 57, 'workers-admin': 56, 'queue-load': 54, 'extensions': 48,
  'workers-relay': 44, 'dashboard-charts': 39, 'kill-under-load': 36, 'sites': 35, 'tcp-proxy': 34, 'queue-manager': 33,
  'events': 30, 'hardening': 28, 'relay-durability': 25, 'suppression': 24, 'ops': 24, 'config': 24, 'tcp-relay': 20,
  'spool-blob': 20, 'discovery': 18, 'mx': 15, 'dkim': 15, 'compliance': 15, 'spool-full': 14, 'sink': 14, 'pushback': 13,
  'fuzz': 13, 'edge': 13, 'relay-postfix': 12, 'relay-edges': 12, 'upstream-tls-verify': 11, 'spool-readonly': 11,
  'hardening-reload': 11, 'doctor': 11, 'upstream-garbage': 10, 'hardening-decisions': 10, 'tcp-peers': 8,
  'unsubscribe': 7, 'pipelining': 7, 'feedback': 7, 'admission': 7, 'upstream-idle': 6, 'demo': 28, 'cluster': 6,
  'hardening-dkim': 5, 'durability-order': 5, 'dependencies': 4, 'queue-decisions': 3, 'hardening-clients': 3,
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
const LANE_COUNT = Math.min(3, Math.max(1, Number(process.env.SMTPLB_TEST_LANES ?? 3) | 0));
const NAMES = ['a', 'b', 'c'];
// The unit files together in one process (a second or two), then every other file, longest first.
const units = files.filter(isUnit);
const queue = files.filter((f) => !isUnit(f)).sort((a, b) => weight(b) - weight(a));
if (units.length) queue.push(units);

const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtplb-lanes-'));
const ARGS = ['--test', '--test-concurrency=1', '--test-timeout=600000', '--test-force-exit', '--test-reporter=spec'];

/** One `node --test` over `list`; its report goes to a file (printed whole when it ends) or to our stdout. */
function run(label, list, lane, toFile, pattern, phase) {
  return new Promise((resolve) => {
    if (!list.length) return resolve({ label, text: '' });
    const log = path.join(logDir, `${label.replace(/[^A-Za-z0-9_-]/g, '_')}.log`);
    const out = toFile ? fs.openSync(log, 'w') : 'pipe';
    const t0 = Date.now();
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
    // A run that cannot start counts as failed (and frees its lane, and the Postfix turn).
    let ended = false;
    child.on('error', (e) => {
      if (ended) return;
      ended = true;
      if (toFile) fs.closeSync(out);
      process.stdout.write(`\n===== lane ${NAMES[lane] ?? 'solo'}: ${label} could not start: ${e.message} =====\n`);
      resolve({ label, text: 'ℹ fail 1\n', code: 1, secs: 0, list, pattern, phase });
    });
    child.on('exit', (code) => {
      if (ended) return;
      ended = true;
      const secs = Math.round((Date.now() - t0) / 1000);
      if (toFile) {
        fs.closeSync(out);
        text = fs.readFileSync(log, 'utf8');
        process.stdout.write(`\n===== lane ${NAMES[lane] ?? 'solo'}: ${label} (${secs} s) =====\n${text}`);
      }
      resolve({ label, text, code, secs, list, pattern, phase });
    });
  });
}

// At most one Postfix file at a time: a lane whose next file would be a second one takes another.
let postfixBusy = false;
let waiting = [];
async function lane(i) {
  const done = [];
  for (;;) {
    // The Postfix files form a chain (one at a time): each starts as soon as the last ends.
    const isPf = (f) => !Array.isArray(f) && POSTFIX.includes(base(f));
    let k = postfixBusy ? -1 : queue.findIndex(isPf);
    if (k < 0) k = queue.findIndex((f) => !isPf(f));
    if (k < 0) {
      if (!queue.length) return done;
      await new Promise((r) => waiting.push(r));
      continue;
    }
    const [f] = queue.splice(k, 1);
    const list = Array.isArray(f) ? f : [f];
    const pf = isPf(f);
    if (pf) postfixBusy = true;
    done.push(await run(Array.isArray(f) ? 'unit' : base(f), list, i, true, '', 'lanes'));
    if (pf) {
      postfixBusy = false;
      const w = waiting;
      waiting = [];
      w.forEach((r) => r());
    }
  }
}

const started = Date.now();
console.log(`${queue.length} runs in ${LANE_COUNT} lanes, then ${solo.length} files' timing tests alone`);
const results = (await Promise.all(Array.from({ length: LANE_COUNT }, (_, i) => lane(i)))).flat();
const laneSecs = Math.round((Date.now() - started) / 1000);
console.log(`\n===== alone: ${Object.values(SOLO_TESTS).flat().join('; ')} =====`);
const alone = await run('solo', solo, 3, false, soloPattern, 'solo');

const count = (text, key) => [...text.matchAll(new RegExp(`^ℹ ${key} (\\d+)$`, 'gm'))].reduce((s, m) => s + Number(m[1]), 0);
// Every test skipped in the lanes must appear in the solo phase (a timingTest missing from
// SOLO_TESTS would otherwise run nowhere, silently).
const skippedNames = (text) => [...text.matchAll(/^﹣ (.*) \([\d.]+m?s\)(?: # .*)?$/gm)].map((m) => m[1]);
const aloneNames = new Set([...alone.text.matchAll(/^[✔✖﹣] (.*) \([\d.]+m?s\)(?: # .*)?$/gm)].map((m) => m[1]));
const nowhere = results.flatMap((r) => skippedNames(r.text)).filter((n) => !aloneNames.has(n));
results.push(alone);

// A run with a failure is run once more, alone, when at most three failed: on a shared 2-core
// machine a test that waits on a log line or a timer now and then loses to its neighbours. A
// test that passes alone is counted as passed and named below as flaky, to be looked at; one
// that fails again fails the suite. Many failures at once are not retried: something broke.
const failures = (r) => count(r.text, 'fail') + count(r.text, 'cancelled') + (r.code !== undefined && r.code !== 0 && count(r.text, 'fail') === 0 ? 1 : 0);
const failedNames = (text) => [...new Set([...text.matchAll(/^✖ (?!failing tests:)(.*) \([\d.]+m?s\)$/gm)].map((m) => m[1]))];
const flaky = [];
const toRetry = results.filter((r) => failures(r) > 0 && r.list);
if (toRetry.length && toRetry.length <= 3) {
  for (const r of toRetry) {
    console.log(`\n===== once more, alone: ${r.label} =====`);
    const again = await run(`${r.label}-again`, r.list, 3, false, r.pattern, r.phase);
    if (failures(again) === 0) {
      flaky.push(...failedNames(r.text).map((n) => `${r.label}: ${n}`));
      Object.assign(r, { text: again.text, code: again.code });
    }
  }
}
if (flaky.length) console.log(`\nflaky (failed beside the other lanes, passed alone):\n  ${flaky.join('\n  ')}`);
const passed = results.reduce((s, r) => s + count(r.text, 'pass'), 0);
let failed = results.reduce((s, r) => s + count(r.text, 'fail') + count(r.text, 'cancelled'), 0);
if (nowhere.length) {
  console.log(`\nskipped in the lanes and not run alone (add them to SOLO_TESTS in scripts/test-lanes.mjs):\n  ${nowhere.join('\n  ')}`);
  failed += nowhere.length;
}
const badExit = results.filter((r) => r.code !== undefined && r.code !== 0).map((r) => r.label);
const slowest = results.filter((r) => r.secs !== undefined && r.label !== 'solo').sort((a, b) => b.secs - a.secs).slice(0, 8);
console.log(`\nslowest files: ${slowest.map((r) => `${r.label} ${r.secs} s`).join(', ')}`);
console.log(`suite: ${Math.round((Date.now() - started) / 1000)} s (lanes ${laneSecs} s, alone ${Math.round((Date.now() - started) / 1000) - laneSecs} s)`);
if (badExit.length && failed === 0) console.log(`runs that exited non-zero without a failed test: ${badExit.join(', ')}`);
console.log(`${passed} passed, ${failed} failed`);
fs.rmSync(logDir, { recursive: true, force: true });
process.exit(failed > 0 || badExit.length ? 1 : 0);
