// Outbound SMTP connections to pool servers, with nodemailer's SMTPConnection: STARTTLS
// policy, AUTH, HELO name and bind address per pool, and reuse of idle connections within
// the pool's `reuse` limits (messages and seconds), like Postfix's connection cache.
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import type { Pool, Server } from '../balancing/pool.js';

export interface Upstream {
  conn: SMTPConnection;
  server: Server;
  created: number;
  sent: number;
  broken: boolean;
  /** Connections carrying one destination's mail (shaping's messages_per_connection) are kept apart. */
  group: string;
  maxMessages: number;
  /** For logs: the server, or source → MX host for direct-to-MX pools. */
  label: string;
}

export interface SendResult {
  accepted: string[];
  rejected: { rcpt: string; code: number; text: string }[];
  response: string;
}

export class SmtpError extends Error {
  constructor(message: string, readonly code: number | null, readonly stage: string, readonly text: string) {
    super(message);
  }
}

/** Where a connection goes when it is not the server's own address: a destination's MX host. */
export interface Target { host: string; port: number; servername: string }

export function openUpstream(pool: Pool, server: Server, helo: string, group = '', maxMessages = Infinity, target?: Target): Promise<Upstream> {
  const cfg = pool.cfg;
  return new Promise((resolve, reject) => {
    const conn = new SMTPConnection({
      host: target?.host ?? server.address.host,
      port: target?.port ?? server.address.port,
      name: helo,
      localAddress: server.source,
      connectionTimeout: cfg.connect_timeout,
      greetingTimeout: cfg.timeout,
      socketTimeout: cfg.timeout,
      ignoreTLS: cfg.tls === 'none',
      requireTLS: cfg.tls === 'require' || cfg.tls === 'verify',
      opportunisticTLS: cfg.tls === 'may',
      tls: { rejectUnauthorized: cfg.tls === 'verify', servername: target?.servername ?? server.address.host },
    });
    const up: Upstream = { conn, server, created: Date.now(), sent: 0, broken: false, group, maxMessages, label: target ? `${server.name}→${target.servername}` : server.name };
    let settled = false;
    const fail = (e: Error & { response?: string; responseCode?: number; command?: string }) => {
      up.broken = true;
      if (settled) return;
      settled = true;
      conn.close();
      reject(new SmtpError(e.message, e.responseCode ?? null, e.command ?? 'CONN', (e.response ?? e.message).trim()));
    };
    conn.on('error', fail);
    // nodemailer ends without an 'error' when the peer closes before its greeting (an
    // overloaded or dying MTA does that); unanswered, this connect would wait forever.
    conn.on('end', () => fail(new Error('connection closed before the greeting')));
    conn.connect((err) => {
      if (err) return fail(err);
      if (!cfg.auth) {
        settled = true;
        return resolve(up);
      }
      conn.login({ user: cfg.auth.user, pass: cfg.auth.pass }, (e) => {
        if (e) return fail(e);
        settled = true;
        resolve(up);
      });
    });
    // nodemailer leaves Nagle's algorithm on; with SMTP's small command/reply turns that
    // costs a delayed-ACK wait (~40 ms) per exchange. The socket exists once connect() ran.
    noDelay(conn);
  });
}

/** Turn off Nagle on an SMTPConnection's socket (nodemailer does not expose the option). */
export function noDelay(conn: SMTPConnection): void {
  (conn as unknown as { _socket?: { setNoDelay?(on: boolean): void } })._socket?.setNoDelay?.(true);
}

/** One transaction. Rejects with SmtpError for failures that concern the whole message. */
export function sendOn(up: Upstream, sender: string, recipients: string[], body: Buffer): Promise<SendResult> {
  return new Promise((resolveSend, rejectSend) => {
    // nodemailer reports a connection lost mid-transaction only as 'end'/'error' events and
    // never calls back: settle on those too, or the delivery would wait forever.
    let settled = false;
    const lost = (e?: Error) => {
      up.broken = true;
      reject(new SmtpError(e?.message ?? 'connection lost', null, 'CONN', e?.message ?? 'connection to the upstream lost during the transaction'));
    };
    const cleanup = () => {
      up.conn.off('end', lost);
      up.conn.off('error', lost);
    };
    const resolve = (r: SendResult) => {
      if (settled) return;
      settled = true;
      cleanup();
      resolveSend(r);
    };
    const reject = (e: Error) => {
      if (settled) return;
      settled = true;
      cleanup();
      rejectSend(e);
    };
    up.conn.once('end', lost);
    up.conn.once('error', lost);
    up.conn.send({ from: sender, to: recipients }, body, (err, info) => {
      if (err) {
        const e = err as Error & { response?: string; responseCode?: number; command?: string; rejectedErrors?: (Error & { recipient: string; response?: string; responseCode?: number })[] };
        if (e.rejectedErrors && e.command === 'RCPT TO') {
          // Every recipient refused: per-recipient news, not a message failure. The
          // transaction is still open upstream, so RSET before the connection is reused.
          const result = {
            accepted: [],
            rejected: e.rejectedErrors.map((r) => ({ rcpt: r.recipient, code: r.responseCode ?? 451, text: (r.response ?? r.message).trim() })),
            response: (e.response ?? '').trim(),
          };
          return up.conn.reset((resetErr) => {
            if (resetErr) up.broken = true;
            resolve(result);
          });
        }
        up.broken = true;
        return reject(new SmtpError(e.message, e.responseCode ?? null, e.command ?? 'CONN', (e.response ?? e.message).trim()));
      }
      up.sent++;
      const rejectedErrors = (info as { rejectedErrors?: (Error & { recipient: string; response?: string; responseCode?: number })[] }).rejectedErrors ?? [];
      resolve({
        accepted: info.accepted.map(String),
        rejected: rejectedErrors.map((r) => ({ rcpt: r.recipient, code: r.responseCode ?? 451, text: (r.response ?? r.message).trim() })),
        response: (info.response ?? '').trim(),
      });
    });
  });
}

/** Idle connections per server, handed out again within the pool's reuse limits. */
export class UpstreamCache {
  private idle = new Map<string, { up: Upstream; timer: NodeJS.Timeout }[]>();

  take(pool: Pool, server: Server, group = ''): Upstream | undefined {
    const list = this.idle.get(`${server.key}|${group}`);
    while (list?.length) {
      const { up, timer } = list.pop()!;
      clearTimeout(timer);
      if (!up.broken && this.fresh(pool, up)) return up;
      up.conn.close();
    }
    return undefined;
  }

  private fresh(pool: Pool, up: Upstream): boolean {
    return up.sent < Math.min(pool.cfg.reuse.messages, up.maxMessages) && Date.now() - up.created < pool.cfg.reuse.seconds;
  }

  give(pool: Pool, up: Upstream): void {
    if (up.broken || !this.fresh(pool, up)) {
      if (!up.broken) up.conn.quit();
      else up.conn.close();
      return;
    }
    const key = `${up.server.key}|${up.group}`;
    const list = this.idle.get(key) ?? [];
    const entry = {
      up,
      timer: setTimeout(() => {
        const l = this.idle.get(key);
        const i = l?.indexOf(entry) ?? -1;
        if (i >= 0) l!.splice(i, 1);
        up.conn.quit();
      }, Math.max(0, pool.cfg.reuse.seconds - (Date.now() - up.created))),
    };
    entry.timer.unref();
    list.push(entry);
    this.idle.set(key, list);
  }

  closeAll(): void {
    for (const list of this.idle.values()) {
      for (const { up, timer } of list) {
        clearTimeout(timer);
        up.conn.quit();
      }
    }
    this.idle.clear();
  }
}
