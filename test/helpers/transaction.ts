// One SMTP transaction as the suppression and events tests speak it, and the queueing relay
// they both start (one pool to one sink, the delivery log in a file, retries every second).
import assert from 'node:assert/strict';
import { TOKEN } from './admin.js';
import { session } from './peers.js';

/** MAIL, one RCPT per recipient, and DATA when any was taken: each RCPT's reply, and the final dot's (null when none was taken). */
export async function transaction(port: number, from: string, rcpts: string[], headers = ''): Promise<{ rcpt: string[]; data: string | null }> {
  const s = session(port);
  await s.reply();
  await s.send('EHLO client.test');
  assert.match(await s.send(`MAIL FROM:<${from}>`), /^250/);
  const rcpt: string[] = [];
  for (const r of rcpts) rcpt.push(await s.send(`RCPT TO:<${r}>`));
  let data: string | null = null;
  if (rcpt.some((r) => r.startsWith('250'))) {
    assert.match(await s.send('DATA'), /^354/);
    data = await s.send(`From: <${from}>\r\nSubject: after the attempt\r\n${headers}\r\nbody\r\n.`);
  }
  await s.send('QUIT');
  s.close();
  return { rcpt, data };
}

/** smtplb queueing for `sink`, with an admin API and a delivery log; `extra` is more top-level YAML. */
export const queueRelayConfig = (port: number, admin: number, sink: number, extra = '') => `hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
delivery_log: { file: ./delivery.log }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${sink} } ] }
routes: [ { pool: out } ]
queue: { retry: [1s] }
${extra}`;
