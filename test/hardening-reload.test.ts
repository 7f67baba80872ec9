// Reload is transactional and TLS follows the files: a certificate renewed on disk is served to
// new STARTTLS sessions after SIGHUP while a session opened before keeps going; TLS below 1.2
// is refused; a reload that cannot bind a new listener changes nothing (routes included) and
// says so in smtplb_config_last_reload_success. Real peers: smtp-sink, openssl (certificates).
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { metric, reload, TOKEN } from './helpers/admin.js';
import { after, afterEach, test } from 'node:test';
import { freePort, greeting, onStop, selfSignedCert, startSink, startSmtplb, stopAll, swaks, tmpDir, waitFor } from './helpers/peers.js';

after(stopAll);
afterEach(stopAll);



/** An SMTP conversation over a socket that STARTTLS can swap for a TLS one. */
class Conversation {
  private buf = '';
  private waiters: (() => void)[] = [];
  private ended = false;
  constructor(private sock: net.Socket) {
    this.attach(sock);
  }
  private attach(s: net.Socket): void {
    s.on('data', (c: Buffer) => {
      this.buf += c.toString('latin1');
      this.waiters.splice(0).forEach((w) => w());
    });
    s.on('close', () => {
      this.ended = true;
      this.waiters.splice(0).forEach((w) => w());
    });
    s.on('error', () => {});
  }
  /** One whole reply (multi-line replies up to their last line). */
  reply(): Promise<string> {
    return new Promise((resolve) => {
      const tryRead = () => {
        const m = /^\d{3} [^\n]*\n/m.exec(this.buf);
        if (!m) return this.ended ? resolve(`closed: ${this.buf}`) : this.waiters.push(tryRead);
        const end = m.index + m[0].length;
        const out = this.buf.slice(0, end);
        this.buf = this.buf.slice(end);
        resolve(out.trim());
      };
      tryRead();
    });
  }
  async send(line: string): Promise<string> {
    this.sock.write(`${line}\r\n`);
    return this.reply();
  }
  /** STARTTLS, then the handshake; resolves with the server certificate's SHA-256 fingerprint. */
  async starttls(opts: tls.ConnectionOptions = {}): Promise<string> {
    assert.match(await this.send('STARTTLS'), /^220 /);
    const plain = this.sock;
    plain.removeAllListeners('data');
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false, ...opts });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.sock = secure;
    this.attach(secure);
    return secure.getPeerX509Certificate()!.fingerprint256;
  }
  close(): void {
    this.sock.destroy();
  }
}

async function open(port: number): Promise<Conversation> {
  const sock = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
  const c = new Conversation(sock);
  assert.match(await c.reply(), /^220 /);
  assert.match(await c.send('EHLO client.test'), /^250[ -]/m);
  return c;
}

const fingerprint = (file: string) => new X509Certificate(fs.readFileSync(file)).fingerprint256;

test('SIGHUP reads a renewed certificate: new STARTTLS sessions get it, a session opened before goes on with the old one', async () => {
  const dir = tmpDir();
  const { cert, key } = selfSignedCert(dir, 'old.gw.test');
  const renewed = selfSignedCert(tmpDir(), 'new.gw.test');
  const [port, admin] = [await freePort(), await freePort()];
  const sink = await startSink();
  const lb = await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: sub, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8], tls: { cert: ${cert}, key: ${key} } }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: out } ]
`, { dir });
  const oldPrint = fingerprint(cert);
  const before = await open(port);
  assert.equal(await before.starttls(), oldPrint);
  assert.match(await before.send('EHLO client.test'), /^250[ -]/m);
  assert.match(await before.send('MAIL FROM:<a@client.test>'), /^250 /);

  // The renewal lands on disk (certbot's deploy hook), then SIGHUP.
  fs.copyFileSync(renewed.key, key);
  fs.copyFileSync(renewed.cert, cert);
  lb.reload();
  await waitFor('reload applied', async () => (await metric(admin, 'smtplb_config_reloads_total', { result: 'applied' })) === 1, 5000);
  assert.equal(await metric(admin, 'smtplb_config_last_reload_success'), 1);

  const fresh = await open(port);
  assert.equal(await fresh.starttls(), fingerprint(renewed.cert), 'a new session sees the renewed certificate');
  assert.notEqual(fingerprint(renewed.cert), oldPrint);
  fresh.close();

  // The session opened before the reload finishes its message over its first certificate.
  assert.match(await before.send('RCPT TO:<b@dest.test>'), /^250 /);
  assert.match(await before.send('DATA'), /^354 /);
  assert.match(await before.send('Subject: across a certificate renewal\r\n\r\nbody\r\n.'), /^250 /);
  assert.match(await before.send('QUIT'), /^221 /);
  const [m] = await sink.settle(1);
  assert.match(m, /Subject: across a certificate renewal/);
  assert.equal(lb.proc.exitCode, null);
});

test('listeners refuse TLS below 1.2, on STARTTLS and on implicit TLS', async () => {
  const dir = tmpDir();
  const { cert, key } = selfSignedCert(dir, 'gw.test');
  const [port, smtps] = [await freePort(), await freePort()];
  await startSmtplb(`hostname: gw.test
log: { level: warn }
spool: ./spool
listeners:
  - { name: sub, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8], tls: { cert: ${cert}, key: ${key} } }
  - { name: smtps, listen: 127.0.0.1:${smtps}, mode: smtp, relay_networks: [127.0.0.0/8], tls: { cert: ${cert}, key: ${key}, implicit: true } }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${await freePort()} } ] }
routes: [ { pool: out } ]
`, { dir, env: { NODE_OPTIONS: '--tls-cipher-list=DEFAULT@SECLEVEL=0' } });
  // OpenSSL 3's default security level already rules out TLS 1.0/1.1; a lax cipher policy
  // (here NODE_OPTIONS, as an operator might set for an old client) must not bring them back:
  // the listener's own minimum does not depend on it. The client offers TLS 1.0-1.1 only.
  const old: tls.ConnectionOptions = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' };
  const c = await open(port);
  await assert.rejects(c.starttls(old), /version|handshake|alert|socket/i);
  c.close();
  await assert.rejects(
    new Promise<void>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: smtps, rejectUnauthorized: false, ...old }, () => {
        s.destroy();
        resolve();
      });
      s.on('error', reject);
    }),
    /version|handshake|alert|socket/i,
  );
  const modern = await open(port);
  await modern.starttls({ minVersion: 'TLSv1.2' });
  assert.match(await modern.send('QUIT'), /^221 /);
});

test('a reload that cannot bind its new listener changes nothing (routes included), and says so; the next one applies', async () => {
  const [port, extra, admin] = [await freePort(), await freePort(), await freePort()];
  const [first, second] = [await startSink(), await startSink()];
  const config = (sink: number, more = '') => `hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
${more}pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${sink} } ] }
routes: [ { pool: out } ]
`;
  const lb = await startSmtplb(config(first.port));
  // Someone else holds the port the new listener wants.
  const squatter = net.createServer();
  onStop(() => new Promise<void>((r) => squatter.close(() => r()))); // also when an assertion fails first
  await new Promise<void>((r) => squatter.listen(extra, '127.0.0.1', () => r()));
  fs.writeFileSync(lb.file, config(second.port, `  - { name: extra, listen: 127.0.0.1:${extra}, mode: smtp, relay_networks: [127.0.0.0/8] }\n`));
  lb.reload();
  await waitFor('reload refused', async () => (await metric(admin, 'smtplb_config_reloads_total', { result: 'refused' })) === 1, 5000);
  assert.equal(await metric(admin, 'smtplb_config_last_reload_success'), 0);
  assert.match(lb.output(), /smtplb\.yaml:\d+:\d+: listeners\[1\]\.listen: cannot listen on 127\.0\.0\.1:\d+: the address is already in use/);
  const send = () => swaks(['--server', `127.0.0.1:${port}`, '--from', 'a@client.test', '--to', 'b@dest.test']);
  assert.match((await send()).stdout, /<- {2}250 /);
  await first.settle(1);
  assert.equal(second.count(), 0, 'the refused reload did not switch the routes');

  await new Promise<void>((r) => squatter.close(() => r()));
  lb.reload();
  await waitFor('reload applied', async () => (await metric(admin, 'smtplb_config_reloads_total', { result: 'applied' })) === 1, 5000);
  assert.equal(await metric(admin, 'smtplb_config_last_reload_success'), 1);
  assert.match(await greeting(extra), /^220 /);
  assert.match((await send()).stdout, /<- {2}250 /);
  await second.settle(1);
});

test('a reload that brings the first mode: smtp listener but cannot bind it is refused whole; the next one brings listener and relay', async () => {
  const [tcpPort, port, admin] = [await freePort(), await freePort(), await freePort()];
  const sink = await startSink();
  const base = `hostname: gw.test
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: out } ]
listeners:
  - { name: l4, listen: 127.0.0.1:${tcpPort}, mode: tcp, pool: out }
`;
  const lb = await startSmtplb(base);
  const squatter = net.createServer();
  onStop(() => new Promise<void>((r) => squatter.close(() => r()))); // also when an assertion fails first
  await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', () => r()));
  fs.writeFileSync(lb.file, `${base}  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }\n`);
  lb.reload();
  await waitFor('reload refused', async () => (await metric(admin, 'smtplb_config_reloads_total', { result: 'refused' })) === 1, 5000);
  const status = async () => (await (await fetch(`http://127.0.0.1:${admin}/api/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { queue?: unknown; listeners: unknown[] };
  const refused = await status();
  assert.equal(refused.queue, undefined, 'no relay was left behind');
  assert.equal(refused.listeners.length, 1);

  await new Promise<void>((r) => squatter.close(() => r()));
  lb.reload();
  await waitFor('reload applied', async () => (await metric(admin, 'smtplb_config_reloads_total', { result: 'applied' })) === 1, 5000);
  assert.ok((await status()).queue, 'the relay came with the listener');
  const r = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'a@client.test', '--to', 'b@dest.test']);
  assert.match(r.stdout, /<- {2}250 2\.0\.0 Ok: queued as/);
  await sink.settle(1);
  assert.equal(lb.proc.exitCode, null);
});

test('a reload that changes hostname: new sessions are greeted with it and their Received lines carry it', async () => {
  const sink = await startSink();
  const [port, admin] = [await freePort(), await freePort()];
  const config = (name: string) => `hostname: ${name}
log: { level: warn }
spool: ./spool
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
listeners:
  - { name: relay, listen: 127.0.0.1:${port}, mode: smtp, relay_networks: [127.0.0.0/8] }
pools:
  out: { servers: [ { name: s1, address: 127.0.0.1:${sink.port} } ] }
routes: [ { pool: out } ]
`;
  const lb = await startSmtplb(config('old-name.test'));
  assert.match(await greeting(port), /^220 old-name\.test /);
  fs.writeFileSync(lb.file, config('new-name.test'));
  assert.equal(await reload(lb, admin), 'applied');
  assert.match(await greeting(port), /^220 new-name\.test /);
  const sent = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'app@client.test', '--to', 'x@dest.test']);
  assert.equal(sent.code, 0, sent.stdout);
  const [m] = await sink.settle(1);
  assert.match(m, /by new-name\.test \(smtplb\)/);
});
