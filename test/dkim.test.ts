// DKIM: keys made with `smtplb dkim keygen`, mail signed at acceptance, delivered through two
// pools to a real Postfix upstream (which relays it on to smtp-sink), and verified there with
// mailauth against the published TXT records: the same identity whichever pool delivered.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, afterEach, test } from 'node:test';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { freePort, runCli, startSink, startSmtplb, stopAll, tmpDir } from './helpers/peers.js';
import { startPostfix } from './helpers/postfix.js';

after(stopAll);
afterEach(stopAll);

const base: Omit<SendOptions, 'server' | 'to' | 'from'> = { headers: [], subject: 'signed', body: 'A signed message.\r\nWith two lines.', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };

test('DKIM (RSA and Ed25519): mail delivered by either pool to a real Postfix upstream verifies against the published keys', async () => {
  const dir = tmpDir('dkim-');
  const records = new Map<string, string>();
  for (const [domain, alg] of [['rsa.test', 'rsa'], ['ed.test', 'ed25519']] as const) {
    const r = runCli(['dkim', 'keygen', '--domain', domain, '--selector', 's1', '--algorithm', alg, '--out', path.join(dir, `${domain}.pem`)]);
    assert.equal(r.code, 0, r.stderr);
    const m = /^(s1\._domainkey\.[a-z.]+)\. IN TXT \( (.+) \)$/m.exec(r.stdout);
    assert.ok(m, r.stdout);
    records.set(m[1], [...m[2].matchAll(/"([^"]*)"/g)].map((x) => x[1]).join(''));
    assert.match(records.get(m[1])!, new RegExp(`^v=DKIM1; k=${alg}; p=[A-Za-z0-9+/=]+$`));
  }
  const sink = await startSink();
  const pfA = await freePort();
  const pfB = await freePort();
  await startPostfix([{ port: pfA }, { port: pfB }], { default_transport: 'smtp', relay_transport: 'smtp', relayhost: `[127.0.0.1]:${sink.port}` });
  const port = await freePort();
  await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.1/32] }
pools:
  one: { tls: none, servers: [ { name: pf-a, address: 127.0.0.1:${pfA} } ] }
  two: { tls: none, servers: [ { name: pf-b, address: 127.0.0.1:${pfB} } ] }
routes:
  - { domains: [via-one.test], pool: one }
  - { pool: two }
dkim:
  domains:
    rsa.test: { selector: s1, key_file: ${path.join(dir, 'rsa.test.pem')}, algorithm: rsa-sha256 }
    ed.test: { selector: s1, key_file: ${path.join(dir, 'ed.test.pem')}, algorithm: ed25519-sha256 }
`);
  let n = 0;
  for (const from of ['news@rsa.test', 'news@ed.test']) {
    for (const to of ['a@via-one.test', 'b@via-two.test']) {
      const r = await sendOne({ ...base, server: `127.0.0.1:${port}`, from, to: [to], headers: ['X-Traffic-Class: bulk'] }, n++);
      assert.ok(r.ok, r.ok ? '' : r.error);
    }
  }
  const msgs = await sink.settle(4, 30_000);
  const resolver = async (name: string, type: string) => {
    const txt = records.get(name.replace(/\.$/, ''));
    if (type !== 'TXT' || !txt) throw Object.assign(new Error(`no ${type} for ${name}`), { code: 'ENOTFOUND' });
    return [[txt]];
  };
  const seen = new Set<string>();
  for (const raw of msgs) {
    const m = raw.replace(/^X-(Client-Addr|Mail-Args|Rcpt-Args):.*\r?\n/gm, ''); // smtp-sink's own dump lines
    assert.match(m, /^Received: from .*\r?\n\s+by postfix\.test/m, 'it passed through Postfix');
    const v = await dkimVerify(Buffer.from(m, 'latin1'), { resolver });
    const r = v.results[0];
    const domain = /^From: .*@([a-z.]+)/m.exec(m)![1];
    assert.equal(r?.status.result, "pass", `${domain}: ${JSON.stringify(r?.status)}\n${m.slice(0, 1500)}`);
    assert.equal(r.signingDomain, domain);
    const sig = /^DKIM-Signature:((?:.*\r?\n[ \t])*.*)/m.exec(m)?.[1].replace(/\s+/g, '') ?? '';
    assert.match(sig, new RegExp(`a=${domain === 'rsa.test' ? 'rsa' : 'ed25519'}-sha256;`));
    assert.match(sig, /d=[a-z.]+;/);
    assert.doesNotMatch(m, /^X-Traffic-Class:/im, 'the class header went before signing');
    seen.add(`${domain} ${/^To: (\S+)/m.exec(m)![1]}`);
  }
  assert.equal(seen.size, 4, 'both keys, through both pools');
});
