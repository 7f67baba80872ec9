// The dependency rules of .dependency-cruiser.cjs, held by the suite: no import cycle in src;
// listeners import no admin, runtime or scheduler; the store (spool) imports no scheduler,
// delivery, runtime or admin; cluster code imports nothing of the spool; health and balancing
// import no listener; decision modules do no I/O. The second test proves the rules bite: the
// same rule set run over a small tree with a cycle and a listener reaching into admin reports
// both (so a rule that silently matched nothing would fail here).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cruise, type ICruiseResult, type IForbiddenRuleType } from 'dependency-cruiser';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const config = createRequire(import.meta.url)(path.join(ROOT, '.dependency-cruiser.cjs')) as { forbidden: IForbiddenRuleType[]; options: Record<string, unknown> };

async function check(baseDir: string): Promise<ICruiseResult> {
  const { tsConfig: _ignored, ...options } = config.options;
  const r = await cruise(['src'], { ...options, baseDir, validate: true, ruleSet: { forbidden: config.forbidden }, outputType: 'json' });
  return (typeof r.output === 'string' ? JSON.parse(r.output) : r.output) as ICruiseResult;
}

const describe = (r: ICruiseResult) => r.summary.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}${v.cycle ? ` (cycle: ${v.cycle.map((c) => (typeof c === 'string' ? c : c.name)).join(' -> ')})` : ''}`);

test('src keeps the dependency rules: no cycles, listeners at the edge, the store below the scheduler, pure decisions', async () => {
  const r = await check(ROOT);
  assert.ok(r.summary.totalCruised > 80, `the whole of src was read (${r.summary.totalCruised} modules)`);
  assert.deepEqual(describe(r), [], 'dependency rule violations (see .dependency-cruiser.cjs)');
});

test('the rules report a cycle, a listener importing admin, a spool module importing the scheduler and a decision module doing I/O', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtplb-deps-'));
  try {
    const put = (file: string, text: string) => {
      fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
      fs.writeFileSync(path.join(dir, file), text);
    };
    put('src/admin/metrics.ts', "import { relay } from '../runtime/relay.js';\nexport const m = relay;\n");
    put('src/runtime/relay.ts', "import { m } from '../admin/metrics.js';\nexport const relay = () => m;\n");
    put('src/listeners/smtp-listener.ts', "import { m } from '../admin/metrics.js';\nexport const l = m;\n");
    put('src/scheduler/retry.ts', "export const r = 1;\n");
    put('src/spool/spool.ts', "import { r } from '../scheduler/retry.js';\nexport const s = r;\n");
    put('src/routing/route.ts', "import fs from 'node:fs';\nexport const route = fs.existsSync;\n");
    const rules = new Set(describe(await check(dir)).map((v) => v.split(':')[0]));
    assert.deepEqual([...rules].sort(), ['decisions-are-pure', 'listeners-stay-at-the-edge', 'no-cycles', 'store-does-not-schedule']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('no file in src is over 600 lines (one job per module)', () => {
  const over: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) {
        const lines = fs.readFileSync(p, 'utf8').split('\n').length - 1;
        if (lines > 600) over.push(`${path.relative(ROOT, p)}: ${lines} lines`);
      }
    }
  };
  walk(path.join(ROOT, 'src'));
  assert.deepEqual(over, [], 'split these by job (test/dependencies.test.ts)');
});
