// Property-based fuzzing (fast-check) of what strangers feed a live smtplb: SMTP command
// sequences against a listener, and requests to the admin API (the pure parts, the PROXY
// parser and the config loader, are in test/unit/fuzz.test.ts). The suite runs a bounded
// number of cases (FUZZ_RUNS, 100 by default, well under a minute); `npm run fuzz` runs many
// more. Inputs that once broke something stay below as regression cases.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { freePort, greeting, startSink, startSmtplb, stopAll, type Smtplb } from './helpers/peers.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 100);
const TOKEN = 'fuzz-token-123';

let lb: Smtplb;
let port = 0;
let admin = 0;

before(async () => {
  [port, admin] = [await freePort(), await freePort()];
  const sink = await startSink();
  lb = await startSmtplb(`hostname: gw.test
log: { level: error }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8], max_message_size: 1MB, client_timeout: 5s }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: out } ]
queue: { retry: [1h], max_age: 2h, min_free: 0 }
`);
});
after(stopAll);

/** Send lines to a fresh session, read for a moment, close. Resolves with what came back. */
function converse(lines: string[]): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let out = '';
    s.on('data', (c) => (out += c.toString('latin1')));
    s.on('error', () => {});
    s.once('data', () => {
      for (const l of lines) s.write(l);
      setTimeout(() => s.destroy(), 150);
    });
    s.on('close', () => resolve(out));
    setTimeout(() => s.destroy(), 3000);
  });
}

const smtpLine = fc.oneof(
  fc.constantFrom('EHLO fuzz.test\r\n', 'HELO x\r\n', 'MAIL FROM:<a@client.test>\r\n', 'MAIL FROM:<>\r\n', 'RCPT TO:<b@dest.test>\r\n', 'RCPT TO:<"x y"@[127.0.0.1]>\r\n', 'DATA\r\n', 'RSET\r\n', 'NOOP\r\n', 'QUIT\r\n', 'STARTTLS\r\n', 'AUTH PLAIN AGFwcABzZWNyZXQ=\r\n', 'AUTH LOGIN\r\n', 'BDAT 10 LAST\r\n', 'VRFY root\r\n', '.\r\n', 'Subject: x\r\n\r\nbody\r\n.\r\n'),
  fc.string({ maxLength: 200 }).map((s) => `${s}\r\n`),
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1')),
  fc.constantFrom('x'.repeat(5000) + '\r\n', 'MAIL FROM:<a@b> SIZE=99999999999\r\n', 'RCPT TO:<\u0000@x>\r\n', 'line with bare LF\n', '\u00ff\u00fe 8-bit\r\n'),
);

test('SMTP: random command sequences never end the process; a new client is still greeted', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(smtpLine, { maxLength: 12 }), async (lines) => {
      const out = await converse(lines);
      assert.ok(out === '' || /^(220|421)/.test(out), `first reply: ${out.slice(0, 80)}`);
      for (const m of out.matchAll(/^(\d{3})[ -]/gm)) assert.ok(Number(m[1]) >= 200 && Number(m[1]) < 600);
    }),
    { numRuns: RUNS },
  );
  assert.equal(lb.proc.exitCode, null, 'still running');
  assert.match(await greeting(port), /^220 /);
});

const adminRegressions = [
  'GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET /api/queue/%zz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer fuzz-token-123\r\n\r\n',
  // Found by `npm run fuzz` (FUZZ_RUNS=3000, after 386 cases): a JSON body that is null answered 500.
  'POST /api/suspensions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer fuzz-token-123\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnull',
  'POST /api/overrides HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer fuzz-token-123\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]',
  'POST /api/pools/out/servers/s1/weight HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer fuzz-token-123\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnull',
];

test('admin API: random requests get 2xx/4xx answers (never 5xx, never a crash)', async () => {
  const path = fc.oneof(
    fc.constantFrom('/api/status', '/api/queue', '/api/queue/flush', '/api/pools/out/servers/s1/drain', '/api/suspensions', '/api/overrides', '/api/route', '/metrics', '/healthz', '/dashboard', '/api/queue/ABC/hold'),
    fc.webPath(),
    fc.string({ maxLength: 60, unit: fc.constantFrom(...'/%?&=[]:#@!$()*+,;abc0123456789'.split('')) }).map((s) => `/${s}`),
  );
  const ask = async (method: string, p: string, body: string, auth: boolean) => {
    const bytes = `${method} ${p} HTTP/1.1\r\nHost: x\r\n${auth ? `Authorization: Bearer ${TOKEN}\r\n` : ''}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
    return raw(bytes);
  };
  for (const r of adminRegressions) assert.match(await raw(r), /^HTTP\/1\.1 4\d\d/);
  await fc.assert(
    fc.asyncProperty(fc.constantFrom('GET', 'POST', 'DELETE', 'PUT'), path, fc.oneof(fc.constant(''), fc.json(), fc.string({ maxLength: 100 })), fc.boolean(), async (method, p, body, auth) => {
      const out = await ask(method, p, body, auth);
      const status = /^HTTP\/1\.1 (\d{3})/.exec(out)?.[1];
      assert.ok(status === undefined || Number(status) < 500, `${method} ${p} ${body.slice(0, 40)} → ${out.slice(0, 200)}`);
    }),
    { numRuns: RUNS },
  );
  assert.equal(lb.proc.exitCode, null, 'still running');
  assert.equal((await fetch(`http://127.0.0.1:${admin}/healthz`)).status, 200);
});

function raw(bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: admin });
    let out = '';
    s.on('data', (c) => (out += c));
    s.on('error', () => resolve(out));
    s.on('close', () => resolve(out));
    s.write(bytes);
    setTimeout(() => s.destroy(), 2000);
  });
}
