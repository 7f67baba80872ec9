// An upstream written for the tests: it records every command line and the raw bytes of every
// DATA phase (which smtp-sink does not keep), lists the EHLO keywords it is given, and answers
// RCPT with the reply `refuse` gives for an address (250 otherwise).
import assert from 'node:assert/strict';
import net from 'node:net';
import { freePort, onStop, session } from './peers.js';

export interface Recorder { port: number; messages: Buffer[]; commands: string[] }

/** An upstream that records the raw bytes of every DATA phase, up to its final CRLF.CRLF. */
export async function startRecorder(opts: { ehlo?: string[]; refuse?: (rcpt: string) => string | undefined; dataDelay?: number } = {}): Promise<Recorder> {
  const messages: Buffer[] = [];
  const commands: string[] = [];
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    let inData = false;
    let accepted = 0;
    sock.write('220 rec.test ESMTP\r\n');
    sock.on('error', () => {});
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end < 0) return;
          messages.push(buf.subarray(0, end + 2));
          buf = buf.subarray(end + 5);
          inData = false;
          if (opts.dataDelay) setTimeout(() => sock.write('250 2.0.0 recorded\r\n'), opts.dataDelay);
          else sock.write('250 2.0.0 recorded\r\n');
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) return;
        const raw = buf.subarray(0, nl).toString('latin1');
        commands.push(raw);
        const line = raw.toUpperCase();
        buf = buf.subarray(nl + 2);
        if (line.startsWith('EHLO')) sock.write(['rec.test', ...(opts.ehlo ?? ['8BITMIME'])].map((l, i, all) => `250${i === all.length - 1 ? ' ' : '-'}${l}\r\n`).join(''));
        else if (line.startsWith('DATA') && accepted === 0) sock.write('554 5.5.1 no valid recipients\r\n');
        else if (line.startsWith('DATA')) {
          inData = true;
          accepted = 0;
          sock.write('354 go on\r\n');
        } else if (line.startsWith('QUIT')) sock.end('221 bye\r\n');
        else if (line.startsWith('RCPT') && opts.refuse?.(/<([^>]*)>/.exec(raw)?.[1] ?? '')) sock.write(`${opts.refuse(/<([^>]*)>/.exec(raw)?.[1] ?? '')}\r\n`);
        else if (line.startsWith('RCPT')) {
          accepted++;
          sock.write('250 ok\r\n');
        } else if (line.startsWith('MAIL') || line.startsWith('RSET')) {
          accepted = 0;
          sock.write('250 ok\r\n');
        }
        else sock.write('250 ok\r\n');
      }
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  onStop(() => new Promise<void>((r) => server.close(() => r())));
  return { port, messages, commands };
}

/**
 * smtplb's config for a relay in front of one upstream: each listener given as its YAML flow
 * mapping (name, port and options), relaying for loopback clients; `extra` is added at the top.
 */
export function relayConfig(upstream: number, listeners: string[], extra = ''): string {
  return `hostname: gw.test
log: { level: warn }
spool: ./spool
${extra}listeners:
${listeners.map((l) => `  - { ${l}, mode: smtp, relay_networks: [127.0.0.0/8] }`).join('\n')}
pools:
  out: { servers: [ { name: rec, address: 127.0.0.1:${upstream} } ] }
routes: [ { pool: out } ]
`;
}

/**
 * One transaction over a raw session: EHLO, `mail` and each of `rcpts` as given (each must get
 * 250), then `data` as it is (it ends with the client's own final dot). Returns DATA's reply.
 */
export async function sendData(port: number, mail: string, rcpts: string[], data: string | Buffer): Promise<string> {
  const s = session(port);
  assert.match(await s.reply(), /^220/);
  assert.match(await s.send('EHLO client.test'), /^250/);
  assert.match(await s.send(mail), /^250/, mail);
  for (const r of rcpts) assert.match(await s.send(r), /^250/, r);
  assert.match(await s.send('DATA'), /^354/);
  s.raw(data);
  const reply = await s.reply();
  await s.send('QUIT');
  s.close();
  return reply;
}
