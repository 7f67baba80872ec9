// The compliance gate (issue 25), `mode: hold`: a bulk-class message whose sending domain's
// DKIM TXT record does not match the configured key waits in the queue with the reason (queue
// show, /api/status), never bounced; once the record is fixed in the DNS zone the doctor's next
// run sees it and the message is delivered, without a restart. Mail of another class from the
// same domain is not gated; an operator's release lets a held message go despite its records.
// Real peers: a loopback DNS server (the zone is changed while smtplb runs), smtp-sink.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, afterEach, test } from 'node:test';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { api, TOKEN } from './helpers/admin.js';
import { BIN, freePort, run, runCli, startSink, startSmtplb, stopAll, tmpDir, waitFor } from './helpers/peers.js';
import { startDns } from './helpers/dns.js';

after(stopAll);
afterEach(stopAll);

const base: Omit<SendOptions, 'server' | 'to' | 'from'> = { headers: [], subject: 'news', body: 'Bulk news.', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };

/** The CLI without blocking this process (the DNS server smtplb asks lives here). */
const cli = (args: string[]) => run(process.execPath, [BIN, ...args], 30_000);

function keyRecord(dir: string, domain: string, file: string): string {
  const r = runCli(['dkim', 'keygen', '--domain', domain, '--selector', 's1', '--out', path.join(dir, file)]);
  assert.equal(r.code, 0, r.stderr);
  return [...r.stdout.matchAll(/"([^"]*)"/g)].map((x) => x[1]).join('');
}

test('compliance: hold: bulk mail from a domain whose DKIM record does not match waits with the reason; fixed in DNS, it goes without a restart; release lets one go', async () => {
  const dir = tmpDir('compliance-');
  const right = keyRecord(dir, 'news.test', 'news.pem');
  const wrong = keyRecord(dir, 'news.test', 'other.pem');
  keyRecord(dir, 'promo.test', 'promo.pem');
  const dkimTxt = { type: 'TXT' as const, name: 's1._domainkey.news.test', data: wrong };
  const dns = await startDns([
    dkimTxt,
    { type: 'TXT', name: '_dmarc.news.test', data: 'v=DMARC1; p=none' },
    { type: 'TXT', name: 'news.test', data: 'v=spf1 -all' },
    { type: 'TXT', name: '_dmarc.promo.test', data: 'v=DMARC1; p=none' },
  ]);
  const sink = await startSink();
  const port = await freePort();
  const admin = await freePort();
  const lb = await startSmtplb(
    `hostname: gw.test
log: { level: warn, format: json }
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.1/32] }
pools:
  out: { tls: none, health: { check: none }, servers: [{ name: sink, address: 127.0.0.1:${sink.port} }] }
routes:
  - { pool: out }
classes: { header: X-Traffic-Class }
dkim:
  domains:
    news.test: { selector: s1, key_file: ${path.join(dir, 'news.pem')} }
    promo.test: { selector: s1, key_file: ${path.join(dir, 'promo.pem')} }
doctor: { resolver: 127.0.0.1:${dns.port}, interval: 2s, timeout: 500ms }
compliance: { mode: hold, classes: [bulk], recheck: 1s }
queue: { retry: [1s], max_age: 1h }
`,
    { waitPorts: [port, admin] },
  );
  const send = async (from: string, cls: string) => {
    const r = await sendOne({ ...base, headers: [`X-Traffic-Class: ${cls}`], server: `127.0.0.1:${port}`, from, to: ['u@dest.test'] }, 0);
    assert.ok(r.ok, r.ok ? '' : r.error);
  };
  await send('news@news.test', 'bulk');
  await send('news@news.test', 'transactional');
  // The transactional one goes; the bulk one waits, with its reason.
  await sink.settle(1, 15_000);
  const listed = await waitFor('the bulk message waiting with its reason', async () => {
    const l = JSON.parse((await cli(['queue', 'list', '--json', '-c', lb.file])).stdout) as { messages: { id: string; recipients: { waiting_for: string | null }[] }[] };
    return l.messages.find((m) => /compliance: news\.test dkim-key-mismatch/.test(m.recipients[0].waiting_for ?? ''));
  }, 20_000, 250);
  const show = (await cli(['queue', 'show', listed.id, '-c', lb.file])).stdout;
  assert.match(show, /waiting for compliance: news\.test dkim-key-mismatch .*waits until the records are fixed/);
  const status = await api<{ compliance: { mode: string; domains: { domain: string; held: boolean; reason: string }[] } }>(admin, '/api/status');
  assert.equal(status.compliance.mode, 'hold');
  assert.ok(status.compliance.domains.some((d) => d.domain === 'news.test' && d.held && /dkim-key-mismatch/.test(d.reason)), JSON.stringify(status.compliance));
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(sink.count(), 1, 'still only the transactional message: the bulk one waits, it is not bounced');

  // The operator lets one go despite its records: promo.test publishes no key at all.
  await send('news@promo.test', 'bulk');
  const promo = await waitFor('the promo message waiting', async () => {
    const l = JSON.parse((await cli(['queue', 'list', '--json', '-c', lb.file])).stdout) as { messages: { id: string; sender: string; recipients: { waiting_for: string | null }[] }[] };
    return l.messages.find((m) => m.sender === 'news@promo.test' && /compliance: promo\.test dkim-missing/.test(m.recipients[0].waiting_for ?? ''));
  }, 20_000, 250);
  const rel = await cli(['queue', 'release', promo.id, '-c', lb.file]);
  assert.equal(rel.code, 0, rel.stderr);
  await waitFor('the released message delivered', () => sink.count() >= 2, 15_000, 250);

  // The record fixed in the zone: the doctor's next run sees it, the bulk message goes.
  dkimTxt.data = right;
  await waitFor('the bulk message delivered once the record is fixed', () => sink.count() >= 3, 30_000, 250);
  const all = await sink.settle(3);
  assert.equal(all.filter((m) => /^From: .*news@news\.test/m.test(m)).length, 2, 'both news.test messages, each once');
});
