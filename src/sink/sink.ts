// `smtplb sink`: a test MTA that accepts and counts mail, and misbehaves on request (per
// recipient replies, provider throttling texts, slow or missing answers to the final dot,
// dropped connections, huge replies). Operators point load tests at it; our tests use it
// where Postfix's smtp-sink cannot act the part.
//
// Why the SMTP responder is hand-written and not smtp-server (which the product uses
// inbound): a sink has to say exactly what it is told to, and smtp-server rewrites replies
// (it prepends its own enhanced status code to every error text, so "550 5.1.1 User unknown"
// goes out as "550 5.0.0 5.1.1 User unknown", and it replaces line breaks, so a rule cannot
// send a real multi-line 4xx such as Gmail's or a 1,000-line one), it offers no way to close
// the connection after N bytes of the body or to leave the final dot unanswered, and its
// per-message overhead (a stream per DATA, address parsing, logging hooks) is more than this
// needs to take 2,000+ messages a second on two cores. The protocol a sink must speak is
// small: EHLO/HELO, MAIL, RCPT, DATA (dot-terminated, counted not stored), RSET, NOOP, QUIT,
// with PIPELINING, SIZE, 8BITMIME, SMTPUTF8 and ENHANCEDSTATUSCODES advertised. No TLS, no
// AUTH, nothing is written to disk.
import http from 'node:http';
import net from 'node:net';
import type { HostPort } from '../config/units.js';
import { DEFAULT_SETTINGS, type Reply, type SinkRule, type SinkSettings } from './rules.js';

export interface SinkOptions extends Partial<Omit<SinkSettings, 'listen' | 'stats'>> {
  /** SMTP address; port 0 picks a free port. Default 127.0.0.1:0. */
  listen?: HostPort;
  /** HTTP stats endpoint (`GET /stats`, `POST /reset`); none when absent. */
  stats?: HostPort | null;
  /** Where `verbose` lines go; stderr by default. */
  log?: (line: string) => void;
}

export interface SinkStats {
  /** SMTP connections accepted since start / reset. */
  connections: number;
  active_connections: number;
  /** Messages taken: final dot answered 2xx, plus those dropped by `close: after-data`. */
  messages: number;
  /** Messages whose final dot got a 4xx / 5xx. */
  messages_refused: number;
  /** Copies received: one per accepted recipient of every taken message. */
  recipients_total: number;
  /** Copies per recipient address (lower-cased), for exactly-once checks. */
  recipients: Record<string, number>;
  /** Copies to addresses past `max_tracked_recipients` (counted in recipients_total only). */
  recipients_untracked: number;
  max_tracked_recipients: number;
  /** Replies to RCPT and to the final dot, by code. */
  replies: Record<string, number>;
  rcpt_replies: Record<string, number>;
  data_replies: Record<string, number>;
  /** Connections the sink dropped on purpose, by `close:` value. */
  closed: Record<'after-rcpt' | 'mid-data' | 'after-data', number>;
  /** Message bytes received (taken or refused). */
  bytes: number;
  /** When counting started (start or last reset). */
  since: string;
}

export interface RunningSink {
  host: string;
  port: number;
  statsPort: number | null;
  stats(opts?: { recipients?: boolean }): SinkStats;
  reset(): void;
  close(): Promise<void>;
}

const EMPTY = Buffer.alloc(0);
const TERM = Buffer.from('\r\n.\r\n');
const CRLF = Buffer.from('\r\n');
const MAX_LINE = 64 * 1024;

class Counters {
  connections = 0;
  messages = 0;
  messagesRefused = 0;
  recipientsTotal = 0;
  recipientsUntracked = 0;
  recipients = new Map<string, number>();
  rcptReplies = new Map<number, number>();
  dataReplies = new Map<number, number>();
  closed = { 'after-rcpt': 0, 'mid-data': 0, 'after-data': 0 };
  bytes = 0;
  since = new Date();
}

function bump(m: Map<number, number>, code: number): void {
  m.set(code, (m.get(code) ?? 0) + 1);
}

function hasDataAction(r: SinkRule): boolean {
  return r.dataReply !== undefined || r.dataDelayMs !== undefined || r.close === 'mid-data' || r.close === 'after-data' || r.longReply !== undefined || r.multilineReply !== undefined;
}

function formatReply(r: Reply, ip: string): string {
  const n = r.lines.length;
  let s = '';
  for (let i = 0; i < n; i++) {
    let line = r.lines[i];
    if (line.includes('{ip}')) line = line.replaceAll('{ip}', ip);
    s += `${r.code}${i < n - 1 ? '-' : ' '}${line}\r\n`;
  }
  return s;
}

interface Rcpt { address: string; rule: number }

class Session {
  private buf: Buffer = EMPTY;
  private state: 'greeting' | 'cmd' | 'data' | 'wait' | 'closed' = 'greeting';
  private out = '';
  private helo = false;
  private refuse = false;
  private mail: string | null = null;
  private rcpts: Rcpt[] = [];
  private dataRule: SinkRule | undefined;
  private dataBytes = 0;
  private oversize = false;
  private tail: Buffer = CRLF;
  private timer: NodeJS.Timeout | null = null;
  private draining = false;
  private ipCache: string | null = null;
  private readonly id: number;

  /** The client's IP, for `{ip}` in replies; looked up only when needed (getpeername costs). */
  private get ip(): string {
    return (this.ipCache ??= (this.socket.remoteAddress ?? '').replace(/^::ffff:/, ''));
  }

  constructor(private readonly sink: Sink, private readonly socket: net.Socket, id: number) {
    this.id = id;
    socket.setNoDelay(true);
    socket.setTimeout(sink.settings.timeoutMs);
    socket.on('data', (c: Buffer) => this.onData(c));
    socket.on('timeout', () => {
      if (this.state === 'wait' || this.state === 'closed') return;
      this.reply(`421 4.4.2 ${sink.settings.hostname} Error: timeout exceeded\r\n`);
      this.end();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.state = 'closed';
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      sink.sessionClosed(this);
      if (sink.verbose) sink.log(`[${this.id}] closed`);
    });
    if (sink.verbose) sink.log(`[${this.id}] connect from ${this.ip}:${socket.remotePort}`);
    const delay = sink.settings.greetingDelayMs;
    if (delay > 0) this.timer = setTimeout(() => this.greet(), delay);
    else this.greet();
  }

  destroy(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.state = 'closed';
    this.socket.destroy();
  }

  private greet(): void {
    this.timer = null;
    const g = this.sink.settings.greeting;
    if (!g) {
      this.reply(`220 ${this.sink.settings.hostname} ESMTP smtplb sink\r\n`);
    } else {
      this.reply(formatReply(g, this.ip));
      if (g.code >= 400 && g.code < 500) return this.end();
      // RFC 5321 3.1: after a 554 greeting the server waits for QUIT and answers 503 to the rest.
      if (g.code >= 500) this.refuse = true;
    }
    this.state = 'cmd';
    this.pump();
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    if (this.state === 'cmd' || this.state === 'data') this.pump();
  }

  private reply(text: string): void {
    this.out += text;
    if (this.sink.verbose) this.sink.log(`[${this.id}] > ${text.length > 300 ? `${text.slice(0, 300).trimEnd()}... (${text.length} bytes)` : text.trimEnd()}`);
  }

  private flush(): void {
    if (!this.out || this.socket.destroyed) return;
    const ok = this.socket.write(this.out);
    this.out = '';
    if (!ok && !this.draining) {
      // The client does not read its replies (1 MB ones, say): stop reading until it does.
      this.draining = true;
      this.socket.pause();
      this.socket.once('drain', () => {
        this.draining = false;
        if (this.state !== 'wait') this.socket.resume();
      });
    }
  }

  /** Send what is pending and close our side; the socket goes once the client closes too. */
  private end(): void {
    this.state = 'closed';
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const out = this.out;
    this.out = '';
    this.socket.end(out);
    this.socket.once('finish', () => setTimeout(() => this.socket.destroy(), 1000).unref());
  }

  private drop(reason: 'after-rcpt' | 'mid-data' | 'after-data'): void {
    this.sink.counters.closed[reason]++;
    if (this.sink.verbose) this.sink.log(`[${this.id}] closing the connection (${reason})`);
    this.state = 'closed';
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // Replies already due (pipelined commands before this one) still go out, then the socket
    // is closed with whatever the client is still sending unread (the kernel may answer RST).
    const out = this.out;
    this.out = '';
    this.socket.end(out, () => this.socket.destroy());
  }

  private pump(): void {
    while (this.state === 'cmd' || this.state === 'data') {
      if (this.state === 'data') {
        if (!this.buf.length) break;
        this.consumeData();
        continue;
      }
      const i = this.buf.indexOf(10);
      if (i < 0) {
        if (this.buf.length > MAX_LINE) {
          this.reply('500 5.5.2 Error: line too long\r\n');
          this.end();
        }
        break;
      }
      const line = this.buf.toString('utf8', 0, i > 0 && this.buf[i - 1] === 13 ? i - 1 : i);
      this.buf = i + 1 === this.buf.length ? EMPTY : this.buf.subarray(i + 1);
      this.command(line);
    }
    this.flush();
  }

  private consumeData(): void {
    const buf = this.buf;
    let end = -1;
    const joint = Buffer.concat([this.tail, buf.subarray(0, 4)]);
    const j = joint.indexOf(TERM);
    if (j >= 0 && j < this.tail.length) end = j + TERM.length - this.tail.length;
    else {
      const k = buf.indexOf(TERM);
      if (k >= 0) end = k + TERM.length;
    }
    const rule = this.dataRule;
    if (end < 0) {
      this.dataBytes += buf.length;
      this.tail = buf.length >= 4 ? Buffer.from(buf.subarray(buf.length - 4)) : Buffer.concat([this.tail, buf]).subarray(-4);
      this.buf = EMPTY;
      if (this.dataBytes > this.sink.settings.size) this.oversize = true;
      if (rule?.close === 'mid-data' && this.dataBytes >= (rule.closeAfterBytes ?? 1)) this.drop('mid-data');
      return;
    }
    this.dataBytes += end - 3; // the body ends with its last CRLF; ".\r\n" is not part of it
    this.buf = end === buf.length ? EMPTY : buf.subarray(end);
    if (this.dataBytes > this.sink.settings.size) this.oversize = true;
    if (rule?.close === 'mid-data') return this.drop('mid-data');
    this.endOfData();
  }

  private endOfData(): void {
    const c = this.sink.counters;
    c.bytes += this.dataBytes;
    const rule = this.dataRule;
    if (this.sink.verbose) this.sink.log(`[${this.id}] < (message of ${this.dataBytes} bytes for ${this.rcpts.length} recipients)`);
    let text: string;
    let code: number;
    if (this.oversize) {
      code = 552;
      text = '552 5.3.4 Error: message file too big\r\n';
    } else if (rule?.longReply !== undefined) {
      const base = rule.dataReply ?? { code: 451, lines: ['4.3.0 long reply'] };
      code = base.code;
      let line = `${base.code} ${base.lines[0]} `;
      line = line.length >= rule.longReply ? line.slice(0, rule.longReply) : line + 'x'.repeat(rule.longReply - line.length);
      text = `${line}\r\n`;
    } else if (rule?.multilineReply !== undefined) {
      const base = rule.dataReply ?? { code: 451, lines: ['4.3.0 multi-line reply'] };
      code = base.code;
      const n = rule.multilineReply;
      const parts: string[] = [];
      for (let i = 1; i <= n; i++) parts.push(`${base.code}${i < n ? '-' : ' '}${base.lines[0]} (line ${i} of ${n})\r\n`);
      text = parts.join('');
    } else if (rule?.dataReply) {
      code = rule.dataReply.code;
      text = formatReply(rule.dataReply, this.ip);
    } else {
      code = 250;
      text = `250 2.0.0 Ok: queued as ${this.sink.queueId()}\r\n`;
    }
    const finish = () => {
      this.timer = null;
      if (this.state === 'closed') return;
      if (rule?.close === 'after-data' && !this.oversize) {
        this.countTaken();
        return this.drop('after-data');
      }
      if (code >= 200 && code < 300) this.countTaken();
      else c.messagesRefused++;
      bump(c.dataReplies, code);
      this.reply(text);
      this.resetTx();
      // 421 means "closing the transmission channel" (RFC 5321 4.2.2): Gmail's and Yahoo's do.
      if (code === 421) return this.end();
      this.state = 'cmd';
    };
    const delay = rule?.dataDelayMs ?? 0;
    if (delay > 0) {
      this.state = 'wait';
      this.flush();
      this.socket.pause();
      this.timer = setTimeout(() => {
        finish();
        if (this.state !== 'cmd') return;
        if (!this.draining) this.socket.resume();
        this.pump();
      }, delay);
      return;
    }
    finish();
  }

  private countTaken(): void {
    const c = this.sink.counters;
    c.messages++;
    const cap = this.sink.settings.maxTrackedRecipients;
    for (const r of this.rcpts) {
      c.recipientsTotal++;
      const n = c.recipients.get(r.address);
      if (n !== undefined) c.recipients.set(r.address, n + 1);
      else if (c.recipients.size < cap) c.recipients.set(r.address, 1);
      else c.recipientsUntracked++;
    }
  }

  private resetTx(): void {
    this.mail = null;
    this.rcpts = [];
    this.dataRule = undefined;
    this.dataBytes = 0;
    this.oversize = false;
  }

  private command(line: string): void {
    const sink = this.sink;
    if (sink.verbose) sink.log(`[${this.id}] < ${line.length > 300 ? `${line.slice(0, 300)}...` : line}`);
    const sp = line.indexOf(' ');
    const verb = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp < 0 ? '' : line.slice(sp + 1);
    if (this.refuse && verb !== 'QUIT') return this.reply('503 5.5.0 Error: no SMTP service here\r\n');
    switch (verb) {
      case 'EHLO':
        this.helo = true;
        this.resetTx();
        return this.reply(sink.ehlo);
      case 'HELO':
        this.helo = true;
        this.resetTx();
        return this.reply(`250 ${sink.settings.hostname}\r\n`);
      case 'MAIL': {
        if (!this.helo) return this.reply('503 5.5.1 Error: send HELO/EHLO first\r\n');
        if (this.mail !== null) return this.reply('503 5.5.1 Error: nested MAIL command\r\n');
        const m = /^FROM:\s*<([^>]*)>(.*)$/i.exec(arg);
        if (!m) return this.reply('501 5.5.4 Syntax: MAIL FROM:<address>\r\n');
        const size = /(?:^|\s)SIZE=(\d+)/i.exec(m[2]);
        if (size && Number(size[1]) > sink.settings.size) return this.reply('552 5.3.4 Message size exceeds fixed limit\r\n');
        this.mail = m[1];
        return this.reply('250 2.1.0 Ok\r\n');
      }
      case 'RCPT': {
        if (this.mail === null) return this.reply('503 5.5.1 Error: need MAIL command\r\n');
        const m = /^TO:\s*<([^>]*)>/i.exec(arg);
        if (!m) return this.reply('501 5.5.4 Syntax: RCPT TO:<address>\r\n');
        const address = m[1].toLowerCase();
        const at = address.lastIndexOf('@');
        if (at <= 0 || at === address.length - 1) return this.reply('501 5.1.3 Bad recipient address syntax\r\n');
        if (this.rcpts.length >= sink.settings.maxRecipients) {
          bump(sink.counters.rcptReplies, 452);
          return this.reply('452 4.5.3 Error: too many recipients\r\n');
        }
        const index = sink.match(address, at);
        const rule = index >= 0 ? sink.rules[index] : undefined;
        if (rule?.close === 'after-rcpt') return this.drop('after-rcpt');
        const code = rule?.reply ? rule.reply.code : 250;
        bump(sink.counters.rcptReplies, code);
        if (code >= 200 && code < 300) this.rcpts.push({ address, rule: index });
        this.reply(rule?.reply ? formatReply(rule.reply, this.ip) : '250 2.1.5 Ok\r\n');
        if (code === 421) this.end();
        return;
      }
      case 'DATA': {
        if (arg) return this.reply('501 5.5.4 Syntax: DATA\r\n');
        if (this.mail === null) return this.reply('503 5.5.1 Error: need RCPT command\r\n');
        if (this.rcpts.length === 0) return this.reply('554 5.5.1 Error: no valid recipients\r\n');
        // First match wins: of the accepted recipients' rules, the earliest one that says
        // something about the end of DATA decides it for the message.
        let best = -1;
        for (const r of this.rcpts) if (r.rule >= 0 && (best < 0 || r.rule < best) && hasDataAction(sink.rules[r.rule])) best = r.rule;
        this.dataRule = best >= 0 ? sink.rules[best] : undefined;
        this.dataBytes = 0;
        this.oversize = false;
        this.tail = CRLF;
        this.state = 'data';
        return this.reply('354 End data with <CR><LF>.<CR><LF>\r\n');
      }
      case 'RSET':
        this.resetTx();
        return this.reply('250 2.0.0 Ok\r\n');
      case 'NOOP':
        return this.reply('250 2.0.0 Ok\r\n');
      case 'QUIT':
        this.reply('221 2.0.0 Bye\r\n');
        return this.end();
      case 'VRFY':
        return this.reply('252 2.0.0 Send some mail, I will try my best\r\n');
      case 'HELP':
        return this.reply('214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY\r\n');
      case 'STARTTLS':
      case 'AUTH':
      case 'BDAT':
      case 'ETRN':
        return this.reply('502 5.5.1 Error: command not implemented\r\n');
      default:
        return this.reply('502 5.5.2 Error: command not recognized\r\n');
    }
  }
}

class Sink {
  readonly counters = new Counters();
  readonly sessions = new Set<Session>();
  readonly ehlo: string;
  readonly verbose: boolean;
  readonly rules: SinkRule[];
  readonly log: (line: string) => void;
  private active = 0;
  private nextId = 1;
  private queueSeq = 0;
  private readonly queuePrefix = (Date.now() % 0xfffff).toString(16).toUpperCase();

  constructor(readonly settings: SinkSettings, log?: (line: string) => void) {
    this.rules = settings.rules;
    this.verbose = settings.verbose;
    this.log = log ?? ((l) => process.stderr.write(`${l}\n`));
    this.ehlo = [settings.hostname, 'PIPELINING', `SIZE ${settings.size}`, '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES']
      .map((l, i, a) => `250${i < a.length - 1 ? '-' : ' '}${l}\r\n`)
      .join('');
  }

  accept(socket: net.Socket): void {
    this.counters.connections++;
    this.active++;
    this.sessions.add(new Session(this, socket, this.nextId++));
  }

  sessionClosed(s: Session): void {
    if (this.sessions.delete(s)) this.active--;
  }

  queueId(): string {
    return `${this.queuePrefix}${(++this.queueSeq).toString(16).toUpperCase().padStart(7, '0')}`;
  }

  /** Index of the first rule matching the (lower-case) address, or -1. */
  match(address: string, at: number): number {
    const rules = this.rules;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i];
      if (r.rcpt && !r.rcpt.test(address)) continue;
      if (r.domain && !r.domain.test(address.slice(at + 1))) continue;
      return i;
    }
    return -1;
  }

  stats(withRecipients = true): SinkStats {
    const c = this.counters;
    const obj = (m: Map<number, number>) => Object.fromEntries([...m].sort((a, b) => a[0] - b[0]).map(([k, v]) => [String(k), v]));
    const replies = new Map(c.rcptReplies);
    for (const [k, v] of c.dataReplies) replies.set(k, (replies.get(k) ?? 0) + v);
    return {
      connections: c.connections,
      active_connections: this.active,
      messages: c.messages,
      messages_refused: c.messagesRefused,
      recipients_total: c.recipientsTotal,
      recipients: withRecipients ? Object.fromEntries(c.recipients) : {},
      recipients_untracked: c.recipientsUntracked,
      max_tracked_recipients: this.settings.maxTrackedRecipients,
      replies: obj(replies),
      rcpt_replies: obj(c.rcptReplies),
      data_replies: obj(c.dataReplies),
      closed: { ...c.closed },
      bytes: c.bytes,
      since: c.since.toISOString(),
    };
  }

  reset(): void {
    Object.assign(this.counters, new Counters());
  }
}

function listen(server: net.Server | http.Server, at: HostPort): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

/** Start a sink; resolves once the SMTP port (and the stats port, if asked) listen. */
export async function startSink(opts: SinkOptions = {}): Promise<RunningSink> {
  const settings: SinkSettings = { ...DEFAULT_SETTINGS, rules: [], ...opts } as SinkSettings;
  const sink = new Sink(settings, opts.log);
  const smtp = net.createServer((socket) => sink.accept(socket));
  smtp.maxConnections = 10_000;
  const at = opts.listen ?? { host: '127.0.0.1', port: 0 };
  const port = await listen(smtp, at);

  let statsServer: http.Server | null = null;
  let statsPort: number | null = null;
  if (opts.stats) {
    statsServer = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://sink');
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(`${JSON.stringify(body)}\n`);
      };
      req.resume();
      if ((url.pathname === '/stats' || url.pathname === '/') && (req.method === 'GET' || req.method === 'HEAD')) {
        return send(200, sink.stats(url.searchParams.get('recipients') !== '0'));
      }
      if (url.pathname === '/reset' && req.method === 'POST') {
        sink.reset();
        return send(200, { ok: true });
      }
      send(404, { error: 'GET /stats[?recipients=0] or POST /reset' });
    });
    statsServer.keepAliveTimeout = 1000;
    try {
      statsPort = await listen(statsServer, opts.stats);
    } catch (e) {
      smtp.close();
      throw e;
    }
  }

  let closing: Promise<void> | null = null;
  return {
    host: at.host,
    port,
    statsPort,
    stats: (o) => sink.stats(o?.recipients ?? true),
    reset: () => sink.reset(),
    close: () =>
      (closing ??= (async () => {
        const done = [new Promise<void>((r) => smtp.close(() => r()))];
        if (statsServer) {
          const s = statsServer;
          done.push(new Promise<void>((r) => s.close(() => r())));
          s.closeAllConnections();
        }
        for (const s of [...sink.sessions]) s.destroy();
        await Promise.all(done);
      })()),
  };
}
