// docs/configuration.md is generated from the config schema (src/config/reference.ts). These
// tests fail when it is stale, and, walking the schema on their own, when a key of the schema
// is missing from it: a key added without `npm run docs:config` is caught either way.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { configReference } from '../src/config/reference.js';
import { configSchema } from '../src/config/schema.js';
import { ROOT } from './helpers/peers.js';

const DOC = path.join(ROOT, 'docs/configuration.md');

test('docs/configuration.md is what the schema generates, byte for byte', () => {
  assert.equal(fs.readFileSync(DOC, 'utf8'), configReference(), 'docs/configuration.md is stale: run npm run docs:config');
});

// A walk of zod v4 definitions written apart from the generator's: `[]` for a list of
// sections, `<*>` for a map's key (any `<placeholder>` in the document).
interface ZDef { type: string; innerType?: Z; shape?: Record<string, Z>; element?: Z; valueType?: Z; options?: Z[] }
interface Z { _zod: { def: ZDef } }

function bare(s: Z): Z {
  let t = s;
  while (['default', 'prefault', 'optional', 'nullable'].includes(t._zod.def.type)) t = t._zod.def.innerType!;
  return t;
}

function shapes(s: Z): Record<string, Z>[] {
  const d = bare(s)._zod.def;
  if (d.type === 'object') return [d.shape!];
  if (d.type === 'union') return d.options!.flatMap(shapes);
  return [];
}

function keyPaths(shape: Record<string, Z>, prefix: string, out: { path: string; leaf: boolean }[]): void {
  for (const [k, v] of Object.entries(shape)) {
    const p = prefix ? `${prefix}.${k}` : k;
    const d = bare(v)._zod.def;
    const inner = d.type === 'object' ? [{ shapes: [d.shape!], prefix: p }] : d.type === 'array' ? [{ shapes: shapes(d.element!), prefix: `${p}[]` }] : d.type === 'record' ? [{ shapes: shapes(d.valueType!), prefix: `${p}.<*>` }] : [];
    const children = inner.filter((c) => c.shapes.length);
    out.push({ path: p, leaf: children.length === 0 });
    for (const c of children) for (const s of c.shapes) keyPaths(s, c.prefix, out);
  }
}

test('every key path of the config schema is in docs/configuration.md', () => {
  const doc = fs.readFileSync(DOC, 'utf8');
  const paths: { path: string; leaf: boolean }[] = [];
  keyPaths((configSchema as unknown as Z)._zod.def.shape!, '', paths);
  const leaves = paths.filter((p) => p.leaf);
  assert.ok(leaves.length > 120, `the walk found only ${leaves.length} leaf keys`);
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const missing = paths.filter((p) => !new RegExp(`^\\| \`${p.path.split('<*>').map(escape).join('<[a-z-]+>')}\` \\|`, 'm').test(doc));
  assert.deepEqual(missing.map((p) => p.path), [], 'docs/configuration.md is stale: run npm run docs:config');
  // Keys the brief of issue #23 named as undocumented before the reference existed.
  for (const k of ['listeners[].cutthrough_fallback', 'listeners[].max_recipients', 'shutdown_timeout', 'pools.<name>.servers[].address', 'routes[].pool', 'queue.delay_warning']) assert.ok(doc.includes(`\`${k}\``), k);
});

test('the README stays a starting point: under 150 lines, opening with the two commands for a fresh machine (demo, then the suite)', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const lines = readme.split('\n').length - 1;
  assert.ok(lines < 150, `README.md has ${lines} lines: move detail to docs/`);
  const first = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
  const commands = first.split('\n').filter((l) => l.trim()).map((l) => l.replace(/\s+#.*$/, '').trim());
  assert.deepEqual(commands.slice(0, 2), ['npm install && npx smtplb demo', 'npm install && npm test'], 'the first code block: the demo, then the test suite');
  assert.ok(readme.indexOf('```sh') < readme.indexOf('\n## '), 'the commands come before the first section');
});
