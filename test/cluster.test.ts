// workers: 2 — several processes share the listening socket and one view of health.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, test } from 'node:test';
import { freePort, greeting, smtpSource, startSink, startSmtplb, stopAll, waitFor } from './helpers/peers.js';

after(stopAll);

async function metricsText(admin: number) {
  return (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
}

test('workers: 2 balance together, share health, reload together and report summed metrics', async () => {
  const a = await startSink({ hostname: 'mta-a.test' });
  const b = await startSink({ hostname: 'mta-b.test' });
  const c = await startSink({ hostname: 'mta-c.test' });
  const port = await freePort();
  const admin = await freePort();
  const text = `hostname: lb.test
workers: 2
log: { level: info }
admin: { listen: 127.0.0.1:${admin}, token: test-token-1 }
listeners:
  - { name: p, listen: 127.0.0.1:${port}, mode: tcp, pool: relays }
pools:
  relays:
    health: { check: smtp, interval: 300ms, timeout: 1s, rise: 2, fall: 2 }
    servers:
      - { name: a, address: 127.0.0.1:${a.port} }
      - { name: b, address: 127.0.0.1:${b.port} }
`;
  const lb = await startSmtplb(text);
  await waitFor('2 workers', () => lb.output().includes('started 2 worker processes'), 15_000);
  const r = await smtpSource(port, 400, 10);
  assert.equal(r.code, 0, r.stderr);
  await waitFor('400 at the sinks', () => a.count() + b.count() === 400, 10_000);
  assert.ok(Math.abs(a.count() - 200) <= 40, `a ${a.count()} b ${b.count()}`);
  // Both worker processes served: their summed counter equals the total (workers report every
  // second: waited for, failing after 5 s).
  const summed = (m: string) => [...m.matchAll(/^smtplb_server_connections_total\{[^}]*\} (\d+)/gm)].reduce((n, x) => n + Number(x[1]), 0);
  let m = '';
  await waitFor('the workers\' summed connections reported', async () => summed((m = await metricsText(admin))) >= 400, 5000).catch(() => {});
  const total = summed(m);
  assert.ok(total >= 400, `summed connections ${total}\n${m.slice(0, 500)}`);

  // One health view: b is killed; every worker stops using it.
  await b.kill();
  await waitFor('b down in metrics', async () => /smtplb_server_up\{pool="relays",server="b",backup="false"\} 0/.test(await metricsText(admin)), 5000);
  const before = a.count();
  const gs = await Promise.all(Array.from({ length: 20 }, () => greeting(port)));
  assert.ok(gs.every((g) => g.startsWith('220 mta-a.test')), gs.join('\n'));
  assert.equal(a.count(), before); // greetings only, no messages

  // A reload reaches every worker: c replaces b.
  fs.writeFileSync(lb.file, text.replace(`b, address: 127.0.0.1:${b.port}`, `c, address: 127.0.0.1:${c.port}`));
  lb.reload();
  await waitFor('c serves', async () => {
    const g = await Promise.all(Array.from({ length: 10 }, () => greeting(port)));
    return g.filter((x) => x.includes('mta-c.test')).length >= 4;
  }, 10_000);
});
