// Hostile input and unlucky operations never take the daemon down: a malformed admin request,
// a SIGHUP while a TLS certificate is missing, TLS files checked by `smtplb check`, and a
// reload that brings the first mode: smtp listener. Real peers: smtp-sink, swaks, openssl.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { metric, raw, TOKEN } from './helpers/admin.js';
import { WALKAROUNDS } from './helpers/from-forms.js';
import { after, afterEach, test } from 'node:test';
import { freePort, greeting, runCli, selfSignedCert, startSink, startSmtplb, stopAll, swaks, timingTest, tmpDir, waitFor } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);




test('malformed admin requests get 400 and the process keeps serving SMTP', async () => {
  const [port, admin] = [await freePort(), await freePort()];
  const sink = await startSink();
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: out } ]
`);
  assert.match(await raw(admin, 'GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 400/);
  assert.match(await raw(admin, 'GET /api/queue/%zz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token-1\r\n\r\n'), /^HTTP\/1\.1 (400|404)/);
  assert.match(await raw(admin, '\x00\x01\x02 garbage\r\n\r\n'), /^HTTP\/1\.1 400|^$/);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(lb.proc.exitCode, null, 'still running');
  assert.equal((await fetch(`http://127.0.0.1:${admin}/healthz`)).status, 200);
  assert.match(await greeting(port), /^220 /);
  assert.match((await swaks(['--server', `127.0.0.1:${port}`, '--from', 'a@client.test', '--to', 'b@dest.test'])).stdout, /<- {2}250 /);
  await sink.settle(1);
});

test('SIGHUP with a missing certificate keeps the running config (and TLS) and counts the refusal; check names the file, line and key', async () => {
  const dir = tmpDir();
  const { cert, key } = selfSignedCert(dir, 'gw.test');
  const [port, admin] = [await freePort(), await freePort()];
  const sink = await startSink();
  const text = `hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: sub, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8],
      tls: { cert: ${cert}, key: ${key} } }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: out } ]
`;
  const lb = await startSmtplb(text, { dir });
  fs.renameSync(cert, `${cert}.renewing`); // certbot mid-renewal
  lb.reload();
  await waitFor('reload refused', async () => (await metric(admin, 'smtplb_config_reloads_total', { result: 'refused' })) === 1, 5000);
  assert.equal(lb.proc.exitCode, null);
  assert.match(lb.output(), /smtplb\.yaml:7:\d+: listeners\[0\]\.tls\.cert: cannot read .*ENOENT/);
  const r = await swaks(['--server', `127.0.0.1:${port}`, '--tls', '--from', 'a@client.test', '--to', 'b@dest.test']);
  assert.match(r.stdout, /<- {2}250 /, 'STARTTLS still works with the certificate loaded before');
  await sink.settle(1);
  const check = runCli(['check', '-c', lb.file]);
  assert.equal(check.code, 1);
  assert.match(check.stderr, /smtplb\.yaml:7:\d+: listeners\[0\]\.tls\.cert: cannot read/);

  // The renewal lands: a key that does not match is refused, the right one applies.
  const other = selfSignedCert(tmpDir(), 'other.test');
  fs.copyFileSync(`${cert}.renewing`, cert);
  fs.copyFileSync(other.key, key);
  const mismatch = runCli(['check', '-c', lb.file]);
  assert.equal(mismatch.code, 1);
  assert.match(mismatch.stderr, /listeners\[0\]\.tls\.key: .* does not match the certificate/);
  fs.copyFileSync(other.cert, cert);
  const ok = runCli(['check', '-c', lb.file]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /warning: .*listeners\[0\]\.tls\.cert: .* expires in [01] days/, 'a certificate about to expire is named');
  lb.reload();
  await waitFor('reload applied', async () => (await metric(admin, 'smtplb_config_reloads_total', { result: 'applied' })) === 1, 5000);
  const peer = spawnSync('openssl', ['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${port}`, '-brief'], { input: 'QUIT\r\n', encoding: 'utf8', timeout: 10_000 });
  assert.match(peer.stdout + peer.stderr, /CN ?= ?other\.test/, 'new sessions see the renewed certificate');
  assert.match(peer.stdout + peer.stderr, /Protocol version: TLSv1\.[23]/);
});

test('a reload that adds the first mode: smtp listener brings the relay with it', async () => {
  const [tcpPort, port, admin] = [await freePort(), await freePort(), await freePort()];
  const sink = await startSink();
  const base = `hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: out } ]
listeners:
  - { name: l4, listen: 127.0.0.1:${tcpPort}, mode: tcp, pool: out }
`;
  const lb = await startSmtplb(base);
  fs.writeFileSync(lb.file, `${base}  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }\n`);
  lb.reload();
  await waitFor('the new listener', () => greeting(port).then((g) => /^220 /.test(g)).catch(() => false), 5000);
  const r = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'a@client.test', '--to', 'b@dest.test']);
  assert.match(r.stdout, /<- {2}250 2\.0\.0 Ok: queued as/);
  await sink.settle(1);
  assert.equal(lb.proc.exitCode, null);
});

test('STARTTLS sessions that end with QUIT give their connection back; SIGTERM then exits at once', async () => {
  const dir = tmpDir();
  const { cert, key } = selfSignedCert(dir, 'gw.test');
  const [port, admin] = [await freePort(), await freePort()];
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
shutdown_timeout: 20s
listeners:
  - { name: sub, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8], tls: { cert: ${cert}, key: ${key} } }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${await freePort()} } ] }
routes: [ { pool: out } ]
`, { dir });
  for (let i = 0; i < 7; i++) assert.match((await swaks(['--server', `127.0.0.1:${port}`, '--tls', '--quit-after', 'EHLO'])).stdout, /<~ {2}221 /);
  await waitFor('all connections given back', async () => (await metric(admin, 'smtplb_listener_active_connections', { listener: 'sub' })) === 0, 3000);
  const t0 = Date.now();
  await lb.stop();
  assert.ok(Date.now() - t0 < 3000, `SIGTERM took ${Date.now() - t0} ms`);
});

test('a plain session is closed at its 221: the connection is given back even while the client keeps its side open', async () => {
  const [port, admin] = [await freePort(), await freePort()];
  await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${await freePort()} } ] }
routes: [ { pool: out } ]
`);
  // A client that never closes: it does not answer the server's FIN with its own.
  const sock = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  let heard = '';
  let ended = false;
  sock.on('data', (d) => (heard += d.toString()));
  sock.on('end', () => (ended = true));
  sock.on('error', () => {}); // a reset instead of the FIN shows as a missing 221 or end below
  await waitFor('greeting', () => heard.includes('220 '), 5000);
  sock.write('EHLO client.test\r\n');
  await waitFor('EHLO answered', () => /250 /.test(heard), 5000);
  // Two commands in one packet (RSET may be pipelined, QUIT ends the group): the replies are
  // held (corked) as a batch, and QUIT must let them go before the close.
  sock.write('RSET\r\nQUIT\r\n');
  await waitFor('221 and the end of the stream', () => heard.includes('221 ') && ended, 5000);
  // smtp-server on its own half-closes and holds the connection up to 5 s for the client's FIN.
  await waitFor('connection given back', async () => (await metric(admin, 'smtplb_listener_active_connections', { listener: 'relay' })) === 0, 1500);
  sock.destroy();
});

test('a user bound to sender_domains cannot get a signature for another domain by its header From', async () => {
  const dir = tmpDir();
  const { cert, key } = selfSignedCert(dir, 'gw.test');
  const keyA = runCli(['dkim', 'keygen', '--domain', 'a.test', '--selector', 's1', '--out', `${dir}/a.pem`]);
  const keyB = runCli(['dkim', 'keygen', '--domain', 'b.test', '--selector', 's1', '--out', `${dir}/b.pem`]);
  assert.deepEqual([keyA.code, keyB.code], [0, 0]);
  const hash = runCli(['passwd', '--password', 'app-secret-1']).stdout.trim();
  const [port, admin] = [await freePort(), await freePort()];
  const sink = await startSink();
  await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
users:
  - { name: app, password: "${hash}", sender_domains: [a.test] }
listeners:
  - { name: sub, listen: 127.0.0.1:${port}, mode: smtp, require_auth: true, tls: { cert: ${cert}, key: ${key} } }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: out } ]
dkim:
  domains:
    a.test: { selector: s1, key_file: ${dir}/a.pem, algorithm: rsa-sha256 }
    b.test: { selector: s1, key_file: ${dir}/b.pem, algorithm: rsa-sha256 }
`, { dir });
  const auth = ['--server', `127.0.0.1:${port}`, '--tls', '--auth', 'PLAIN', '--auth-user', 'app', '--auth-password', 'app-secret-1', '--from', 'x@a.test', '--to', 'y@dest.test'];
  const spoof = await swaks([...auth, '--header', 'From: ceo@b.test']);
  assert.match(spoof.stdout, /<~\* 550 5\.7\.1 user app may not send as b\.test/, spoof.stdout);
  // The forms an RFC 5322 reader takes for b.test while a text match saw a.test: each refused.
  for (const [what, head] of Object.entries(WALKAROUNDS)) {
    fs.writeFileSync(`${dir}/walk.eml`, `${head}Subject: ${what}\r\n\r\nbody\r\n`);
    const r = await swaks([...auth, '--data', `${dir}/walk.eml`]);
    assert.match(r.stdout, /<~\* 550 5\.7\.1 user app/, `${what}: ${r.stdout}`);
  }
  const own = await swaks([...auth, '--header', 'From: news@a.test']);
  assert.match(own.stdout, /<~ {2}250 /);
  const [m] = await sink.settle(1);
  assert.match(m, /DKIM-Signature:[^]*?d=a\.test/);
  assert.doesNotMatch(m, /d=b\.test/);
});

timingTest('slowloris: 1,000 idle connections held open; a new client is greeted within 1 s and its message delivered', async () => {
  const [port, admin] = [await freePort(), await freePort()];
  const sink = await startSink();
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: out } ]
`);
  const rssBefore = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${lb.proc.pid}/status`, 'utf8'))![1]);
  const held: net.Socket[] = [];
  // Ten attacking addresses, 100 connections each (the per-client limit), all silent after the greeting.
  for (let a = 2; a < 12; a++) {
    await Promise.all(
      Array.from({ length: 100 }, () => new Promise<void>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port, localAddress: `127.0.0.${a}` });
        s.on('error', () => resolve());
        s.once('data', () => resolve());
        held.push(s);
      })),
    );
  }
  try {
    const open = await metric(admin, 'smtplb_listener_active_connections', { listener: 'relay' });
    assert.ok(open >= 1000, `${open} connections held`);
    const t0 = Date.now();
    assert.match(await greeting(port), /^220 /);
    const took = Date.now() - t0;
    assert.ok(took < 1000, `greeted after ${took} ms`);
    assert.match((await swaks(['--server', `127.0.0.1:${port}`, '--from', 'a@client.test', '--to', 'b@dest.test'])).stdout, /<- {2}250 /);
    await sink.settle(1);
    const rssAfter = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${lb.proc.pid}/status`, 'utf8'))![1]);
    console.log(`slowloris: 1,000 idle sessions cost ${((rssAfter - rssBefore) / 1024).toFixed(1)} MB of RSS; new client greeted in ${took} ms`);
  } finally {
    for (const s of held) s.destroy();
  }
});

test('message files written before a crash but never committed are swept at start; committed mail is kept and delivered', async () => {
  const dir = tmpDir();
  const [port, admin] = [await freePort(), await freePort()];
  const sink = await startSink();
  const config = `hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: out } ]
`;
  const first = await startSmtplb(config, { dir });
  // A crash (kill -9), not a clean stop: a clean stop leaves nothing to sweep.
  await new Promise((r) => {
    first.proc.once('exit', r);
    first.proc.kill('SIGKILL');
  });
  const orphan = `${dir}/spool/messages/ZZ/0MX0000000ABCDEF0ZZ`;
  fs.mkdirSync(`${dir}/spool/messages/ZZ`, { recursive: true });
  fs.writeFileSync(orphan, 'Subject: half-written\r\n\r\nnever acknowledged');
  fs.utimesSync(orphan, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  const lb = await startSmtplb(config, { dir });
  await waitFor('orphan swept', () => !fs.existsSync(orphan), 5000);
  // The sweep logs once it has been through every directory.
  await waitFor('sweep logged', () => /removed 1 message file/.test(lb.output()), 5000);
  assert.match((await swaks(['--server', `127.0.0.1:${port}`, '--from', 'a@client.test', '--to', 'b@dest.test'])).stdout, /<- {2}250 /);
  await sink.settle(1);
});
