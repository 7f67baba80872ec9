// One-click unsubscribe (RFC 8058, issue 25): a bulk-class message without List-Unsubscribe
// arrives at a real smtp-sink with both fields, DKIM-signed over them (verified with mailauth
// against the published key); the URL's endpoint, asked with a real HTTP client: GET shows a
// button and changes nothing, a token altered by one character gets 400, the one-click POST
// suppresses the recipient (the next message to it gets 550 at RCPT) and emits `unsubscribed`
// with the message's tags. A class with `require` refuses bulk mail without a one-click
// unsubscribe of its own, and takes it with one, signed over the application's fields too.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, test } from 'node:test';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { api, TOKEN } from './helpers/admin.js';
import { freePort, runCli, startSink, startSmtplb, stopAll, swaks, tmpDir, waitFor } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);

const base: Omit<SendOptions, 'server' | 'to' | 'from'> = { headers: [], subject: 'news', body: 'Spring news.\r\nTwo lines.', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };

/** A header field's unfolded value from a raw message. */
const field = (raw: string, name: string) => new RegExp(`^${name}:((?:.*)(?:\\r?\\n[ \\t].*)*)`, 'im').exec(raw)?.[1].replace(/\r?\n[ \t]/g, ' ').trim();

test('one-click unsubscribe: added and signed, GET changes nothing, a forged token gets 400, POST suppresses and emits unsubscribed; require refuses bulk mail without one', async () => {
  const dir = tmpDir('unsub-');
  const key = runCli(['dkim', 'keygen', '--domain', 'news.test', '--selector', 's1', '--out', path.join(dir, 'news.pem')]);
  assert.equal(key.code, 0, key.stderr);
  const txt = [.../"([^"]*)"/g[Symbol.matchAll](key.stdout)].map((x) => x[1]).join('');
  const resolver = async (name: string, type: string) => {
    if (type === 'TXT' && /^s1\._domainkey\.(strict\.)?news\.test$/.test(name.replace(/\.$/, ''))) return [[txt]];
    throw Object.assign(new Error(`no ${type} for ${name}`), { code: 'ENOTFOUND' });
  };
  const sink = await startSink();
  const port = await freePort();
  const admin = await freePort();
  const web = await freePort();
  const inbound = await freePort();
  const events = path.join(dir, 'events.jsonl');
  const lb = await startSmtplb(
    `hostname: gw.test
log: { level: warn, format: json }
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.1/32] }
  - { name: inbound, listen: 127.0.0.1:${inbound}, mode: smtp }
pools:
  out: { tls: none, health: { check: none }, servers: [{ name: sink, address: 127.0.0.1:${sink.port} }] }
routes:
  - { pool: out }
classes: { sender_domains: { news.test: bulk, strict.news.test: strict } }
dkim:
  domains:
    news.test: { selector: s1, key_file: ${path.join(dir, 'news.pem')} }
    strict.news.test: { selector: s1, key_file: ${path.join(dir, 'news.pem')} }
unsubscribe:
  listen: 127.0.0.1:${web}
  base_url: http://127.0.0.1:${web}
  secret: an-unsubscribe-secret-of-some-length
  mailto: unsub@news.test
  classes:
    bulk: { add: true }
    strict: { require: true }
events: { file: ${events} }
`,
    { waitPorts: [port, admin, web, inbound] },
  );
  const send = (from: string, to: string, headers: string[] = []) => sendOne({ ...base, server: `127.0.0.1:${port}`, from, to: [to], headers }, 0);

  // A bulk message without List-Unsubscribe: both fields added, the signature covers them.
  const r1 = await send('news@news.test', 'alice@dest.test', ['X-Smtplb-Tags: campaign=spring, list=weekly']);
  assert.ok(r1.ok, r1.ok ? '' : r1.error);
  const [raw] = await sink.settle(1, 20_000);
  const m = raw.replace(/^X-(Client-Addr|Mail-Args|Rcpt-Args):.*\r?\n/gm, '');
  const lu = field(m, 'List-Unsubscribe')!;
  assert.match(lu, /^<http:\/\/127\.0\.0\.1:\d+\/u\/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+>, <mailto:unsub@news\.test\?subject=unsubscribe%20[A-Za-z0-9_.-]+>$/);
  assert.equal(field(m, 'List-Unsubscribe-Post'), 'List-Unsubscribe=One-Click');
  const v = await dkimVerify(Buffer.from(m, 'latin1'), { resolver });
  assert.equal(v.results[0]?.status.result, 'pass', JSON.stringify(v.results[0]?.status));
  const h = /[;\s]h=([^;]+)/.exec(field(m, 'DKIM-Signature')!.replace(/\s+/g, ''))![1].toLowerCase().split(':');
  assert.ok(h.includes('list-unsubscribe') && h.includes('list-unsubscribe-post'), `h= ${h.join(':')}`);
  const url = /<(http:[^>]+)>/.exec(lu)![1];

  const suppressed = async () => (await api<{ suppressions: { scope: string; source: string }[] }>(admin, `/api/suppressions?address=alice@dest.test`)).suppressions;

  // GET: a page with a button, nothing changes (RFC 8058 3.2).
  const page = await fetch(url);
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.match(html, /<form method="post"[^>]*><input type="hidden" name="List-Unsubscribe" value="One-Click"><button/);
  assert.match(page.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
  assert.deepEqual(await suppressed(), []);

  // A token altered by one character: 400, for GET and POST, nothing changes.
  const at = url.length - 5;
  const forged = url.slice(0, at) + (url[at] === 'A' ? 'B' : 'A') + url.slice(at + 1);
  assert.equal((await fetch(forged)).status, 400);
  const forgedPost = await fetch(forged, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
  assert.equal(forgedPost.status, 400);
  // A POST without the one-click body is not one.
  assert.equal((await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'x=1' })).status, 400);
  assert.deepEqual(await suppressed(), []);

  // The one-click POST, as mailbox providers send it.
  const post = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
  assert.equal(post.status, 200, await post.text());
  const entries = await suppressed();
  assert.equal(entries.length, 1);
  assert.equal(entries[0].scope, 'news.test');
  assert.equal(entries[0].source, 'unsubscribe');
  const again = await send('news@news.test', 'alice@dest.test');
  assert.equal(again.ok, false);
  assert.match(again.ok ? '' : again.error, /550 5\.1\.1 <alice@dest\.test>: recipient suppressed \(unsubscribed/);
  const ev = await waitFor('the unsubscribed event', () => (fs.existsSync(events) ? fs.readFileSync(events, 'utf8') : '').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; recipient: string; sender_domain: string; tags: Record<string, string> }).find((e) => e.type === 'unsubscribed'));
  assert.equal(ev.recipient, 'alice@dest.test');
  assert.equal(ev.sender_domain, 'news.test');
  assert.deepEqual(ev.tags, { campaign: 'spring', list: 'weekly' });

  // The mailto: a message to unsub@news.test (smtplb's own address, from a client it relays
  // for nobody) with the token in its Subject does the same; a forged token is refused.
  const r3 = await send('news@news.test', 'carol@dest.test');
  assert.ok(r3.ok, r3.ok ? '' : r3.error);
  const raw3 = (await sink.settle(2, 20_000)).find((x) => /^To: .*carol@dest\.test/m.test(x))!;
  const subject = decodeURIComponent(/<mailto:unsub@news\.test\?subject=([^>]+)>/.exec(field(raw3, 'List-Unsubscribe')!)![1]);
  const mailto = (subj: string) => swaks(['--server', `127.0.0.1:${inbound}`, '--from', 'carol@dest.test', '--to', 'unsub@news.test', '--header', `Subject: ${subj}`, '--body', 'unsubscribe']);
  const bad = await mailto(subject.slice(0, -3) + (subject.endsWith('AAA') ? 'BBB' : 'AAA'));
  assert.match(bad.stdout, /550 5\.7\.1 Not a valid unsubscribe request/, bad.stdout);
  const viaMail = await mailto(subject);
  assert.match(viaMail.stdout, /250 2\.0\.0 carol@dest\.test unsubscribed from news\.test/, viaMail.stdout + viaMail.stderr);
  assert.equal((await api<{ suppressions: { source: string; reason: string }[] }>(admin, '/api/suppressions?address=carol@dest.test')).suppressions[0]?.reason, 'unsubscribed (mailto)');

  // require: no one-click unsubscribe of its own, refused; with one, taken and signed over it.
  const bare = await send('x@strict.news.test', 'bob@dest.test');
  assert.equal(bare.ok, false);
  assert.match(bare.ok ? '' : bare.error, /550 5\.7\.0 Mail of class strict needs a one-click unsubscribe/);
  const own = ['List-Unsubscribe: <https://app.example/u/123>', 'List-Unsubscribe-Post: List-Unsubscribe=One-Click'];
  const ok = await send('x@strict.news.test', 'bob@dest.test', own);
  assert.ok(ok.ok, ok.ok ? '' : ok.error);
  const raw2 = (await sink.settle(3, 20_000)).find((x) => /^From: .*strict\.news\.test/m.test(x))!;
  const m2 = raw2.replace(/^X-(Client-Addr|Mail-Args|Rcpt-Args):.*\r?\n/gm, '');
  assert.equal((m2.match(/^List-Unsubscribe:/gim) ?? []).length, 1, 'the application\'s own field is kept, none added');
  const v2 = await dkimVerify(Buffer.from(m2, 'latin1'), { resolver });
  assert.equal(v2.results[0]?.status.result, 'pass');
  const h2 = /[;\s]h=([^;]+)/.exec(field(m2, 'DKIM-Signature')!.replace(/\s+/g, ''))![1].toLowerCase().split(':');
  assert.ok(h2.includes('list-unsubscribe') && h2.includes('list-unsubscribe-post'), 'the application\'s fields are signed too');
  void lb;
});
