// An upstream that serves a bounded number of sessions (smtp-sink -m, a Postfix with its
// smtpd processes all busy) leaves further connections in its accept queue, unanswered. A
// connection smtplb keeps idle for reuse holds one of those sessions: kept for the whole
// reuse.seconds (30 s), it starved the connections that had mail to send, which waited for a
// greeting until it closed (seen with workers: 8 and 600 client sessions: 20 s with nothing
// delivered). An idle connection closes after reuse.idle (default 2 s), as Postfix's
// connection cache does, so the waiting ones get their session.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { freePort, smtpSource, startSink, startSmtplb, stopAll, waitFor } from './helpers/peers.js';

after(stopAll);

test('an idle reused connection does not hold an upstream session that new connections wait for', async () => {
  const sink = await startSink({ args: ['-m', '1'] });
  const port = await freePort();
  await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.1/32], delivery: queue }
pools:
  relays:
    health: { check: none }
    tls: none
    reuse: { messages: 100, seconds: 30s }
    destination_concurrency: 10
    servers:
      - { name: s1, address: 127.0.0.1:${sink.port} }
routes:
  - { pool: relays }
`);
  const t0 = Date.now();
  // Three messages at once: three deliveries, three connections; the sink serves one at a time.
  const r = await smtpSource(port, 3, 3);
  assert.equal(r.code, 0, r.stderr);
  await waitFor('3 messages at the sink', () => sink.count() >= 3, 12_000);
  assert.ok(Date.now() - t0 < 12_000, `took ${Date.now() - t0} ms`);
});
