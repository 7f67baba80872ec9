// The queue manager's bounded-input rules where they meet the outside: `smtplb check` refuses
// a backoff pattern that could take the event loop, and a hostile upstream's endless reply is
// cut off. The pure parts are in test/unit/queue-decisions.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { Pool } from '../src/balancing/pool.js';
import { poolSchema } from '../src/config/schema.js';
import { runCli, stopAll, tmpDir } from './helpers/peers.js';

after(stopAll);

test('smtplb check names the file, line and key of a risky backoff pattern', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'smtplb.yaml');
  fs.writeFileSync(file, `hostname: gw.test
listeners:
  - { name: relay, listen: 127.0.0.1:2525, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  relays: { servers: [ { name: a, address: 127.0.0.1:2601 } ] }
routes: [ { pool: relays } ]
backoff:
  patterns: ["mailbox busy", "(a+)+$"]
`);
  const r = runCli(['check', '-c', file]);
  assert.equal(r.code, 1);
  assert.match(r.stderr + r.stdout, /smtplb\.yaml:8:\d+: backoff\.patterns\[1\]: pattern refused: .*exponential/);
});

test('a hostile upstream sending 20,000 short continuation lines ("2-a") is cut off, and the event loop stays free', async () => {
  // A peer no MTA package can play: a raw socket writing the reply nodemailer parses quadratically.
  const { openUpstream } = await import('../src/delivery/upstream.js');
  const net = await import('node:net');
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.write(`220-x\r\n${'2-a\r\n'.repeat(20_000)}220 ok\r\n`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as import('node:net').AddressInfo).port;
  const pool = new Pool('p', poolSchema.parse({ tls: 'none', servers: [{ name: 's', address: `127.0.0.1:${port}` }] }));
  let worstTick = 0;
  let last = Date.now();
  const ticker = setInterval(() => {
    worstTick = Math.max(worstTick, Date.now() - last);
    last = Date.now();
  }, 10);
  try {
    await assert.rejects(openUpstream(pool, pool.servers[0], 'gw.test'), /longer than 100 lines/);
  } finally {
    clearInterval(ticker);
    server.close();
  }
  assert.ok(worstTick < 500, `event loop blocked ${worstTick} ms`);
});

