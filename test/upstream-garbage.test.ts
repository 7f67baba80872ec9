// Upstreams that answer with garbage. No real MTA does this on cue, so the misbehaving
// upstreams here are small TCP servers of the test's own (a fault injector, said so); the
// well-behaved upstream is a real smtp-sink. Whatever the garbage, smtplb treats it as a
// temporary failure of that server: the mail goes to the other one, nothing is lost or
// doubled, and the process keeps serving.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import { sendOne, type SendOptions } from '../src/cli/send.js';
import { queueIdle } from './helpers/admin.js';
import { freePort, onStop, startSink, startSmtplb, stopAll, waitFor } from './helpers/peers.js';

after(stopAll);

type Script = (sock: net.Socket, line: string | null) => void;

/** A server that greets (or not) and answers each line by `script`; stopped by the test. */
async function rogue(greeting: string | Buffer, script: Script): Promise<{ port: number; seen: () => number }> {
  const port = await freePort();
  let seen = 0;
  const socks = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    socks.add(sock);
    seen++;
    sock.on('error', () => {});
    sock.on('close', () => socks.delete(sock));
    sock.write(greeting);
    let buf = '';
    sock.on('data', (c) => {
      buf += c.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).replace(/\r$/, '');
        buf = buf.slice(i + 1);
        script(sock, line);
      }
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  onStop(() => {
    for (const s of socks) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { port, seen: () => seen };
}

const smtpUntil = (stage: 'MAIL' | 'DATA', garbage: string | Buffer): Script => {
  let inData = false;
  return (sock, line) => {
    if (line === null) return;
    if (inData) {
      if (line === '.') sock.write(garbage);
      return;
    }
    const verb = line.slice(0, 4).toUpperCase();
    if (verb === 'EHLO' || verb === 'HELO') sock.write('250-rogue.test\r\n250 PIPELINING\r\n');
    else if (verb === 'MAIL' && stage === 'MAIL') sock.write(garbage);
    else if (verb === 'DATA') {
      inData = true;
      sock.write('354 go on\r\n');
    } else if (verb === 'QUIT') sock.end('221 bye\r\n');
    else sock.write('250 ok\r\n');
  };
};

test('garbage from an upstream (greeting, reply to MAIL, reply to the final dot, a reply code out of range): deferred, delivered once through the other server, the process keeps serving', async () => {
  const good = await startSink();
  const rogues = [
    await rogue(Buffer.from([0x00, 0xff, 0xfe, 0x0d, 0x0a, 0x1b, 0x5b, 0x32, 0x4a]), () => {}),
    await rogue('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n', () => {}),
    await rogue('220 rogue.test ESMTP\r\n', smtpUntil('MAIL', 'hello there, this is not SMTP\r\n')),
    await rogue('220 rogue.test ESMTP\r\n', smtpUntil('MAIL', '999 9.9.9 out of range\r\n')),
    await rogue('220 rogue.test ESMTP\r\n', smtpUntil('DATA', '\x00\x00garbage after the dot\r\n')),
  ];
  const [port, admin] = [await freePort(), await freePort()];
  const servers = rogues.map((r, i) => `      - { name: rogue${i}, address: 127.0.0.1:${r.port} }`).join('\n');
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: test-token-1 }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out:
    balance: roundrobin
    timeout: 3s
    servers:
${servers}
      - { name: good, address: 127.0.0.1:${good.port} }
routes: [ { pool: out } ]
queue: { retry: [1s], max_age: 1h }
`);
  const base: SendOptions = { server: `127.0.0.1:${port}`, from: 'app@sender.test', to: [], headers: [], subject: 'garbage', body: 'hello\n', count: 1, concurrency: 1, starttls: false, tlsOnConnect: false, helo: 'client.test', quiet: true };
  const n = 12;
  for (let i = 0; i < n; i++) {
    const r = await sendOne({ ...base, to: [`r${i}@dest.test`] }, i);
    if (!r.ok) assert.fail(r.error);
  }
  await good.settle(n, 60_000);
  for (const r of rogues) assert.ok(r.seen() > 0, 'every rogue server was tried');
  // Out of the queue and nothing in flight: no second copy can still come.
  await queueIdle(admin);
  const rcpts = good.messages().map((m) => m.match(/^To: (\S+)/m)?.[1]).sort();
  assert.deepEqual(rcpts, Array.from({ length: n }, (_, i) => `r${i}@dest.test`).sort(), 'each message delivered once');
  assert.equal(lb.proc.exitCode, null);
  const st = (await (await fetch(`http://127.0.0.1:${admin}/api/status`, { headers: { authorization: 'Bearer test-token-1' } })).json()) as { last_errors?: { text?: string }[]; queue: { counts: Record<string, number> } };
  assert.equal(st.queue.counts.queued ?? 0, 0, 'queue drained');
  // Still serving: a fresh session is greeted and its message delivered.
  const r = await sendOne({ ...base, to: ['last@dest.test'] }, 99);
  assert.ok(r.ok);
  await waitFor('the last one delivered', () => good.messages().some((m) => /last@dest\.test/.test(m)), 20_000);
});
