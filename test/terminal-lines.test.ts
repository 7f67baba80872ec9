// On a terminal (log format pretty) a delivery is one short line: event, queue id, recipient,
// server, reply and delay, without the delivery record's JSON object after it (the demo used to
// print two 400-character lines per message). In JSON format the record stays, for shippers.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src');

function logDelivery(format: 'pretty' | 'json'): string {
  const script = `
    const { createLogger } = await import(${JSON.stringify(`${DIST}/core/logger.js`)});
    const { DeliveryLog } = await import(${JSON.stringify(`${DIST}/delivery/delivery-log.js`)});
    const log = new DeliveryLog(undefined, createLogger('info', ${JSON.stringify(format)}));
    log.write({ event: 'delivered', queue_id: '0MIQ3K2X1A7F3C2001', message_id: '<m1@app.test>', sender: 'app@client.test', recipient: 'user@example.test',
      recipient_domain: 'example.test', route: 0, pool: 'relays', server: 'mx1', code: 250, enhanced_code: '2.0.0',
      reply: '250 2.0.0 Ok: queued as 4Fb3kQ1z9Wz2x ' + 'x'.repeat(300), queue_delay_ms: 1234, delivery_ms: 12, attempt: 1 });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test('pretty: one short line per delivery with queue id, recipient, server, reply and delay', () => {
  const lines = logDelivery('pretty').split('\n').filter(Boolean);
  assert.equal(lines.length, 1, lines.join('\n'));
  const [line] = lines;
  assert.ok(line.length < 220, `${line.length} characters: ${line}`);
  for (const part of ['delivered', '0MIQ3K2X1A7F3C2001', 'user@example.test', 'relays/mx1', '250 2.0.0 Ok: queued as 4Fb3kQ1z9Wz2x', '(1.2 s)']) assert.ok(line.includes(part), `${part} in: ${line}`);
  assert.doesNotMatch(line, /"delivery"|message_id|enhanced_code/);
});

test('json: the delivery record is kept as a field', () => {
  const rec = JSON.parse(logDelivery('json').trim()) as { delivery: { queue_id: string; reply: string }; msg: string };
  assert.equal(rec.delivery.queue_id, '0MIQ3K2X1A7F3C2001');
  assert.equal(rec.delivery.reply.length, 338, 'the record has the whole reply');
  assert.match(rec.msg, /^delivered 0MIQ3K2X1A7F3C2001 to user@example\.test via relays\/mx1: 250 2\.0\.0 Ok/);
});
