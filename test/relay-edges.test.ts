// Relay edges: PROXY v2 from HAProxy (relay policy judges the original client), implicit TLS,
// a full spool (452 4.3.1), Postfix transport import, AUTH lockout, sender-domain binding.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, test } from 'node:test';
import { hashPassword } from '../src/policy/password.js';
import { freePort, runCli, selfSignedCert, startHaproxy, startSink, startSmtplb, stopAll, swaks, tmpDir } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);

test('PROXY v2 from HAProxy: the relay sees and judges the original client address', async () => {
  const sink = await startSink();
  const port = await freePort();
  await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.3/32], accept_proxy: [127.0.0.1/32] }
pools:
  p: { servers: [ { name: s, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: p } ]
`);
  const hp = await freePort();
  await startHaproxy(`global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend f\n  bind 127.0.0.1:${hp}\n  default_backend b\nbackend b\n  server lb 127.0.0.1:${port} send-proxy-v2\n`, hp);
  // HAProxy connects from 127.0.0.1; only the original address 127.0.0.3 may relay.
  const denied = await swaks(['--server', `127.0.0.1:${hp}`, '--local-interface', '127.0.0.2', '--from', 'a@c.test', '--to', 'b@d.test']);
  assert.match(denied.stdout, /<\*\* 554 5\.7\.1/);
  const allowed = await swaks(['--server', `127.0.0.1:${hp}`, '--local-interface', '127.0.0.3', '--from', 'a@c.test', '--to', 'b@d.test']);
  assert.equal(allowed.code, 0, allowed.stdout);
  const [m] = await sink.settle(1);
  assert.match(m, /Received: from \S+ \(\[127\.0\.0\.3\]\)/);
});

test('implicit TLS listener (port 465 style) with AUTH; the spool refuses with 452 4.3.1 when the disk is below min_free', async () => {
  const dir = tmpDir('tls465-');
  const { cert, key } = selfSignedCert(dir, 'gw.test');
  const sink = await startSink();
  const port = await freePort();
  const full = await freePort();
  const hash = await hashPassword('pw-app-1');
  const text = (p: number, minFree: string) => `hostname: gw.test
log: { level: warn }
spool: ./spool-${p}
listeners:
  - { name: smtps, listen: 127.0.0.1:${p}, mode: smtp, require_auth: true, tls: { cert: ${cert}, key: ${key}, implicit: true } }
users:
  - { name: app, password: "${hash}", sender_domains: [app.test] }
pools:
  p: { servers: [ { name: s, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: p } ]
queue: { min_free: ${minFree} }
`;
  await startSmtplb(text(port, '1MB'));
  const ok = await swaks(['--server', `127.0.0.1:${port}`, '--tlsc', '--auth', 'PLAIN', '--auth-user', 'app', '--auth-password', 'pw-app-1', '--from', 'x@app.test', '--to', 'b@d.test']);
  assert.equal(ok.code, 0, ok.stdout);
  assert.match(ok.stdout, /<~ {2}250 2\.0\.0 Ok: queued as/);
  await sink.settle(1);
  // The user is bound to app.test.
  const other = await swaks(['--server', `127.0.0.1:${port}`, '--tlsc', '--auth', 'PLAIN', '--auth-user', 'app', '--auth-password', 'pw-app-1', '--from', 'x@elsewhere.test', '--to', 'b@d.test']);
  assert.match(other.stdout, /<~\* 553 5\.7\.1/);

  await startSmtplb(text(full, '1000000GB'));
  const r = await swaks(['--server', `127.0.0.1:${full}`, '--tlsc', '--auth', 'PLAIN', '--auth-user', 'app', '--auth-password', 'pw-app-1', '--from', 'x@app.test', '--to', 'b@d.test']);
  assert.notEqual(r.code, 0);
  assert.match(r.stdout, /<~\* 452 4\.3\.1 Insufficient system storage/);
});

test('repeated AUTH failures lock the client out with 421 4.7.0', async () => {
  const dir = tmpDir('lock-');
  const { cert, key } = selfSignedCert(dir, 'gw.test');
  const sink = await startSink();
  const port = await freePort();
  await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
listeners:
  - { name: sub, listen: 127.0.0.1:${port}, mode: smtp, require_auth: true, max_auth_failures: 3, tls: { cert: ${cert}, key: ${key} } }
users: [ { name: app, password: "${await hashPassword('right')}" } ]
pools:
  p: { servers: [ { name: s, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: p } ]
`);
  const attempt = () => swaks(['--server', `127.0.0.1:${port}`, '--tls', '--auth', 'PLAIN', '--auth-user', 'app', '--auth-password', 'wrong', '--from', 'a@c.test', '--to', 'b@d.test']);
  assert.match((await attempt()).stdout, /535 5\.7\.8/);
  assert.match((await attempt()).stdout, /535 5\.7\.8/);
  assert.match((await attempt()).stdout, /421 4\.7\.0/);
  const after = await swaks(['--server', `127.0.0.1:${port}`, '--tls', '--auth', 'PLAIN', '--auth-user', 'app', '--auth-password', 'right', '--from', 'a@c.test', '--to', 'b@d.test']);
  assert.match(after.stdout, /421 4\.7\.0 gw\.test Too many authentication failures/);
});

test('a Postfix transport file is imported as routes', async () => {
  const a = await startSink();
  const b = await startSink();
  const dir = tmpDir('transport-');
  fs.writeFileSync(path.join(dir, 'transport'), `# from the old relay\nexample.com   smtp:[127.0.0.1]:${a.port}\n.example.com  smtp:[127.0.0.1]:${a.port}\nother.org     smtp:[127.0.0.1]:${b.port}\n`);
  const port = await freePort();
  const admin = await freePort();
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: test-token-1 }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.1/32] }
pools:
  default: { servers: [ { name: d, address: 127.0.0.1:${b.port} } ] }
routes:
  - { postfix_transport: transport }
  - { pool: default }
`, { dir });
  const r = runCli(['route', 'explain', 'x@mail.example.com', '-c', lb.file]);
  assert.match(r.stdout, new RegExp(`-> pool transport-127\\.0\\.0\\.1-${a.port}`), r.stdout + r.stderr);
  assert.equal((await swaks(['--server', `127.0.0.1:${port}`, '--from', 'a@c.test', '--to', 'x@example.com'])).code, 0);
  const [m] = await a.settle(1);
  assert.match(m, /X-Rcpt-Args: <x@example\.com>/);
  assert.equal(b.count(), 0);
  // An unreadable transport file is a config error naming the route.
  fs.writeFileSync(lb.file, fs.readFileSync(lb.file, 'utf8').replace('postfix_transport: transport', 'postfix_transport: missing'));
  const c = runCli(['check', '-c', lb.file]);
  assert.equal(c.code, 1);
  assert.match(c.stderr, /smtplb\.yaml:\d+:\d+: routes\[0\]\.postfix_transport: cannot read .*missing: ENOENT/);
});
