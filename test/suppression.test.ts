// The suppression list (issue 24): permanent failures that say the address is bad feed it, the
// sender's or the path's problems never do; a suppressed recipient is refused at RCPT (or taken
// and dropped); the operator lists, adds, removes, imports and exports through the CLI; every
// process of a `workers:` node sees one list. Peers: `smtplb sink` answering by recipient.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { api, metric, queueIdle } from './helpers/admin.js';
import { freePort, runCli, startSmtplb, stopAll, tmpDir, waitFor } from './helpers/peers.js';
import { startSmtplbSink } from './helpers/sink.js';
import { queueRelayConfig, transaction } from './helpers/transaction.js';

after(stopAll);

test('bounces feed the list by class: unknown users are refused at RCPT next time, spam blocks and throttling never suppress', { timeout: 90_000 }, async () => {
  const sink = await startSmtplbSink({
    rules: [
      'rcpt=gone*@*,reply=550 5.1.1 Recipient address rejected: User unknown in virtual mailbox table',
      'rcpt=spam*@*,reply=554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org',
      'rcpt=slow*@*,preset=yahoo-tss04',
    ],
  });
  const [port, admin] = [await freePort(), await freePort()];
  const dir = tmpDir();
  await startSmtplb(queueRelayConfig(port, admin, sink.port), { dir });
  // One recipient per message: a 421 at RCPT (TSS04) ends the session and would defer the others.
  const ids: Record<string, string> = {};
  for (let i = 0; i < 5; i++) {
    for (const who of ['gone', 'spam', 'slow', 'ok']) {
      const r = await transaction(port, 'news@a.test', [`${who}${i}@dest.test`]);
      assert.match(r.rcpt[0], /^250 /);
      assert.match(r.data!, /^250 /);
      ids[`${who}${i}`] = /queued as (\w+)/.exec(r.data!)![1];
    }
  }
  // The unknown users and the spam-blocked bounce; the throttled ones wait for their retry.
  await waitFor('5 ok delivered, 10 bounced, 5 deferred', async () => (await metric(admin, 'smtplb_outcomes_total', { class: 'invalid-recipient' })) === 5 && (await metric(admin, 'smtplb_outcomes_total', { class: 'reputation' })) === 5 && (await metric(admin, 'smtplb_outcomes_total', { class: 'rate-limit' })) >= 5 && (await sink.stats()).recipients_total >= 5, 20_000);
  // `smtplb queue show` names the class of a waiting recipient's last failure.
  const shown = await api<{ recipients: { reply_class: string | null; state: string }[] }>(admin, `/api/queue/${ids.slow0}`);
  assert.deepEqual(shown.recipients.map((r) => [r.state, r.reply_class]), [['queued', 'rate-limit']]);
  // The status's top list counts a waiting destination's failures by class.
  const st = await api<{ queue: { destinations: { destination: string; classes?: Record<string, number> }[] } }>(admin, '/api/status');
  const dest = st.queue.destinations.find((d) => d.destination === 'dest.test');
  assert.ok(dest?.classes && dest.classes['invalid-recipient'] === 5 && dest.classes['rate-limit']! >= 5, JSON.stringify(dest));
  const list = await waitFor('5 entries', async () => {
    const r = await api<{ suppressions: { address: string; scope: string; class: string; source: string; reason: string }[] }>(admin, '/api/suppressions');
    return r.suppressions.length === 5 ? r.suppressions : null;
  }, 5000);
  assert.deepEqual(list.map((e) => e.address), [0, 1, 2, 3, 4].map((i) => `gone${i}@dest.test`));
  for (const e of list) {
    assert.equal(e.scope, 'a.test');
    assert.equal(e.class, 'invalid-recipient');
    assert.equal(e.source, 'bounce');
    assert.match(e.reason, /User unknown/);
  }
  // Again from the same sending domain: the unknown users are refused at RCPT, the others taken.
  const again = await transaction(port, 'news@a.test', ['gone0@dest.test', 'GONE1@Dest.Test', 'spam0@dest.test', 'slow0@dest.test']);
  assert.match(again.rcpt[0], /^550 5\.1\.1 <gone0@dest\.test>: recipient suppressed \(invalid-recipient: .*User unknown/);
  assert.match(again.rcpt[1], /^550 5\.1\.1 /, 'case does not matter');
  assert.match(again.rcpt[2], /^250 /, 'a spam block is the sender\'s problem, not the address\'s');
  assert.match(again.rcpt[3], /^250 /, 'throttling (4xx) never suppresses');
  // The list is per sending domain: another domain's mail to the same address is taken.
  assert.match((await transaction(port, 'billing@b.test', ['gone0@dest.test'])).rcpt[0], /^250 /);
  assert.equal(await metric(admin, 'smtplb_suppressed_recipients_total', { action: 'refuse' }), 2);
  // The delivery log carries the class of every failure.
  const lines = fs.readFileSync(path.join(dir, 'delivery.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; recipient?: string; class?: string });
  const bounced = lines.filter((l) => l.event === 'bounced');
  assert.ok(bounced.some((l) => l.recipient === 'gone0@dest.test' && l.class === 'invalid-recipient'));
  assert.ok(bounced.some((l) => l.recipient === 'spam0@dest.test' && l.class === 'reputation'));
  assert.ok(lines.some((l) => l.event === 'attempt' && l.class === 'rate-limit'));
});

test('the operator: add, list, remove, import and export through the CLI; refuse at RCPT, or drop; one list for every worker', { timeout: 90_000 }, async () => {
  const sink = await startSmtplbSink();
  const [port, admin] = [await freePort(), await freePort()];
  const dir = tmpDir();
  const file = path.join(dir, 'smtplb.yaml');
  const lb = await startSmtplb(queueRelayConfig(port, admin, sink.port, 'workers: 2\nsuppression: { scope: global }\n'), { dir });
  const cli = (...args: string[]) => {
    const r = runCli(['suppression', ...args, '-c', file]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  assert.match(cli('add', 'Blocked@Dest.test', '--reason', 'asked us by phone'), /blocked@dest\.test suppressed for global/);
  // Each worker takes its own connections: every one of several sessions is refused.
  for (let i = 0; i < 4; i++) assert.match((await transaction(port, 'a@any.test', ['blocked@dest.test'])).rcpt[0], /^550 5\.1\.1 <blocked@dest\.test>: recipient suppressed \(asked us by phone\)/);
  fs.writeFileSync(path.join(dir, 'list.csv'), 'address,reason,expires\nx1@dest.test,"complained, twice",\nx2@dest.test,old,30d\n');
  assert.match(cli('import', path.join(dir, 'list.csv')), /2 entries imported/);
  const listed = cli('list');
  for (const a of ['blocked@dest.test', 'x1@dest.test', 'x2@dest.test']) assert.match(listed, new RegExp(a.replace('.', '\\.')));
  const csv = cli('export');
  assert.match(csv, /^address,scope,reason,class,source,created,expires\n/);
  assert.match(csv, /x1@dest\.test,global,"complained, twice",,import,/);
  assert.equal(csv.trim().split('\n').length, 4);
  // What export wrote, import takes back (x2's expiry as the time left).
  fs.writeFileSync(path.join(dir, 'exported.csv'), csv);
  assert.match(cli('remove', 'x2@dest.test'), /1 entry removed/);
  assert.match(cli('import', path.join(dir, 'exported.csv')), /3 entries imported/);
  const back = JSON.parse(cli('list', '--json')) as { suppressions: { address: string; source: string; expires: string | null }[] };
  const x2 = back.suppressions.find((e) => e.address === 'x2@dest.test')!;
  assert.equal(x2.source, 'import');
  assert.ok(x2.expires && Date.parse(x2.expires) > Date.now() + 29 * 86_400_000, `x2 expires ${x2.expires}`);
  assert.match(cli('remove', 'blocked@dest.test'), /1 entry removed/);
  for (let i = 0; i < 4; i++) assert.match((await transaction(port, 'a@any.test', ['blocked@dest.test'])).rcpt[0], /^250 /);
  const r = runCli(['suppression', 'remove', 'nobody@dest.test', '-c', file]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /404 nobody@dest\.test is not suppressed/);
  const bad = runCli(['suppression', 'add', 'not-an-address', '-c', file]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /address must be local@domain/);

  // action: drop: the client gets 250, the suppressed copy is not delivered, the other is.
  fs.writeFileSync(file, queueRelayConfig(port, admin, sink.port, 'workers: 2\nsuppression: { scope: global, action: drop }\n'));
  lb.reload();
  await waitFor('reload applied', async () => (await metric(admin, 'smtplb_config_reloads_total', { result: 'applied' })) >= 1, 5000);
  await sink.reset();
  for (let i = 0; i < 4; i++) {
    const d = await transaction(port, 'a@any.test', ['x1@dest.test', `kept${i}@dest.test`]);
    assert.deepEqual(d.rcpt.map((x) => x.slice(0, 3)), ['250', '250']);
    assert.match(d.data!, /^250 /);
  }
  const alone = await transaction(port, 'a@any.test', ['x1@dest.test']);
  assert.match(alone.data!, /^250 2\.0\.0 Ok: \w+ taken; every recipient is suppressed/);
  await queueIdle(admin);
  const stats = await sink.stats();
  assert.equal(stats.recipients_total, 4);
  assert.equal(stats.recipients['x1@dest.test'], undefined);
  assert.equal(await metric(admin, 'smtplb_suppressed_recipients_total', { action: 'drop' }), 5);
});
