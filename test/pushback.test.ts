// Backoff with nothing configured (issue 25): a real Postfix that takes 2 connections from a
// client at once (smtpd_client_connection_count_limit = 2, loopback not exempt) and answers the
// third with "421 4.7.0 Error: too many connections". smtplb has no shaping for it: the
// deliveries in flight when Postfix first pushed back are the base its factor cuts, the 421s
// of one burst cut once, and the destination is never suspended for having a limit. Every
// message arrives, counted in Postfix's log.
import assert from 'node:assert/strict';
import { after, afterEach, test } from 'node:test';
import { api, TOKEN } from './helpers/admin.js';
import { freePort, smtpSource, startSmtplb, stopAll, waitFor } from './helpers/peers.js';
import { startPostfix } from './helpers/postfix.js';

after(stopAll);
afterEach(stopAll);

test('an upstream with a connection limit and no shaping configured: cut to what it takes, never suspended, all 40 delivered', async () => {
  const pfPort = await freePort();
  const pf = await startPostfix([{ port: pfPort }], { smtpd_client_connection_count_limit: '2', smtpd_client_event_limit_exceptions: '' });
  const port = await freePort();
  const admin = await freePort();
  await startSmtplb(
    `hostname: gw.test
log: { level: warn, format: json }
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
spool: ./spool
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.1/32] }
pools:
  relays:
    health: { check: none }
    tls: none
    servers: [{ name: postfix, address: 127.0.0.1:${pfPort} }]
routes:
  - { pool: relays }
queue: { retry: [1s], max_age: 1h }
`,
    { waitPorts: [port, admin] },
  );
  const sent = await smtpSource(port, 40, 20, ['-t', 'u@dest.test']);
  assert.equal(sent.code, 0, sent.stderr);
  const delivered = () => (pf.log().match(/status=sent/g) ?? []).length;
  await waitFor('40 messages through Postfix', () => delivered() >= 40, 60_000, 250);
  const refused = (pf.log().match(/Connection concurrency limit exceeded/g) ?? []).length;
  assert.ok(refused >= 1, 'Postfix pushed back (the test shows nothing otherwise)');
  const { throttles } = await api<{ throttles: { suspended_until: string | null; factor: number; concurrency: number | null }[] }>(admin, '/api/throttles');
  assert.deepEqual(throttles.filter((t) => t.suspended_until), [], 'never suspended for having a limit');
  assert.equal(delivered(), 40, 'each message once');
});
