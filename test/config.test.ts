// `smtplb check` / `start` on broken configs: exit 1, a message naming file, line and key,
// and never a stack trace.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';
import { freePort, ROOT, runCli, selfSignedCert, stopAll, tmpDir } from './helpers/peers.js';

after(stopAll);

const good = (port: number) => `hostname: gw.test
listeners:
  - { name: passthrough, listen: 127.0.0.1:${port}, mode: tcp, pool: relays }
pools:
  relays:
    servers:
      - { name: mta1, address: 127.0.0.1:2601, weight: 1 }
`;

function check(text: string) {
  const dir = tmpDir();
  const file = path.join(dir, 'smtplb.yaml');
  fs.writeFileSync(file, text);
  const r = runCli(['check', '-c', file]);
  return { ...r, file };
}

function assertNoStack(out: string) {
  assert.doesNotMatch(out, /\n\s+at .+\(.*:\d+:\d+\)/, 'no stack trace');
}

test('a valid config passes check', () => {
  const r = check(good(2525));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /OK/);
});

const cases: { name: string; edit: (t: string) => string; line: number; key: RegExp; what: RegExp }[] = [
  { name: 'unknown key', edit: (t) => t.replace('weight: 1 }', 'weight: 1, wieght: 2 }'), line: 7, key: /pools\.relays\.servers\[0\]\.wieght/, what: /unknown key/ },
  { name: 'bad address', edit: (t) => t.replace('127.0.0.1:2601', '127.0.0.1:http'), line: 7, key: /pools\.relays\.servers\[0\]\.address/, what: /not a valid port/ },
  { name: 'weight "abc"', edit: (t) => t.replace('weight: 1', 'weight: abc'), line: 7, key: /pools\.relays\.servers\[0\]\.weight/, what: /expected a number.*"abc"/ },
  {
    name: 'two listeners on one port',
    edit: (t) => t.replace('pool: relays }', 'pool: relays }\n  - { name: other, listen: 127.0.0.1:2525, mode: tcp, pool: relays }'),
    line: 4,
    key: /listeners\[1\]\.listen/,
    what: /clashes with listeners\[0\]/,
  },
  { name: 'listener naming a missing pool', edit: (t) => t.replace('pool: relays }', 'pool: relayz }'), line: 3, key: /listeners\[0\]\.pool/, what: /no pool named "relayz"/ },
  { name: 'route naming a missing pool', edit: (t) => `${t}routes:\n  - { domains: [gmail.com], pool: ghost }\n`, line: 9, key: /routes\[0\]\.pool/, what: /no pool named "ghost"/ },
  { name: 'bad duration', edit: (t) => t.replace('  relays:\n', '  relays:\n    health: { interval: soon }\n'), line: 6, key: /pools\.relays\.health\.interval/, what: /not a valid duration/ },
  { name: 'bad shaping rate', edit: (t) => `${t}shaping:\n  gmail.com: { rate: 600/fortnight }\n`, line: 9, key: /shaping\.gmail\.com\.rate/, what: /not a valid rate.*600\/fortnight/ },
  { name: 'bad warm-up date', edit: (t) => t.replace('weight: 1 }', 'weight: 1, warmup: { start: 2026-02-30, schedule: [50] } }'), line: 7, key: /pools\.relays\.servers\[0\]\.warmup\.start/, what: /not a valid date/ },
  { name: 'missing DKIM key file', edit: (t) => `${t}dkim:\n  domains:\n    example.com: { selector: s1, key_file: /nonexistent/k.pem }\n`, line: 10, key: /dkim\.domains\.example\.com\.key_file/, what: /cannot read \/nonexistent\/k\.pem: ENOENT/ },
  { name: 'bad backoff pattern', edit: (t) => `${t}backoff: { patterns: ["(unclosed"] }\n`, line: 8, key: /backoff\.patterns\[0\]/, what: /not a valid regular expression/ },
  { name: 'cluster with a URL that is not Redis', edit: (t) => `${t}cluster: { redis: "http://10.0.0.5:6379", node: gw1 }\n`, line: 8, key: /cluster\.redis/, what: /expected a Redis URL such as redis:\/\/127\.0\.0\.1:6379\/0/ },
  { name: 'YAML syntax error', edit: (t) => t.replace('servers:', 'servers: [\n'), line: 8, key: /YAML syntax/, what: /./ },
];

for (const c of cases) {
  test(`check rejects: ${c.name}`, () => {
    const r = check(c.edit(good(2525)));
    assert.equal(r.code, 1, r.stdout);
    const out = r.stderr;
    assert.match(out, new RegExp(`smtplb\\.yaml:${c.line}:\\d+: `), out);
    assert.match(out, c.key, out);
    assert.match(out, c.what, out);
    assertNoStack(out);
  });
}

test('a missing config file is a clear error', () => {
  const r = runCli(['check', '-c', '/nonexistent/smtplb.yaml']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot read the config file: ENOENT/);
  assertNoStack(r.stderr);
});

test('start exits 1 naming the listener when its port is already in use', async () => {
  const port = await freePort();
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', () => r()));
  try {
    const dir = tmpDir();
    const file = path.join(dir, 'smtplb.yaml');
    fs.writeFileSync(file, good(port));
    const r = runCli(['start', '-c', file], { timeoutMs: 20_000 });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /smtplb\.yaml:3:\d+: listeners\[0\]\.listen: cannot listen on 127\.0\.0\.1:\d+: the address is already in use/);
    assertNoStack(r.stderr);
  } finally {
    blocker.close();
  }
});

test('the configuration shown in the README passes check', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const yaml = /## Configuration\s+```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(yaml, 'the README has a yaml block under Configuration');
  const dir = tmpDir('readme-');
  fs.mkdirSync(path.join(dir, 'dkim'));
  const key = runCli(['dkim', 'keygen', '--domain', 'example.com', '--selector', 's2026', '--out', path.join(dir, 'dkim/example.com.pem')]);
  assert.equal(key.code, 0, key.stderr);
  fs.writeFileSync(path.join(dir, 'transport'), 'example.net smtp:[10.0.0.20]:25\n');
  fs.mkdirSync(path.join(dir, 'tls'));
  selfSignedCert(path.join(dir, 'tls'), 'gw.example.test');
  const file = path.join(dir, 'smtplb.yaml');
  fs.writeFileSync(file, yaml.replace('/etc/postfix/transport', path.join(dir, 'transport')));
  const r = runCli(['check', '-c', file]);
  assert.equal(r.code, 0, r.stderr);
});
