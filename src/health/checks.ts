// Active health probes. `tcp`: the port accepts a connection. `smtp`: the server greets with
// 220 (multi-line greetings included), answers EHLO with 250 and optionally completes a
// STARTTLS handshake; then QUIT. The SMTP dialogue is nodemailer's SMTPConnection, the same
// client the relay delivers with, so a check exercises what real traffic will.
import net from 'node:net';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import type { HostPort } from '../config/units.js';
import { encodeProxy } from '../protocol/proxy-protocol.js';

export interface CheckOptions {
  timeout: number;
  helo: string;
  starttls: boolean;
  source?: string;
  /** Send a PROXY header first, as live traffic to this pool does (HAProxy's check-send-proxy). */
  proxy?: 'v1' | 'v2';
}

export type CheckResult = { ok: true } | { ok: false; error: string };

export function tcpCheck(addr: HostPort, opts: CheckOptions): Promise<CheckResult> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: addr.host, port: addr.port, localAddress: opts.source });
    sock.on('connect', () => {
      if (opts.proxy) sock.write(encodeProxy(opts.proxy, { family: 4, source: sock.localAddress!, sourcePort: sock.localPort!, dest: sock.remoteAddress!, destPort: sock.remotePort! }));
    });
    const done = (r: CheckResult) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ ok: false, error: `no connection within ${opts.timeout}ms` }), opts.timeout);
    sock.once('connect', () => done({ ok: true }));
    sock.once('error', (e: NodeJS.ErrnoException) => done({ ok: false, error: e.code ?? e.message }));
  });
}

/** A connected socket that has already sent the PROXY header, describing the check itself. */
function proxiedSocket(addr: HostPort, opts: CheckOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: addr.host, port: addr.port, localAddress: opts.source });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no connection within ${opts.timeout}ms`));
    }, opts.timeout);
    sock.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(e.code ?? e.message));
    });
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      const family = net.isIPv6(sock.localAddress ?? '') ? 6 : 4;
      sock.write(encodeProxy(opts.proxy!, { family, source: sock.localAddress!, sourcePort: sock.localPort!, dest: sock.remoteAddress!, destPort: sock.remotePort! }));
      resolve(sock);
    });
  });
}

export async function smtpCheck(addr: HostPort, opts: CheckOptions): Promise<CheckResult> {
  let connection: net.Socket | undefined;
  if (opts.proxy) {
    try {
      connection = await proxiedSocket(addr, opts);
    } catch (e) {
      return { ok: false, error: (e as Error).message };
    }
  }
  return new Promise((resolve) => {
    const conn = new SMTPConnection({
      connection,
      host: addr.host,
      port: addr.port,
      name: opts.helo,
      localAddress: opts.source,
      connectionTimeout: opts.timeout,
      greetingTimeout: opts.timeout,
      socketTimeout: opts.timeout,
      ignoreTLS: !opts.starttls,
      requireTLS: opts.starttls,
      tls: { rejectUnauthorized: false },
    });
    let settled = false;
    // The whole dialogue must fit in the timeout, not each step of it.
    const timer = setTimeout(() => finish({ ok: false, error: `no complete SMTP answer within ${opts.timeout}ms` }), opts.timeout);
    const finish = (r: CheckResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (r.ok) conn.quit();
      else conn.close();
      resolve(r);
    };
    conn.on('error', (e: Error & { response?: string; code?: string }) => finish({ ok: false, error: oneLine(e.response ?? e.message) }));
    conn.connect((err) => finish(err ? { ok: false, error: oneLine(err.response ?? err.message) } : { ok: true }));
  });
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim().slice(0, 200);
}

export function runCheck(kind: 'tcp' | 'smtp', addr: HostPort, opts: CheckOptions): Promise<CheckResult> {
  return kind === 'tcp' ? tcpCheck(addr, opts) : smtpCheck(addr, opts);
}
