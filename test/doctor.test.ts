// `smtplb doctor` against a loopback DNS server serving a zone with deliberate faults: an egress
// address missing from SPF, an SPF record over 10 lookups, a DKIM record with another key, a
// missing DMARC record, a PTR that does not match the HELO, and one domain that is right. The
// CLI must report exactly those faults, each with its fix, and nothing for the right domain; the
// daemon must show the same in /api/status and smtplb_identity_problems, and check again on reload.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { dkimKeygen } from '../src/signing/keygen.js';
import { reverseName, startDns, type Rec, type TestDns } from './helpers/dns.js';
import { BIN, freePort, run, startSmtplb, stopAll, tmpDir, waitFor } from './helpers/peers.js';

after(stopAll);

const TOKEN = 'doctor-token-1';
const A = '192.0.2.10';
const B = '192.0.2.11';

// Small keys keep every answer under 512 bytes (the test server answers over UDP only).
const keys = {
  good: dkimKeygen('good.test', 's1', 'rsa', 1024),
  spfmiss: dkimKeygen('spfmiss.test', 's1', 'ed25519'),
  dkimbad: dkimKeygen('dkimbad.test', 's1', 'rsa', 1024),
  other: dkimKeygen('dkimbad.test', 's1', 'rsa', 1024),
};

function zone(): Rec[] {
  const mx = (name: string): Rec => ({ type: 'MX', name, exchange: 'mx.good.test', priority: 10 });
  const spfOk = `v=spf1 ip4:${A} ip4:${B} -all`;
  const includes = Array.from({ length: 11 }, (_, i) => `i${i + 1}.spflong.test`);
  return [
    { type: 'A', name: 'mx.good.test', address: '192.0.2.25' },
    // good.test: everything right.
    { type: 'TXT', name: 'good.test', data: spfOk },
    { type: 'TXT', name: 'good.test', data: 'google-site-verification=abc' },
    { type: 'TXT', name: 's1._domainkey.good.test', data: keys.good.record },
    { type: 'TXT', name: '_dmarc.good.test', data: 'v=DMARC1; p=reject; rua=mailto:dmarc@good.test' },
    mx('good.test'),
    // spfmiss.test: B is not in SPF (DKIM passes, so DMARC still aligns).
    { type: 'TXT', name: 'spfmiss.test', data: `v=spf1 ip4:${A} -all` },
    { type: 'TXT', name: 's1._domainkey.spfmiss.test', data: keys.spfmiss.record },
    { type: 'TXT', name: '_dmarc.spfmiss.test', data: 'v=DMARC1; p=quarantine' },
    mx('spfmiss.test'),
    // spflong.test: both addresses first, then 11 includes (each one lookup).
    { type: 'TXT', name: 'spflong.test', data: `v=spf1 ip4:${A} ip4:${B} ${includes.map((i) => `include:${i}`).join(' ')} -all` },
    ...includes.map((name, i): Rec => ({ type: 'TXT', name, data: `v=spf1 ip4:198.51.100.${i + 1} -all` })),
    { type: 'TXT', name: '_dmarc.spflong.test', data: 'v=DMARC1; p=reject' },
    mx('spflong.test'),
    // dkimbad.test: the selector holds another key.
    { type: 'TXT', name: 'dkimbad.test', data: spfOk },
    { type: 'TXT', name: 's1._domainkey.dkimbad.test', data: keys.other.record },
    { type: 'TXT', name: '_dmarc.dkimbad.test', data: 'v=DMARC1; p=reject' },
    mx('dkimbad.test'),
    // nodmarc.test: no _dmarc record.
    { type: 'TXT', name: 'nodmarc.test', data: spfOk },
    mx('nodmarc.test'),
    // Egress: A's PTR is its HELO; B's PTR is another name (which does resolve back to B).
    { type: 'PTR', name: reverseName(A), domain: 'out-a.good.test' },
    { type: 'A', name: 'out-a.good.test', address: A },
    { type: 'PTR', name: reverseName(B), domain: 'mail.other.test' },
    { type: 'A', name: 'mail.other.test', address: B },
    { type: 'A', name: 'out-b.good.test', address: B },
  ];
}

function keyFiles(dir: string): Record<keyof typeof keys, string> {
  const out = {} as Record<keyof typeof keys, string>;
  for (const [k, v] of Object.entries(keys)) {
    const file = path.join(dir, `${k}.pem`);
    fs.writeFileSync(file, v.privateKeyPem);
    out[k as keyof typeof keys] = file;
  }
  return out;
}

function faultyConfig(dns: TestDns, dir: string, ports: { smtp: number; admin: number }): string {
  const k = keyFiles(dir);
  return `hostname: gw.good.test
spool: ${dir}/spool
log: { level: info, format: json }
admin: { listen: 127.0.0.1:${ports.admin}, token: ${TOKEN} }
doctor: { resolver: 127.0.0.1:${dns.port}, timeout: 1s }
listeners:
  - { name: relay, listen: 127.0.0.1:${ports.smtp}, mode: smtp, relay_networks: [127.0.0.1/32] }
users:
  - { name: app, password: "not-used", sender_domains: [spflong.test] }
classes: { sender_domains: { nodmarc.test: marketing } }
pools:
  direct:
    kind: mx
    sources:
      - { name: ip-a, address: ${A}, helo: out-a.good.test }
      - { name: ip-b, address: ${B}, helo: out-b.good.test }
  local:
    health: { check: none }
    servers: [ { name: loop, address: 127.0.0.1:2 } ]
routes:
  - { domains: [internal.test], pool: local }
  - { pool: direct }
dkim:
  domains:
    good.test: { selector: s1, key_file: ${k.good}, algorithm: rsa-sha256 }
    spfmiss.test: { selector: s1, key_file: ${k.spfmiss}, algorithm: ed25519-sha256 }
    dkimbad.test: { selector: s1, key_file: ${k.dkimbad}, algorithm: rsa-sha256 }
`;
}

interface Finding { subject: string; check: string; code: string; severity: string; problem: string; why: string; fix: string }
interface Report { subjects: { subject: string; kind: string; results: { check: string; status: string; summary: string; findings: Finding[] }[] }[]; findings: Finding[]; errors: number; warnings: number; notes: string[]; resolver: string }

/** `smtplb doctor ARGS` as a child process. (Not peers.ts's runCli: it blocks this process, and the DNS server answering the doctor runs here.) */
const cli = (args: string[], opts: { timeoutMs?: number } = {}) => run(process.execPath, [BIN, ...args], opts.timeoutMs);

const EXPECTED = ['dkimbad.test dkim dkim-key-mismatch', 'nodmarc.test dmarc dmarc-missing', 'out-b.good.test ptr ptr-helo-mismatch', 'spflong.test spf spf-too-many-lookups', 'spfmiss.test spf spf-not-authorised'];
const found = (fs: Finding[]) => fs.map((f) => `${f.subject} ${f.check} ${f.code}`).sort();

test('smtplb doctor reports exactly the faults of the zone, each with the record that fixes it, and nothing for the right domain', async () => {
  const dns = await startDns(zone());
  const dir = tmpDir('doctor-');
  const file = path.join(dir, 'smtplb.yaml');
  fs.writeFileSync(file, faultyConfig(dns, dir, { smtp: 2525, admin: 8025 }));

  // Three runs at once (each is mostly Node starting up).
  const [json, text, narrowed] = await Promise.all([
    cli(['doctor', '-c', file, '--json'], { timeoutMs: 30_000 }),
    cli(['doctor', '-c', file], { timeoutMs: 30_000 }),
    cli(['doctor', '-c', file, '--json', '--domain', 'spfmiss.test'], { timeoutMs: 30_000 }),
  ]);
  assert.equal(json.code, 1, `errors give a non-zero exit: ${json.stderr}`);
  const r = JSON.parse(json.stdout) as Report;
  assert.deepEqual(found(r.findings), EXPECTED, JSON.stringify(r.findings, null, 2));
  assert.equal(r.errors, 5);
  assert.equal(r.warnings, 0);
  assert.equal(r.resolver, `127.0.0.1:${dns.port}`);
  for (const f of r.findings) assert.ok(f.problem && f.why && f.fix, `${f.code} says what, why and how to fix`);
  const fix = (code: string) => r.findings.find((f) => f.code === code)!.fix;
  assert.match(fix('spf-not-authorised'), new RegExp(`^spfmiss\\.test\\. IN TXT "v=spf1 ip4:${A} ip4:${B} -all"$`));
  assert.match(r.findings.find((f) => f.code === 'spf-not-authorised')!.problem, /192\.0\.2\.11 \(direct\/ip-b: fail\)/);
  assert.match(fix('spf-too-many-lookups'), new RegExp(`spflong\\.test\\. IN TXT "v=spf1 ip4:${A} ip4:${B} -all"`));
  assert.ok(fix('dkim-key-mismatch').startsWith('s1._domainkey.dkimbad.test. IN TXT'), fix('dkim-key-mismatch'));
  assert.ok(fix('dkim-key-mismatch').replace(/" "/g, '').includes(keys.dkimbad.record.split('p=')[1]), 'the fix publishes the configured key');
  assert.match(fix('dmarc-missing'), /^_dmarc\.nodmarc\.test\. IN TXT "v=DMARC1; p=none; rua=mailto:postmaster@nodmarc\.test"/);
  assert.match(fix('ptr-helo-mismatch'), /^11\.2\.0\.192\.in-addr\.arpa\. IN PTR out-b\.good\.test\., or set helo: mail\.other\.test on the source$/);

  // The right domain: every check ran and is clean.
  const good = r.subjects.find((s) => s.subject === 'good.test')!;
  assert.deepEqual(good.results.map((c) => `${c.check}:${c.status}`), ['spf:ok', 'dkim:ok', 'dmarc:ok', 'mx:ok', 'mta-sts:note']);
  assert.match(good.results[0].summary, /pass for 2 addresses of 2; \d+\/10 lookups; -all/);
  assert.match(good.results[2].summary, /p=reject; aligned through DKIM and SPF/);
  const egressA = r.subjects.find((s) => s.subject === 'out-a.good.test')!;
  assert.equal(egressA.results[0].status, 'ok');
  assert.ok(r.notes.some((n) => n.includes('local/loop (127.0.0.1) is a private address')), r.notes.join('\n'));

  // The text form: the same findings, and nothing but ok/note lines under good.test.
  assert.equal(text.code, 1);
  const block = (name: string) => text.stdout.split('\n\n').find((b) => b.startsWith(`${name} (`)) ?? '';
  assert.doesNotMatch(block('good.test'), /ERROR|WARN|fix:/, block('good.test'));
  assert.match(block('spfmiss.test'), /ERROR  spf .*\[spf-not-authorised\]\n.*why: .*\n.*fix: spfmiss\.test\. IN TXT/);
  assert.equal((text.stdout.match(/^ {2}ERROR/gm) ?? []).length, 5, text.stdout);
  assert.match(text.stdout, /5 errors, 0 warnings\n$/);

  // --domain narrows to one domain (and the egress that sends it).
  const one = JSON.parse(narrowed.stdout) as Report;
  assert.deepEqual(one.subjects.filter((s) => s.kind === 'domain').map((s) => s.subject), ['spfmiss.test']);
  assert.deepEqual(found(one.findings), ['out-b.good.test ptr ptr-helo-mismatch', 'spfmiss.test spf spf-not-authorised']);
});

test('smtplb doctor exits 0 for a clean config; --resolver overrides the config', async () => {
  const dns = await startDns(zone());
  const dir = tmpDir('doctor-clean-');
  const k = keyFiles(dir);
  const file = path.join(dir, 'smtplb.yaml');
  fs.writeFileSync(
    file,
    `hostname: gw.good.test
spool: ${dir}/spool
doctor: { resolver: 127.0.0.1:9 }
listeners:
  - { name: relay, listen: 127.0.0.1:2525, mode: smtp, relay_networks: [127.0.0.1/32] }
pools:
  direct: { kind: mx, sources: [ { name: ip-a, address: ${A}, helo: out-a.good.test } ] }
routes: [ { pool: direct } ]
dkim: { domains: { good.test: { selector: s1, key_file: ${k.good} } } }
`,
  );
  const [r, bad, name] = await Promise.all([
    cli(['doctor', '-c', file, '--resolver', `127.0.0.1:${dns.port}`], { timeoutMs: 30_000 }),
    cli(['doctor', '-c', file, '--resolver', 'not-an-ip:53'], { timeoutMs: 30_000 }),
    cli(['doctor', '-c', file, '--resolver', 'not-an-ip'], { timeoutMs: 30_000 }),
  ]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /resolver 127\.0\.0\.1:\d+/);
  assert.match(r.stdout, /no problems found\n$/);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--resolver/);
  // A bare name (no port) is refused the same way, naming the flag: not node:dns's "Invalid IP address".
  assert.notEqual(name.code, 0);
  assert.match(name.stderr, /--resolver: "not-an-ip" is not an IP address/);
  assert.doesNotMatch(name.stderr, /Invalid IP address|\n\s+at /);
});

test('a resolver given by name in the config is looked up first; one that does not resolve is one clear error, in the CLI and in the daemon', async () => {
  const { IdentityMonitor } = await import('../src/identity/monitor.js');
  const { configSchema } = await import('../src/config/schema.js');
  const dns = await startDns(zone());
  const dir = tmpDir('doctor-named-');
  const k = keyFiles(dir);
  const configText = (resolver: string) => `hostname: gw.good.test
spool: ${dir}/spool
doctor: { resolver: ${resolver} }
listeners:
  - { name: relay, listen: 127.0.0.1:2525, mode: smtp, relay_networks: [127.0.0.1/32] }
pools:
  direct: { kind: mx, sources: [ { name: ip-a, address: ${A}, helo: out-a.good.test } ] }
routes: [ { pool: direct } ]
dkim: { domains: { good.test: { selector: s1, key_file: ${k.good} } } }
`;
  const nowhere = path.join(dir, 'nowhere.yaml');
  fs.writeFileSync(nowhere, configText('nowhere.invalid:53'));
  const named = path.join(dir, 'named.yaml');
  fs.writeFileSync(named, configText(`localhost:${dns.port}`));
  const localhostIsV4 = (await import('node:dns')).promises.lookup('localhost').then((a) => a.address === '127.0.0.1', () => false);
  const [bad, good] = await Promise.all([cli(['doctor', '-c', nowhere], { timeoutMs: 30_000 }), cli(['doctor', '-c', named], { timeoutMs: 30_000 })]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /the resolver nowhere\.invalid:53 does not resolve to an address \(\w+\); give its IP address/);
  assert.doesNotMatch(bad.stderr, /Invalid IP address|\n\s+at /);
  if (await localhostIsV4) {
    assert.equal(good.code, 0, good.stdout + good.stderr);
    assert.match(good.stdout, /resolver localhost:\d+/);
    assert.match(good.stdout, /no problems found\n$/);
  }

  // The daemon: the same failure is its last_error and a warning, never an unhandled rejection.
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    const warnings: string[] = [];
    const log = { warn: (_o: unknown, m: string) => warnings.push(m), info: () => {} } as never;
    const cfg = configSchema.parse({
      hostname: 'gw.good.test',
      doctor: { resolver: 'nowhere.invalid:53' },
      listeners: [{ name: 'l', listen: '127.0.0.1:25' }],
      pools: { direct: { kind: 'mx', sources: [{ name: 'ip-a', address: A }] } },
      routes: [{ pool: 'direct' }],
    }) as never;
    const m = new IdentityMonitor(() => cfg, log);
    m.start();
    const st = await waitFor('the failed identity check', () => (m.status().last_error && !m.status().running ? m.status() : null), 10_000);
    assert.match(st.last_error!, /the resolver nowhere\.invalid:53 does not resolve/);
    assert.ok(st.next_check_at, 'the next run is still scheduled');
    assert.ok(warnings.some((w) => /^identity check failed: the resolver nowhere\.invalid:53/.test(w)), warnings.join('\n'));
    // A config that throws while the resolver is chosen (before any lookup exists) is caught the same way.
    const noResolver = configSchema.parse({ listeners: [{ name: 'l', listen: '127.0.0.1:25' }], pools: { direct: { kind: 'mx', sources: [{ name: 'ip-a', address: A }] } } }) as object;
    const throwing = new Proxy(noResolver, {
      get: (t, key) => {
        if (key === 'pools') throw new Error('config read failed');
        return Reflect.get(t, key);
      },
    });
    const m2 = new IdentityMonitor(() => throwing as never, log);
    m2.start();
    await waitFor('the second monitor failing', () => (m2.status().last_error && !m2.status().running ? true : null), 10_000);
    assert.match(m2.status().last_error!, /config read failed/);
    m.stop();
    m2.stop();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('the daemon shows the identity findings in /api/status and smtplb_identity_problems, and checks again on reload', async () => {
  const dns = await startDns(zone());
  const dir = tmpDir('doctor-daemon-');
  const ports = { smtp: await freePort(), admin: await freePort() };
  const lb = await startSmtplb(faultyConfig(dns, dir, ports), { dir });
  const status = async () => {
    const res = await fetch(`http://127.0.0.1:${ports.admin}/api/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
    return (await res.json()) as { identity?: Report & { checked_at: string | null; enabled: boolean; next_check_at: string | null } };
  };
  const first = await waitFor('the first identity check', async () => {
    const s = await status();
    return s.identity?.checked_at ? s.identity : null;
  }, 15_000);
  assert.equal(first.enabled, true);
  assert.deepEqual(found(first.findings), EXPECTED);
  assert.ok(first.next_check_at && Date.parse(first.next_check_at) > Date.now() + 3_000_000, 'the next check is an hour away');

  const metric = async () => {
    const text = await (await fetch(`http://127.0.0.1:${ports.admin}/metrics`)).text();
    return (domain: string, check: string) => {
      const m = new RegExp(`^smtplb_identity_problems\\{domain="${domain.replace(/\./g, '\\.')}",check="${check}"\\} (\\d+)$`, 'm').exec(text);
      return m ? Number(m[1]) : null;
    };
  };
  let g = await metric();
  assert.equal(g('spfmiss.test', 'spf'), 1);
  assert.equal(g('spflong.test', 'spf'), 1);
  assert.equal(g('dkimbad.test', 'dkim'), 1);
  assert.equal(g('nodmarc.test', 'dmarc'), 1);
  assert.equal(g('out-b.good.test', 'ptr'), 1);
  for (const c of ['spf', 'dkim', 'dmarc', 'mx', 'mta-sts']) assert.equal(g('good.test', c), 0, `good.test ${c}`);
  assert.equal(g('out-a.good.test', 'ptr'), 0);

  // Fix SPF for spfmiss.test, reload: the check runs again and the problem is gone.
  const rec = dns.records.find((r) => r.type === 'TXT' && r.name === 'spfmiss.test') as Extract<Rec, { type: 'TXT' }>;
  rec.data = `v=spf1 ip4:${A} ip4:${B} -all`;
  lb.reload();
  const second = await waitFor('the identity check after the reload', async () => {
    const s = await status();
    return s.identity?.checked_at && s.identity.checked_at !== first.checked_at ? s.identity : null;
  }, 15_000);
  assert.deepEqual(found(second.findings), EXPECTED.filter((e) => !e.startsWith('spfmiss.test')));
  g = await metric();
  assert.equal(g('spfmiss.test', 'spf'), 0);
  assert.match(lb.output(), /identity check: 5 errors, 0 warnings/);
});

test('the checks as pure functions: missing, several and permissive SPF records, DMARC without a policy or alignment, null MX, no PTR; pools from routes', async () => {
  const { checkSpf, checkDmarc, checkMx, checkPtr, checkDkim } = await import('../src/identity/checks.js');
  const { poolsFor } = await import('../src/identity/inventory.js');
  const { configSchema } = await import('../src/config/schema.js');
  const none = { ok: false as const, none: true, error: 'ENODATA' };
  const txt = (...rows: string[]) => ({ ok: true as const, value: rows.map((r) => [r]) });
  const e = { pool: 'direct', name: 'ip-a', kind: 'source' as const, ip: A, helo: 'out-a.good.test' };
  const codes = (r: { findings: { code: string }[] }) => r.findings.map((f) => f.code);

  const missing = checkSpf('x.test', { txt: none, perIp: [] }, [e]);
  assert.deepEqual(codes(missing), ['spf-missing']);
  assert.equal(missing.findings[0].fix, `x.test. IN TXT "v=spf1 ip4:${A} -all"`);
  assert.deepEqual(codes(checkSpf('x.test', { txt: txt('v=spf1 -all', 'v=spf1 ip4:1.2.3.4 ~all'), perIp: [] }, [e])), ['spf-multiple']);
  const open = checkSpf('x.test', { txt: txt('v=spf1 ip4:1.2.3.4 +all'), probe: { result: 'pass' }, perIp: [{ ip: A, egress: [e], eval: { result: 'pass' } }] }, [e]);
  assert.deepEqual(codes(open), ['spf-permissive']);
  assert.equal(open.findings[0].fix, `x.test. IN TXT "v=spf1 ip4:1.2.3.4 ip4:${A} -all"`);
  const soft = checkSpf('x.test', { txt: txt(`v=spf1 ip4:${A} ~all`), probe: { result: 'softfail', lookups: 0 }, perIp: [{ ip: A, egress: [e], eval: { result: 'pass' } }] }, [e]);
  assert.equal(soft.status, 'note');
  assert.match(soft.summary, /~all/);
  assert.deepEqual(codes(checkSpf('x.test', { txt: txt(`v=spf1 ip4:${A}`), probe: { result: 'neutral', lookups: 0 }, perIp: [{ ip: A, egress: [e], eval: { result: 'pass' } }] }, [e])), ['spf-no-all']);

  const dmarc = (value: Record<string, string | number | boolean> | false, aligned = { dkim: true, spf: true as boolean | null, dkimConfigured: true }) =>
    checkDmarc('x.test', { txt: value ? txt(String(value.rr)) : none, record: { ok: true, value: value ? { rr: '', isOrgRecord: false, ...value } : false } }, aligned);
  assert.deepEqual(codes(dmarc({ rr: 'v=DMARC1; rua=mailto:a@x.test', v: 'DMARC1' })), ['dmarc-invalid']);
  const unaligned = dmarc({ rr: 'v=DMARC1; p=reject', v: 'DMARC1', p: 'reject' }, { dkim: false, spf: false, dkimConfigured: false });
  assert.deepEqual(codes(unaligned), ['dmarc-unaligned']);
  assert.match(unaligned.findings[0].fix, /smtplb dkim keygen --domain x\.test/);
  assert.equal(dmarc({ rr: 'v=DMARC1; p=none', v: 'DMARC1', p: 'none' }).status, 'note');
  // mailauth keeps the space after "=": "p= reject" is a valid policy, and "adkim= s" strict.
  const spaced = dmarc({ rr: 'v=DMARC1; p= reject; sp= quarantine ; adkim= s', v: 'DMARC1', p: ' reject', sp: ' quarantine', adkim: ' s' });
  assert.deepEqual(codes(spaced), []);
  assert.match(spaced.summary, /^p=reject; aligned through DKIM and SPF$/);
  assert.deepEqual(codes(dmarc({ rr: 'v=DMARC1; p= rejected', v: 'DMARC1', p: ' rejected' })), ['dmarc-invalid']);

  assert.deepEqual(codes(checkMx('x.test', { mx: { ok: true, value: [{ exchange: '', priority: 0 }] }, addresses: {} })), ['mx-null']);
  assert.deepEqual(codes(checkMx('x.test', { mx: none, addresses: { 'x.test': none } })), ['mx-missing']);
  assert.equal(checkMx('x.test', { mx: none, addresses: { 'x.test': { ok: true, value: [A] } } }).status, 'note');

  const noPtr = checkPtr('out-a.good.test', { ip: A, egress: [e], helo: 'out-a.good.test', ptr: none, forward: { 'out-a.good.test': none } });
  assert.deepEqual(codes(noPtr), ['ptr-missing']);
  assert.match(noPtr.findings[0].fix, /^10\.2\.0\.192\.in-addr\.arpa\. IN PTR out-a\.good\.test\. and out-a\.good\.test\. IN A 192\.0\.2\.10/);
  assert.deepEqual(codes(checkPtr('out-a.good.test', { ip: A, egress: [e], helo: 'out-a.good.test', ptr: { ok: true, value: ['out-a.good.test'] }, forward: { 'out-a.good.test': none } })), ['ptr-not-fcrdns']);

  const key = { ok: true as const, p: keys.good.record.split('p=')[1], record: keys.good.record };
  assert.deepEqual(codes(checkDkim('good.test', { selector: 's1', algorithm: 'rsa-sha256', key, txt: none })), ['dkim-missing']);
  assert.deepEqual(codes(checkDkim('good.test', { selector: 's1', algorithm: 'rsa-sha256', key, txt: txt('v=DKIM1; k=rsa; p=') })), ['dkim-revoked']);
  assert.deepEqual(codes(checkDkim('good.test', { selector: 's1', algorithm: 'ed25519-sha256', key, txt: txt(keys.good.record) })), ['dkim-algorithm']);
  assert.deepEqual(codes(checkDkim('good.test', { selector: 's1', algorithm: 'rsa-sha256', key, txt: txt(keys.good.record.replace(/; /g, ';')) })), []);

  const cfg = configSchema.parse({
    listeners: [{ name: 'l', listen: '127.0.0.1:25' }],
    users: [{ name: 'news', password: 'x', class: 'bulk', sender_domains: ['news.test'] }],
    pools: { direct: { kind: 'mx' }, bulk: { kind: 'mx', fallback: 'spare' }, spare: {}, own: {} },
    routes: [{ class: 'bulk', pool: 'bulk' }, { sender_domains: ['own.test'], pool: 'own' }, { pool: 'direct' }],
  }) as Parameters<typeof poolsFor>[0];
  assert.deepEqual(poolsFor(cfg, 'news.test'), ['bulk', 'spare', 'direct'], 'the class of the user that sends it, with its fallback');
  assert.deepEqual(poolsFor(cfg, 'own.test'), ['own'], 'a route that takes all of a domain stops the walk');
  assert.deepEqual(poolsFor(cfg, 'other.test'), ['direct']);

  // Documentation addresses (RFC 5737, RFC 3849) count as reserved for the background check, not as private.
  const { onlyReservedNames, isPrivateAddress, isDocumentationAddress } = await import('../src/identity/inventory.js');
  const withSources = (...addresses: string[]) =>
    configSchema.parse({
      listeners: [{ name: 'l', listen: '127.0.0.1:25' }],
      users: [{ name: 'app', password: 'x', sender_domains: ['app.test'] }],
      pools: { direct: { kind: 'mx', sources: addresses.map((address, i) => ({ name: `s${i}`, address })) } },
      routes: [{ pool: 'direct' }],
    }) as Parameters<typeof onlyReservedNames>[0];
  assert.equal(onlyReservedNames(withSources('192.0.2.10', '198.51.100.7', '203.0.113.200', '2001:db8::25', '10.0.0.1')), true);
  assert.equal(onlyReservedNames(withSources('192.0.2.10', '8.8.8.8')), false);
  assert.equal(onlyReservedNames(withSources('2001:db9::1')), false);
  for (const ip of ['192.0.2.1', '198.51.100.1', '203.0.113.1', '2001:db8:ffff::1', '::ffff:192.0.2.1']) {
    assert.equal(isDocumentationAddress(ip), true, ip);
    assert.equal(isPrivateAddress(ip), false, `${ip} is not private (a configured resolver still checks it)`);
  }
  for (const ip of ['192.0.3.1', '198.51.101.1', '203.0.114.1', '2001:db9::1', '8.8.8.8']) assert.equal(isDocumentationAddress(ip), false, ip);
});
