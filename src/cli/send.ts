// `smtplb send`: a small test client in the spirit of swaks, so a newcomer needs nothing else
// to try smtplb. One SMTP session per message, `concurrency` sessions at a time.
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import { parseAddress } from '../config/units.js';
import { noDelay } from '../delivery/upstream.js';

export interface SendOptions {
  server: string;
  from: string;
  to: string[];
  headers: string[];
  subject: string;
  body: string;
  count: number;
  concurrency: number;
  starttls: boolean;
  tlsOnConnect: boolean;
  authUser?: string;
  authPassword?: string;
  helo: string;
  quiet: boolean;
}

export function buildMessage(o: SendOptions, n: number): { id: string; raw: string } {
  const id = `<${Date.now().toString(36)}.${randomBytes(6).toString('hex')}.${n}@smtplb.send>`;
  const lines = [
    `From: ${o.from}`,
    `To: ${o.to.join(', ')}`,
    `Subject: ${o.subject}${o.count > 1 ? ` #${n + 1}` : ''}`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: ${id}`,
    ...o.headers,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    o.body,
    '',
  ];
  return { id, raw: lines.join('\r\n') };
}

export type SendResult = { ok: true; id: string; response: string } | { ok: false; id: string; error: string };

export function sendOne(o: SendOptions, n: number): Promise<SendResult> {
  const { host, port } = parseAddress(o.server, '127.0.0.1');
  const msg = buildMessage(o, n);
  return new Promise((resolve) => {
    const conn = new SMTPConnection({
      host,
      port,
      name: o.helo,
      secure: o.tlsOnConnect,
      requireTLS: o.starttls,
      ignoreTLS: !o.starttls && !o.tlsOnConnect,
      tls: { rejectUnauthorized: false },
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 30_000,
    });
    let done = false;
    const finish = (r: SendResult) => {
      if (done) return;
      done = true;
      if (r.ok) conn.quit();
      else conn.close();
      resolve(r);
    };
    const fail = (e: Error & { response?: string }) => finish({ ok: false, id: msg.id, error: (e.response ?? e.message).trim() });
    conn.on('error', fail);
    // A server that closes before its greeting ends the connection without an 'error'.
    conn.on('end', () => fail(new Error('connection closed by the server')));
    conn.connect((err) => {
      if (err) return fail(err);
      const send = () =>
        conn.send({ from: o.from, to: o.to }, msg.raw, (e, info) => {
          if (e) return fail(e);
          if (info.rejected.length) return finish({ ok: false, id: msg.id, error: `rejected: ${info.rejected.join(', ')} ${info.response ?? ''}`.trim() });
          finish({ ok: true, id: msg.id, response: info.response });
        });
      if (o.authUser) conn.login({ user: o.authUser, pass: o.authPassword ?? '' }, (e) => (e ? fail(e) : send()));
      else send();
    });
    noDelay(conn);
  });
}

export async function runSend(o: SendOptions): Promise<number> {
  let next = 0;
  let ok = 0;
  let failed = 0;
  const started = Date.now();
  const worker = async () => {
    while (next < o.count) {
      const n = next++;
      const r = await sendOne(o, n);
      if (r.ok) {
        ok++;
        if (!o.quiet) console.log(`${r.id} -> ${r.response}`);
      } else {
        failed++;
        console.error(`${r.id} !! ${r.error}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(o.concurrency, o.count)) }, worker));
  const secs = (Date.now() - started) / 1000;
  console.log(`${ok} accepted, ${failed} failed in ${secs.toFixed(2)}s${o.count > 1 ? ` (${(ok / Math.max(secs, 0.001)).toFixed(0)} msg/s)` : ''}`);
  return failed ? 1 : 0;
}

export const defaultHelo = os.hostname();
