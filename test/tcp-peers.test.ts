// mode tcp between real peers: HAProxy sending PROXY v2 in front, Postfix reading PROXY
// behind; STARTTLS end to end to a TLS-enabled Postfix.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { freePort, selfSignedCert, startHaproxy, startSmtplb, stopAll, swaks, tmpDir, waitFor } from './helpers/peers.js';
import { startPostfix } from './helpers/postfix.js';

after(stopAll);

test('HAProxy (send-proxy-v2) → smtplb → Postfix (upstream proxy protocol): Postfix logs the original client', async () => {
  const certDir = tmpDir('tls-');
  const { cert, key } = selfSignedCert(certDir, 'postfix.test');
  const pfProxy = await freePort();
  const pfTls = await freePort();
  const postfix = await startPostfix([
    { port: pfProxy, options: ['smtpd_upstream_proxy_protocol=haproxy'] },
    { port: pfTls, options: ['smtpd_tls_security_level=may', `smtpd_tls_cert_file=${cert}`, `smtpd_tls_key_file=${key}`] },
  ]);
  const lbProxy = await freePort();
  const lbTls = await freePort();
  await startSmtplb(`hostname: lb.test
log: { level: warn }
listeners:
  - { name: from-haproxy, listen: 127.0.0.1:${lbProxy}, mode: tcp, pool: postfix-proxy, accept_proxy: [127.0.0.1/32] }
  - { name: tls, listen: 127.0.0.1:${lbTls}, mode: tcp, pool: postfix-tls }
pools:
  postfix-proxy:
    send_proxy: v2
    health: { check: smtp, interval: 1s, timeout: 3s }
    servers: [ { name: pf, address: 127.0.0.1:${pfProxy} } ]
  postfix-tls:
    health: { check: smtp, interval: 1s, timeout: 3s, starttls: true }
    servers: [ { name: pf, address: 127.0.0.1:${pfTls} } ]
`);
  const hp = await freePort();
  await startHaproxy(`global
  maxconn 1000
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend smtp
  bind 127.0.0.1:${hp}
  default_backend lb
backend lb
  server smtplb 127.0.0.1:${lbProxy} send-proxy-v2
`, hp);

  // The client leaves from 127.0.0.2; HAProxy and smtplb connect from 127.0.0.1.
  const r = await swaks(['--server', `127.0.0.1:${hp}`, '--local-interface', '127.0.0.2', '--from', 'app@client.test', '--to', 'user@remote.test']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /<- {2}250 2\.0\.0 Ok: queued/);
  const log = await waitFor('postfix connect line', () => /connect from [^\n]*\[127\.0\.0\.2\]/.exec(postfix.log())?.[0], 10_000);
  assert.match(log, /127\.0\.0\.2/);
  // smtplb's own address never appears as an SMTP client of this listener, except its checks.
  // The log is written through syslog: the transaction's line may come a moment after the 250.
  const clientLines = await waitFor('postfix: the transaction\'s client= line', () => {
    const lines = postfix.log().split('\n').filter((l) => /smtpd\[\d+\]: [0-9A-F]+: client=/.test(l));
    return lines.length ? lines : undefined;
  }, 10_000);
  assert.ok(clientLines.every((l) => l.includes('[127.0.0.2]')), clientLines.join('\n'));

  // STARTTLS passes end to end through the L4 proxy.
  const t = await swaks(['--server', `127.0.0.1:${lbTls}`, '--tls', '--from', 'app@client.test', '--to', 'user@remote.test']);
  assert.equal(t.code, 0, t.stdout + t.stderr);
  assert.match(t.stdout, /<~ {2}250 2\.0\.0 Ok: queued/, 'the message was accepted inside TLS');
  await waitFor('postfix: a transaction after STARTTLS', () => /starttls=1 mail=1 rcpt=1 data=1/.test(postfix.log()), 10_000);
});
