// `tls: verify` toward upstreams, against a test CA (given to smtplb as NODE_EXTRA_CA_CERTS, as
// an operator with a private CA would). The upstreams are real Postfix smtpd listeners, each
// with its own certificate; what they accept is relayed to an smtp-sink, where it is counted.
// A certificate with the right address is used; one for another name and an expired one are
// refused, and the mail waits in the queue (4xx: a certificate problem is the operator's to
// fix, never a reason to bounce). `tls: may` still delivers to the wrongly named one.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { freePort, haveCommand, startSink, startSmtplb, stopAll, tmpDir, waitFor } from './helpers/peers.js';
import { startPostfix } from './helpers/postfix.js';

after(stopAll);

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

/** A CA, and certificates it signed: right address, wrong name, expired. */
function testPki(dir: string) {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30', '-subj', '/CN=smtplb test CA'], dir);
  const leaf = (name: string, san: string, days: string) => {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
    fs.writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', days, '-extfile', `${name}.ext`], dir);
    return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
  };
  return {
    ca: path.join(dir, 'ca.crt'),
    good: leaf('good', 'IP:127.0.0.1', '30'),
    wrong: leaf('wrong', 'DNS:other.test', '30'),
    // -days -1: not after yesterday
    expired: leaf('expired', 'IP:127.0.0.1', '-1'),
  };
}

test('upstream tls: verify against a test CA: the right certificate is used; a wrong name and an expired one are refused and the mail waits (4xx, no bounce)', { skip: haveCommand('postfix') ? false : 'postfix is not installed' }, async () => {
  const dir = tmpDir('tlsverify-');
  const pki = testPki(dir);
  const sink = await startSink();
  const [pGood, pWrong, pExpired] = [await freePort(), await freePort(), await freePort()];
  const tlsOpts = (c: { cert: string; key: string }) => ['smtpd_tls_security_level=may', `smtpd_tls_cert_file=${c.cert}`, `smtpd_tls_key_file=${c.key}`];
  await startPostfix(
    [
      { port: pGood, options: tlsOpts(pki.good) },
      { port: pWrong, options: tlsOpts(pki.wrong) },
      { port: pExpired, options: tlsOpts(pki.expired) },
    ],
    { default_transport: 'smtp', relay_transport: 'smtp', relayhost: `[127.0.0.1]:${sink.port}` },
  );
  const [port, admin] = [await freePort(), await freePort()];
  const lb = await startSmtplb(
    `hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: test-token-1 }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  good: { tls: verify, servers: [ { name: good, address: 127.0.0.1:${pGood} } ] }
  wrong: { tls: verify, servers: [ { name: wrong, address: 127.0.0.1:${pWrong} } ] }
  expired: { tls: verify, servers: [ { name: expired, address: 127.0.0.1:${pExpired} } ] }
  lax: { tls: may, servers: [ { name: lax, address: 127.0.0.1:${pWrong} } ] }
routes:
  - { domains: [good.test], pool: good }
  - { domains: [wrong.test], pool: wrong }
  - { domains: [expired.test], pool: expired }
  - { domains: [lax.test], pool: lax }
queue: { retry: [1s], max_age: 1h }
`,
    { env: { NODE_EXTRA_CA_CERTS: pki.ca } },
  );
  const base: SendOptions = { server: `127.0.0.1:${port}`, from: 'app@sender.test', to: [], headers: [], subject: 'tls verify', body: 'hello\n', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };
  for (const to of ['a@good.test', 'b@wrong.test', 'c@expired.test', 'd@lax.test']) {
    const r = await sendOne({ ...base, to: [to] }, 0);
    if (!r.ok) assert.fail(`${to}: ${r.error}`);
  }
  const delivered = await sink.settle(2, 30_000);
  const to = delivered.map((m) => /^To: (\S+)/m.exec(m)?.[1]).sort();
  assert.deepEqual(to, ['a@good.test', 'd@lax.test']);
  assert.match(delivered.find((m) => /a@good\.test/.test(m))!, /with ESMTPS/, 'the verified hop was TLS (Postfix says so in its Received line)');
  // A few retries later the refused ones are still waiting, never bounced, with the reason.
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(sink.count(), 2);
  const st = (await (await fetch(`http://127.0.0.1:${admin}/api/status`, { headers: { authorization: 'Bearer test-token-1' } })).json()) as { queue: { counts: Record<string, number> }; last_errors: { pool?: string; text?: string; error?: string }[] };
  assert.equal(st.queue.counts.queued, 2, JSON.stringify(st.queue));
  const why = JSON.stringify(st.last_errors);
  assert.match(why, /altnames|does not match|ERR_TLS_CERT_ALTNAME_INVALID/i, `the wrong name is named: ${why}`);
  assert.match(why, /expired/i, `the expiry is named: ${why}`);
  assert.equal(lb.proc.exitCode, null);
  assert.doesNotMatch(lb.output(), /DEP0123|Setting the TLS ServerName to an IP address/, 'no ServerName warning for IP upstreams');
});
