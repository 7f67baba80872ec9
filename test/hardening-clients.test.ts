// Per-client limits count an IPv6 /64 as one client: a client that rotates through the
// addresses of its /64 meets the same connection limit and the same AUTH lockout. The client
// addresses come in PROXY v1 headers from a trusted load balancer (127.0.0.1), as they would
// from HAProxy in front of smtplb; TLS and AUTH are real (STARTTLS, AUTH PLAIN).
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, afterEach, test } from 'node:test';
import { freePort, selfSignedCert, startSmtplb, stopAll, tmpDir } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);

/** A connection that says it comes (through PROXY v1) from `client`, with an SMTP reply reader that survives STARTTLS. */
async function from(port: number, client: string) {
  let sock: net.Socket = net.connect({ host: '127.0.0.1', port });
  let buf = '';
  let ended = false;
  const waiters: (() => void)[] = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  const attach = (s: net.Socket) => {
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      wake();
    });
    s.on('close', () => {
      ended = true;
      wake();
    });
    s.on('error', () => {});
  };
  attach(sock);
  const reply = () =>
    new Promise<string>((resolve) => {
      const read = () => {
        const m = /^\d{3} [^\n]*\n/m.exec(buf);
        if (!m) return ended ? resolve(`closed: ${buf}`) : waiters.push(read);
        const out = buf.slice(0, m.index + m[0].length);
        buf = buf.slice(m.index + m[0].length);
        resolve(out.trim());
      };
      read();
    });
  const send = (line: string) => {
    sock.write(`${line}\r\n`);
    return reply();
  };
  sock.write(`PROXY TCP6 ${client} ::1 40000 25\r\n`);
  return {
    greeting: reply(),
    send,
    async starttls(): Promise<void> {
      assert.match(await send('EHLO client.test'), /^250 /m);
      assert.match(await send('STARTTLS'), /^220 /);
      sock.removeAllListeners('data');
      const secure = tls.connect({ socket: sock, rejectUnauthorized: false });
      await new Promise<void>((resolve, reject) => {
        secure.once('secureConnect', () => resolve());
        secure.once('error', reject);
      });
      sock = secure;
      attach(secure);
      assert.match(await send('EHLO client.test'), /^250 /m);
    },
    close: () => sock.destroy(),
  };
}

const plain = (user: string, password: string) => Buffer.from(`\0${user}\0${password}`).toString('base64');

test('an IPv6 /64 is one client: its connection limit and AUTH lockout hold whichever of its addresses it uses', async () => {
  const dir = tmpDir();
  const { cert, key } = selfSignedCert(dir, 'gw.test');
  const port = await freePort();
  await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
users: [ { name: app, password: "$scrypt$placeholder" } ]
listeners:
  - { name: sub, listen: 127.0.0.1:${port}, mode: smtp, accept_proxy: [127.0.0.1/32], max_connections_per_ip: 2, max_auth_failures: 2,
      tls: { cert: ${cert}, key: ${key} } }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${await freePort()} } ] }
routes: [ { pool: out } ]
`, { dir });
  // Connections: two from the /64 are let in, a third from a new address of the same /64 is not.
  const a = await from(port, '2001:db8:1:2::a');
  const b = await from(port, '2001:db8:1:2:ffff::b');
  assert.match(await a.greeting, /^220 /);
  assert.match(await b.greeting, /^220 /);
  const c = await from(port, '2001:db8:1:2::c');
  assert.match(await c.greeting, /^421 4\.7\.0 gw\.test Too many connections from your address/);
  const neighbour = await from(port, '2001:db8:1:3::1');
  assert.match(await neighbour.greeting, /^220 /, 'the next /64 is another client');
  for (const s of [a, b, c, neighbour]) s.close();
  await new Promise((r) => setTimeout(r, 200));

  // AUTH failures add up over the /64: two wrong passwords from two addresses lock the whole /64 out.
  const first = await from(port, '2001:db8:1:2::1');
  assert.match(await first.greeting, /^220 /);
  await first.starttls();
  assert.match(await first.send(`AUTH PLAIN ${plain('app', 'wrong-1')}`), /^535 5\.7\.8 /);
  first.close();
  const second = await from(port, '2001:db8:1:2::2');
  assert.match(await second.greeting, /^220 /);
  await second.starttls();
  assert.match(await second.send(`AUTH PLAIN ${plain('app', 'wrong-2')}`), /^421 4\.7\.0 .*Too many authentication failures/);
  second.close();
  const third = await from(port, '2001:db8:1:2::3');
  assert.match(await third.greeting, /^421 4\.7\.0 gw\.test Too many authentication failures/);
  third.close();
  const other = await from(port, '2001:db8:1:3::1');
  assert.match(await other.greeting, /^220 /, 'another /64 is not locked out');
  other.close();
});
