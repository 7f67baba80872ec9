// Outbound SMTP connections to pool servers, with nodemailer's SMTPConnection: STARTTLS
// policy, AUTH, HELO name and bind address per pool, and reuse of idle connections within
// the pool's `reuse` limits (messages and seconds), like Postfix's connection cache.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net, { type Socket } from 'node:net';
import { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import type { Pool, Server } from '../balancing/pool.js';
import { pipelineEnvelope } from './pipelining.js';
import { rcptArgs, type MessageParams, type RcptDsn } from '../message/dsn-params.js';

/** Reply text kept, stored, matched and quoted: an upstream's reply is bounded input. */
export const REPLY_MAX = 4096;
/** RFC 5321 allows 512 octets per reply line; past these an upstream is not speaking SMTP. */
const LINE_MAX = 16 * 1024;
const REPLY_LINES_MAX = 100;
/** The EHLO reply lists extensions, one a line: some servers list many (Postfix reads any number). */
const EHLO_LINES_MAX = 1000;

export function cutReply(text: string): string {
  return text.length > REPLY_MAX ? `${text.slice(0, REPLY_MAX)}…` : text;
}

/** A message body: in memory (cut-through, or a body kept in the spool's index), or the spool's file, streamed (never read whole). */
export type Body = Buffer | { file: string; size: number; prefix?: Buffer | null };

export function bodySize(b: Body): number {
  return Buffer.isBuffer(b) ? b.length : b.size;
}

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
  /** Direct-to-MX: the MX host's address it is connected to (another domain may use it only when that address is one of its MX hosts). */
  endpoint?: string;
  /** A cluster concurrency lease this idle connection holds for its destination (given back when it closes). */
  parked?: Parked;
}

/** A cluster concurrency lease kept by an idle connection, so the receiver never sees more connections than the limit. */
export interface Parked {
  lease: string;
  release(): void;
}

/** An idle connection holding a cluster lease closes after this: another node may be waiting for the slot. */
const PARKED_IDLE_MS = 1000;

function unpark(up: Upstream): void {
  const p = up.parked;
  up.parked = undefined;
  p?.release();
}

/** QUIT, and give a parked lease back once the connection is closed (not before: the receiver would count both). */
function quit(up: Upstream): void {
  const p = up.parked;
  up.parked = undefined;
  if (p) {
    let done = false;
    const release = () => {
      if (done) return;
      done = true;
      p.release();
    };
    up.conn.once('end', release);
    // A QUIT that gets no answer: the connection is closed, then the lease goes back.
    setTimeout(() => {
      if (done) return;
      up.conn.close();
      release();
    }, 5000).unref();
  }
  up.conn.quit();
}

export interface SendResult {
  accepted: string[];
  rejected: { rcpt: string; code: number; text: string }[];
  response: string;
}

export class SmtpError extends Error {
  readonly text: string;
  /**
   * The body went out and no reply to the final dot came (timeout, connection lost): the
   * upstream may have taken the message. Deferred, never failed over at once (RFC 1047).
   */
  unknown = false;
  constructor(message: string, readonly code: number | null, readonly stage: string, text: string) {
    super(message);
    this.text = cutReply(text);
  }
}

/**
 * Guard the connection's input before nodemailer parses it: a reply line longer than
 * LINE_MAX or a reply of more than REPLY_LINES_MAX lines ends the connection, so a hostile or
 * broken upstream costs bounded memory and CPU (nodemailer re-splits a multi-line reply on
 * every line, quadratic in its length).
 */
function guard(conn: SMTPConnection): void {
  // nodemailer's socket listeners (plain, and the TLS socket after STARTTLS) all call
  // this._onData: wrapping it guards both, and a chunk that trips the guard is never parsed.
  const c = conn as unknown as { _onData(chunk: Buffer): void; _socket?: Socket };
  const parse = c._onData.bind(conn);
  let lineLen = 0;
  let lines = 0;
  // Replies so far on this connection: the second (after the greeting) answers EHLO, and so
  // may the fourth (EHLO again after STARTTLS's 220); those may be EHLO_LINES_MAX long.
  let replies = 0;
  let head = '';
  let tripped = false;
  const trip = (why: string) => {
    tripped = true;
    c._socket?.destroy(new Error(why));
  };
  c._onData = (chunk: Buffer) => {
    if (tripped) return;
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(10, from);
      const end = nl < 0 ? chunk.length : nl;
      if (head.length < 12) head += chunk.toString('latin1', from, Math.min(end, from + 12 - head.length));
      lineLen += end - from;
      if (lineLen > LINE_MAX) return trip(`upstream reply line longer than ${LINE_MAX} bytes`);
      if (nl < 0) break;
      // A continuation line (as nodemailer reads it: digits then "-") adds to the reply.
      const more = /^\d+-/.test(head);
      lines = more ? lines + 1 : 0;
      const max = replies === 1 || replies === 3 ? EHLO_LINES_MAX : REPLY_LINES_MAX;
      if (lines > max) return trip(`upstream reply longer than ${max} lines`);
      if (!more) replies++;
      lineLen = 0;
      head = '';
      from = nl + 1;
    }
    parse(chunk);
  };
}

/** Where a connection goes when it is not the server's own address: a destination's MX host. */
export interface Target { host: string; port: number; servername: string }

export function openUpstream(pool: Pool, server: Server, helo: string, group = '', maxMessages = Infinity, target?: Target): Promise<Upstream> {
  const cfg = pool.cfg;
  // The name the certificate must carry. An IP address is not a TLS server name (Node warns
  // and SNI may not carry one): then the certificate is checked against the address itself.
  const name = target?.servername ?? server.address.host;
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
      tls: { rejectUnauthorized: cfg.tls === 'verify', ...(net.isIP(name) ? {} : { servername: name }) },
    });
    guard(conn);
    pipelineEnvelope(conn);
    perRecipientDsn(conn);
    const up: Upstream = { conn, server, created: Date.now(), sent: 0, broken: false, group, maxMessages, label: target ? `${server.name}→${target.servername}` : server.name, ...(target ? { endpoint: target.host } : {}) };
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

/** Does the upstream's EHLO reply list this extension? (nodemailer's `_supportedExtensions`.) */
export function offers(up: Upstream, extension: string): boolean {
  return !!(up.conn as unknown as { _supportedExtensions?: string[] })._supportedExtensions?.includes(extension);
}

/** Set per transaction by sendOn: the NOTIFY/ORCPT arguments of one recipient's RCPT TO. */
export interface RcptArgsHook {
  _smtplbRcptArgs?: (rcpt: string) => string;
}

/**
 * nodemailer writes one set of DSN arguments on every RCPT TO; smtplb keeps them per
 * recipient. Its unpipelined RCPT step asks `_getDsnRcptToArgs()` just after queueing the
 * recipient it is about to send (the last of `_recipientQueue`); pipelining.ts asks the hook
 * itself.
 */
function perRecipientDsn(conn: SMTPConnection): void {
  const c = conn as unknown as RcptArgsHook & { _getDsnRcptToArgs(): string; _recipientQueue?: string[] };
  const own = c._getDsnRcptToArgs.bind(conn);
  c._getDsnRcptToArgs = () => {
    const q = c._recipientQueue;
    return c._smtplbRcptArgs && q?.length ? c._smtplbRcptArgs(q[q.length - 1]) : own();
  };
}

/** Turn off Nagle on an SMTPConnection's socket (nodemailer does not expose the option). */
export function noDelay(conn: SMTPConnection): void {
  (conn as unknown as { _socket?: { setNoDelay?(on: boolean): void } })._socket?.setNoDelay?.(true);
}

/**
 * One transaction. Rejects with SmtpError for failures that concern the whole message. Once
 * the body has gone out, the wait for the reply to the final dot is `dataTimeout` (RFC 5321
 * 4.5.3.2.6 suggests 10 minutes), not the command timeout.
 */
export function sendOn(up: Upstream, sender: string, recipients: string[], body: Body, dataTimeout = 600_000, commandTimeout = 60_000, pass: { params?: MessageParams; rcptDsn?: ReadonlyMap<string, RcptDsn> } = {}): Promise<SendResult> {
  return new Promise((resolveSend, rejectSend) => {
    // nodemailer reports a connection lost mid-transaction only as 'end'/'error' events and
    // never calls back: settle on those too, or the delivery would wait forever.
    let settled = false;
    let bodySent = false;
    const source = Buffer.isBuffer(body) ? new BufferBody(body, (up.conn as unknown as { _socket?: Socket })._socket) : fileSource(body.file, body.prefix);
    source.once('end', () => {
      if (settled) return; // drained after a refused envelope, not sent
      bodySent = true;
      (up.conn as unknown as { _socket?: Socket })._socket?.setTimeout(dataTimeout);
    });
    const lost = (e?: Error) => {
      up.broken = true;
      // Replies the upstream sent before it closed (a 421 to RCPT, as Yahoo's TSS04 comes)
      // are the recipients' outcomes, not a connection that failed.
      const answered = bodySent ? null : answeredBeforeClose(up, recipients);
      if (answered) return resolve(answered);
      reject(new SmtpError(e?.message ?? 'connection lost', null, 'CONN', e?.message ?? 'connection to the upstream lost during the transaction'));
    };
    const cleanup = () => {
      up.conn.off('end', lost);
      up.conn.off('error', lost);
      // A reused connection's next commands wait the command timeout again, not data_timeout.
      if (bodySent) (up.conn as unknown as { _socket?: Socket })._socket?.setTimeout(commandTimeout);
    };
    const resolve = (r: SendResult) => {
      if (settled) return;
      settled = true;
      cleanup();
      if (!bodySent) source.destroy();
      resolveSend(r);
    };
    const reject = (e: Error) => {
      if (settled) return;
      settled = true;
      cleanup();
      source.destroy();
      if (e instanceof SmtpError && e.code === null && bodySent) {
        e.unknown = true;
        up.broken = true;
      }
      rejectSend(e);
    };
    up.conn.once('end', lost);
    up.conn.once('error', lost);
    // nodemailer uses only a message's on() and pipe() (BufferBody has both).
    // What the client asked of the mail's later hops (nodemailer adds each only where the hop
    // offers its extension): BODY=8BITMIME, RET and ENVID; NOTIFY and ORCPT per recipient.
    const p = pass.params ?? {};
    const dsnOffered = offers(up, 'DSN');
    (up.conn as unknown as RcptArgsHook)._smtplbRcptArgs = (rcpt: string) => rcptArgs(pass.rcptDsn?.get(rcpt), dsnOffered);
    const envelope = { from: sender, to: recipients, size: bodySize(body), use8BitMime: p.body === '8BITMIME', ...(p.ret || p.envid ? { dsn: { ret: p.ret, envid: p.envid } } : {}) };
    // nodemailer keeps the last transaction's envelope until this one's is set; a close before
    // then must not be read with the previous message's replies (answeredBeforeClose).
    (up.conn as unknown as { _envelope?: unknown })._envelope = undefined;
    up.conn.send(envelope as Parameters<SMTPConnection['send']>[0], source as Readable, (err, info) => {
      if (err) {
        const e = err as Error & { response?: string; responseCode?: number; command?: string; rejectedErrors?: (Error & { recipient: string; response?: string; responseCode?: number })[] };
        if (e.rejectedErrors && e.command === 'RCPT TO') {
          // Every recipient refused: per-recipient news, not a message failure. The
          // transaction is still open upstream, so RSET before the connection is reused.
          const result = {
            accepted: [],
            rejected: e.rejectedErrors.map((r) => ({ rcpt: r.recipient, code: r.responseCode ?? 451, text: cutReply((r.response ?? r.message).trim()) })),
            response: cutReply((e.response ?? '').trim()),
          };
          // 421 closes the connection (RFC 5321 3.8): no RSET to wait for.
          if (result.rejected.some((r) => r.code === 421)) {
            up.broken = true;
            return resolve(result);
          }
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
        rejected: rejectedErrors.map((r) => ({ rcpt: r.recipient, code: r.responseCode ?? 451, text: cutReply((r.response ?? r.message).trim()) })),
        response: cutReply((info.response ?? '').trim()),
      });
    });
  });
}

/**
 * The recipients' outcomes when the upstream closed the connection during the envelope after
 * answering some of it: each answered recipient gets its reply; the others, never answered,
 * are deferred with the reply the server closed on (its 421 when it sent one). Null when it
 * answered no recipient (a close without a reply: the connection failed). Reads nodemailer's
 * envelope record (`_envelope`, filled as RCPT replies arrive, pipelined or not).
 */
function answeredBeforeClose(up: Upstream, recipients: string[]): SendResult | null {
  const env = (up.conn as unknown as { _envelope?: { to?: string[]; rejectedErrors?: { recipient?: string; responseCode?: number; response?: string; message: string }[] } })._envelope;
  if (!env?.to || env.to.length !== recipients.length || env.to.some((r, i) => r !== recipients[i])) return null;
  const replies = (env.rejectedErrors ?? []).filter((r) => r.recipient && typeof r.responseCode === 'number');
  if (!replies.length) return null;
  const rejected = replies.map((r) => ({ rcpt: r.recipient!, code: r.responseCode!, text: cutReply((r.response ?? r.message).trim()) }));
  const closing = rejected.find((r) => r.code === 421) ?? rejected[rejected.length - 1];
  const answered = new Set(rejected.map((r) => r.rcpt));
  for (const rcpt of recipients) {
    if (answered.has(rcpt)) continue;
    rejected.push({ rcpt, code: closing.code === 421 ? 421 : 451, text: closing.code === 421 ? closing.text : `4.4.2 the upstream closed the connection before answering (after: ${closing.text})` });
  }
  return { accepted: [], rejected, response: closing.text };
}

/**
 * An in-memory body, as nodemailer takes a message to pipe into its dot-stuffing stream:
 * handed over whole, at once (a Readable takes several ticks and a promise per chunk to hand
 * over one buffer). The body and the final dot go out in one write when they fit the
 * socket's buffer (16 KiB; a bigger body drains first): the upstream socket is held (corked)
 * until a turn later, as nodemailer writes them separately. 'end' a tick after the hand-over,
 * as a Readable's would be: after nodemailer's callback when it only drains the body of a
 * refused envelope, so that is never taken for a body sent.
 */
class BufferBody extends EventEmitter {
  constructor(
    private body: Buffer,
    private socket: Socket | undefined,
  ) {
    super();
  }

  pipe<T extends NodeJS.WritableStream>(dest: T): T {
    const s = this.socket;
    if (s && !s.destroyed) {
      s.cork();
      setImmediate(() => s.uncork());
    }
    dest.write(this.body);
    dest.end();
    process.nextTick(() => this.emit('end'));
    return dest;
  }

  destroy(): void {}
}

/** The lines added at acceptance, then the spool file, read 64 KB at a time. */
function fileSource(file: string, prefix?: Buffer | null): Readable {
  if (!prefix?.length) return fs.createReadStream(file, { highWaterMark: 64 * 1024 });
  return Readable.from(
    (async function* () {
      yield prefix;
      yield* fs.createReadStream(file, { highWaterMark: 64 * 1024 });
    })(),
  );
}

/** Idle connections per server, handed out again within the pool's reuse limits. */
export class UpstreamCache {
  private idle = new Map<string, { up: Upstream; timer: NodeJS.Timeout }[]>();

  /**
   * An idle connection of this server and group, newest first; `accept` narrows which (the
   * domains of one MX site share a group, but a connection serves a domain only when it goes
   * to one of that domain's MX hosts, as Postfix's connection cache reuses by endpoint).
   */
  take(pool: Pool, server: Server, group = '', accept?: (up: Upstream) => boolean): Upstream | undefined {
    const list = this.idle.get(`${server.key}|${group}`);
    if (!list) return undefined;
    for (let i = list.length - 1; i >= 0; i--) {
      const { up, timer } = list[i];
      const usable = !up.broken && this.fresh(pool, up);
      if (usable && accept && !accept(up)) continue;
      list.splice(i, 1);
      if (!list.length) this.idle.delete(`${server.key}|${group}`);
      clearTimeout(timer);
      if (usable) return up;
      up.conn.close();
      unpark(up);
    }
    return undefined;
  }

  /** The oldest idle connection of this server and group that `which` picks closes (its lease given back). False when there is none. */
  closeOldest(pool: Pool, server: Server, group: string, which: (up: Upstream) => boolean): boolean {
    const key = `${server.key}|${group}`;
    const list = this.idle.get(key);
    const i = list?.findIndex((e) => which(e.up)) ?? -1;
    if (!list || i < 0) return false;
    const [{ up, timer }] = list.splice(i, 1);
    if (!list.length) this.idle.delete(key);
    clearTimeout(timer);
    quit(up);
    return true;
  }

  /** Idle connections holding no cluster lease close (the node is back on the shared limits: only leased ones may stay). */
  dropUnparked(): void {
    for (const [key, list] of this.idle) {
      if (!key.endsWith('|')) {
        for (const e of list.filter((x) => !x.up.parked)) {
          clearTimeout(e.timer);
          e.up.conn.quit();
        }
        const kept = list.filter((x) => x.up.parked);
        if (kept.length) this.idle.set(key, kept);
        else this.idle.delete(key);
      }
    }
  }

  private fresh(pool: Pool, up: Upstream): boolean {
    return up.sent < Math.min(pool.cfg.reuse.messages, up.maxMessages) && Date.now() - up.created < pool.cfg.reuse.seconds;
  }

  give(pool: Pool, up: Upstream): void {
    if (up.broken || !this.fresh(pool, up)) {
      if (!up.broken) quit(up);
      else {
        up.conn.close();
        unpark(up);
      }
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
        // No empty list left behind: a direct-to-MX pool meets many domains.
        if (l && !l.length) this.idle.delete(key);
        quit(up);
      }, Math.max(0, Math.min(up.parked ? Math.min(PARKED_IDLE_MS, pool.cfg.reuse.idle) : pool.cfg.reuse.idle, pool.cfg.reuse.seconds - (Date.now() - up.created)))),
    };
    entry.timer.unref();
    list.push(entry);
    this.idle.set(key, list);
  }

  closeAll(): void {
    for (const list of this.idle.values()) {
      for (const { up, timer } of list) {
        clearTimeout(timer);
        quit(up);
      }
    }
    this.idle.clear();
  }
}
