// The private members of nodemailer's SMTPConnection and smtp-server that smtplb's data path
// touches (src/delivery/pipelining.ts, src/delivery/upstream.ts, src/listeners/smtp-session.ts),
// checked against the installed versions. Both packages are pinned to exact versions in
// package.json; an upgrade that renames or retypes one of these members fails here first, with
// the member's name, instead of breaking delivery silently. Each member is checked on a live
// object in the state where smtplb uses it (a connected client, a session in progress), or,
// for one set only on a path this test does not reach, in the class's own source text.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { after, test } from 'node:test';
import SMTPClient from 'nodemailer/lib/smtp-connection/index.js';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection as ServerSession } from 'smtp-server/lib/smtp-connection.js';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { freePort, stopAll } from './helpers/peers.js';
import { startRecorder } from './helpers/recorder.js';

after(stopAll);

type Kind = 'function' | 'array' | 'boolean' | 'object' | 'socket' | 'set';

function check(where: string, obj: Record<string, unknown>, members: Record<string, Kind>): void {
  for (const [name, kind] of Object.entries(members)) {
    const v = obj[name];
    const ok =
      kind === 'array' ? Array.isArray(v) :
      kind === 'socket' ? v instanceof net.Socket :
      kind === 'set' ? v instanceof Set :
      kind === 'object' ? typeof v === 'object' && v !== null :
      typeof v === kind;
    assert.ok(ok, `${where}.${name} is no longer a ${kind} (it is ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v}): smtplb's data path uses it; see the files named at the top of test/internals.test.ts`);
  }
}

function inSource(where: string, cls: { toString(): string }, members: string[]): void {
  const src = cls.toString();
  for (const m of members) assert.ok(src.includes(`this.${m}`), `${where} no longer sets or reads this.${m}: smtplb's data path uses it`);
}

test('package.json pins nodemailer and smtp-server to the versions this test checks', () => {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
  for (const name of ['nodemailer', 'smtp-server']) {
    const want = pkg.dependencies[name];
    assert.match(want, /^\d+\.\d+\.\d+$/, `${name} must be pinned to an exact version (smtplb uses its private members), not "${want}"`);
    const installed = (JSON.parse(fs.readFileSync(new URL(`../../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as { version: string }).version;
    assert.equal(installed, want, `${name} ${installed} is installed, package.json pins ${want}: run npm ci`);
  }
});

test("nodemailer's SMTPConnection: every private member smtplb uses, on a live connection in mid-send", async () => {
  const rec = await startRecorder({ ehlo: ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'DSN'] });
  const conn = new SMTPClient({ host: '127.0.0.1', port: rec.port, ignoreTLS: true, name: 'internals.test' });
  const c = conn as unknown as Record<string, unknown>;
  check('SMTPConnection.prototype', Object.getPrototypeOf(conn) as Record<string, unknown>, {
    _setEnvelope: 'function',
    _sendCommand: 'function',
    _formatError: 'function',
    _onData: 'function',
    _getDsnRcptToArgs: 'function',
  });
  await new Promise<void>((resolve, reject) => {
    conn.once('error', reject);
    conn.connect(() => resolve());
  });
  check('SMTPConnection (connected)', c, { _socket: 'socket', _supportedExtensions: 'array', _responseActions: 'array', _ehloLines: 'array' });
  assert.ok((c._supportedExtensions as string[]).includes('PIPELINING'), '_supportedExtensions lists the EHLO keywords');
  // The state at the first RCPT, where pipelining.ts and upstream.ts read it.
  let atRcpt: Record<string, unknown> | undefined;
  const send = c._sendCommand as (s: string) => void;
  c._sendCommand = (s: string) => {
    if (!atRcpt && s.startsWith('RCPT')) atRcpt = { _envelope: c._envelope, _recipientQueue: c._recipientQueue, _usingSmtpUtf8: c._usingSmtpUtf8 };
    return send.call(conn, s);
  };
  await new Promise<void>((resolve, reject) => conn.send({ from: 'ä@intern.test', to: ['b@intern.test'], use8BitMime: true }, 'Subject: x\r\n\r\nx\r\n', (err) => (err ? reject(err) : resolve())));
  assert.ok(atRcpt, 'RCPT went out through _sendCommand');
  check('SMTPConnection (at RCPT)', atRcpt, { _envelope: 'object', _recipientQueue: 'array', _usingSmtpUtf8: 'boolean' });
  conn.quit();
  conn.close();
});

test("smtp-server: the members smtp-session.ts overrides or reads, on a live session", async () => {
  check('smtp-server SMTPConnection.prototype', ServerSession.prototype as unknown as Record<string, unknown>, {
    _rejectInvalidParams: 'function',
    _createParser: 'function',
    _setListeners: 'function',
    send: 'function',
    init: 'function',
    connectionReady: 'function',
    handler_RCPT: 'function',
  });
  check('smtp-server SMTPStream.prototype', SMTPStream.prototype as unknown as Record<string, unknown>, { _write: 'function', oncommand: 'function' });
  inSource('smtp-server SMTPConnection', ServerSession, ['_closeTimer', '_server', '_socket', '_parser']);
  inSource('smtp-server SMTPStream', SMTPStream, ['_dataMode']);

  const server = new SMTPServer({ authOptional: true, disabledCommands: ['STARTTLS'], logger: false });
  const s = server as unknown as Record<string, unknown>;
  check('SMTPServer', s, { connections: 'set', options: 'object', _onError: 'function', _onClientConnect: 'function', connect: 'function' });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => sock.once('data', () => r()));
  const [session] = [...(s.connections as Set<Record<string, unknown>>)];
  assert.ok(session, 'the server lists its session in connections');
  check('smtp-server session', session, { _server: 'object', _socket: 'socket', _parser: 'object' });
  check('smtp-server parser', session._parser as Record<string, unknown>, { _dataMode: 'boolean', _write: 'function', oncommand: 'function' });
  sock.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});
