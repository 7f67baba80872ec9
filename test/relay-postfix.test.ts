// mode smtp with real Postfix on both sides: Postfix relaying through smtplb's submission
// listener with SASL over enforced TLS, and smtplb delivering to a Postfix upstream that
// requires STARTTLS and AUTH (Cyrus SASL, sasldb).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { hashPassword } from '../src/policy/password.js';
import { freePort, selfSignedCert, smtpSource, startSink, startSmtplb, stopAll, swaks, tmpDir, waitFor } from './helpers/peers.js';
import { startPostfix } from './helpers/postfix.js';

after(stopAll);

test('Postfix → smtplb submission (SASL, TLS) → smtp-sink, and smtplb → Postfix upstream (STARTTLS, AUTH)', async () => {
  const dir = tmpDir('pfrelay-');
  const { cert, key } = selfSignedCert(dir, 'gw.test');
  // Cyrus SASL users for the Postfix upstream.
  const sasldb = path.join(dir, 'sasldb2');
  const sp = spawnSync('saslpasswd2', ['-p', '-c', '-f', sasldb, '-u', 'postfix.test', 'relayuser'], { input: 'relay-secret', encoding: 'utf8' });
  assert.equal(sp.status, 0, sp.stderr);
  fs.chmodSync(sasldb, 0o644);
  fs.mkdirSync('/etc/postfix/sasl', { recursive: true });
  fs.writeFileSync('/etc/postfix/sasl/smtpd.conf', `pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: ${sasldb}\n`);

  const sink = await startSink();
  const sub = await freePort();
  const relayPort = await freePort();
  const pfIn = await freePort();
  const pfUp = await freePort();
  const appHash = await hashPassword('app-secret');
  const lb = await startSmtplb(`hostname: gw.test
log: { level: info, format: json }
spool: ./spool
listeners:
  - { name: submission, listen: 127.0.0.1:${sub}, mode: smtp, require_auth: true, tls: { cert: ${cert}, key: ${key} } }
  - { name: relay, listen: 127.0.0.1:${relayPort}, mode: smtp, relay_networks: [127.0.0.1/32] }
users:
  - { name: app, password: "${appHash}" }
pools:
  sinks:
    servers: [ { name: sink, address: 127.0.0.1:${sink.port} } ]
  postfix:
    tls: require
    auth: { user: relayuser, pass: relay-secret }
    health: { check: smtp, starttls: true, interval: 2s, timeout: 3s }
    servers: [ { name: pf, address: 127.0.0.1:${pfUp} } ]
routes:
  - { domains: [final.test], pool: postfix }
  - { pool: sinks }
queue: { retry: [1s], max_age: 1h }
`);
  const postfix = await startPostfix(
    [
      { port: pfIn },
      {
        port: pfUp,
        options: [
          'smtpd_tls_security_level=may',
          `smtpd_tls_cert_file=${cert}`,
          `smtpd_tls_key_file=${key}`,
          'smtpd_tls_auth_only=yes',
          'smtpd_sasl_auth_enable=yes',
          'smtpd_sasl_local_domain=postfix.test',
          'smtpd_recipient_restrictions=permit_sasl_authenticated,reject',
        ],
      },
    ],
    {
      default_transport: 'smtp',
      relay_transport: 'smtp',
      relayhost: `[127.0.0.1]:${sub}`,
      transport_maps: 'inline:{ final.test=discard: }',
      cyrus_sasl_config_path: '/etc/postfix/sasl',
      smtp_sasl_auth_enable: 'yes',
      smtp_sasl_password_maps: `inline:{ [127.0.0.1]:${sub}=app:app-secret }`,
      smtp_sasl_security_options: 'noanonymous',
      smtp_sasl_tls_security_options: 'noanonymous',
      smtp_tls_security_level: 'encrypt',
    },
  );

  // 1. Postfix as the sending client: 100 messages through the submission listener.
  const r = await smtpSource(pfIn, 100, 5, ['-t', 'user@dest.test']);
  assert.equal(r.code, 0, r.stderr);
  const msgs = await sink.settle(100, 60_000);
  assert.equal(msgs.length, 100);
  for (const m of msgs) {
    assert.match(m, /with ESMTPSA id/, 'arrived at smtplb over TLS with AUTH');
    assert.match(m, /^Message-Id: <[^>]+>$/m);
    assert.match(m, /^From: <load@source\.test>$/m);
    assert.equal(m.match(/^\dX{20,}\r?$/gm)?.length, 12, "body intact: the 12 numbered lines of smtp-source -l 1000");
    assert.match(m, /^X{20,}\r?$/m, "body intact: the last line");
  }
  assert.equal(new Set(msgs.map((m) => /^Message-Id: (.+)$/m.exec(m)![1])).size, 100);
  assert.match(postfix.log(), /relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.*status=sent \(250 2\.0\.0 Ok: queued as/);

  // 2. Postfix as the upstream: smtplb delivers with STARTTLS and AUTH.
  const sw = await swaks(['--server', `127.0.0.1:${relayPort}`, '--from', 'app@client.test', '--to', 'someone@final.test', '--header', 'Subject: to postfix']);
  assert.equal(sw.code, 0, sw.stdout);
  // smtpd_tls_auth_only=yes: Postfix offers AUTH only after STARTTLS, so an authenticated
  // session is a TLS session. (smtplb keeps the connection for reuse, so Postfix's
  // disconnect summary comes later.)
  await waitFor('postfix accepted from smtplb with AUTH over TLS', () => /client=localhost\[127\.0\.0\.1\], sasl_method=PLAIN, sasl_username=relayuser@postfix\.test/.test(postfix.log()), 20_000);
  await waitFor('postfix took the message', () => /to=<someone@final\.test>.*status=sent/.test(postfix.log()), 20_000);
  await waitFor('smtplb logged the delivery', () => /"pool":"postfix","server":"pf","code":250/.test(lb.output()), 10_000);
});
