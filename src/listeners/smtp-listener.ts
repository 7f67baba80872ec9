// `mode: smtp`: the ESMTP front door (Postfix's smtpd). Session policy lives here — who may
// relay (client networks or AUTH over TLS, never anyone else), limits, routing of each
// recipient at RCPT time — and an accepted message leaves through `accept`, which answers
// 250 only once the message is durable (queue) or taken by an upstream (cut-through).
import net from 'node:net';
import tls from 'node:tls';
import fs from 'node:fs';
import { constants as cryptoConstants, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { ListenerCounters } from './counters.js';
import type { ListenerConfig } from '../config/schema.js';
import { inNetworks } from '../config/units.js';
import type { RouteChoice, RouteQuery } from '../routing/route.js';
import type { Incoming } from '../spool/spool.js';
import { domainOf } from '../routing/route.js';
import { plainIp, readProxyHeader } from '../protocol/proxy-protocol.js';
import { SocketListener, type ConnectionBudget } from './socket-listener.js';
import { useRelaySessions } from './smtp-session.js';
import { LOCAL_MESSAGE_MAX, readLocal } from './local-intake.js';
import { classOf } from '../policy/classify.js';
import { BoundedMap, clientKey } from '../policy/client-key.js';
import { domainAllowed } from '../policy/identity.js';
import { receive } from '../cleanup/receive.js';
import { cleanup, type CleanupInput } from '../cleanup/cleanup.js';
import type { UnsubscribeSettings } from '../unsubscribe/headers.js';

export interface UserEntry { name: string; password: string; class?: string; sender_domains?: string[]; tags?: Record<string, string> }

import type { InboundMessage, Reply } from '../message/inbound.js';
export type { InboundMessage, Reply };

export interface SmtpListenerContext extends ConnectionBudget {
  hostname: string;
  log: Logger;
  metrics: ListenerCounters;
  users: () => Map<string, UserEntry>;
  verifyPassword: (password: string, hash: string) => Promise<boolean>;
  route: (q: RouteQuery) => RouteChoice | null;
  classes: () => { header: string; sender_domains: Record<string, string> };
  /** The DKIM-Signature header for a spool file, with the key of the first of these domains that has one ('' for none). */
  signatureFor: (message: Buffer | string, domains: (string | undefined)[], prefix?: Buffer) => Promise<string>;
  /** One-click unsubscribe per class, if configured (cleanup adds List-Unsubscribe or refuses). */
  unsubscribe?: () => UnsubscribeSettings | undefined;
  /** A pause (complaint rate) holding new mail of this class or with these tags: the reply to its DATA. */
  paused?: (cls: string | undefined, tags: Record<string, string>) => Reply | undefined;
  /** A new spool file for a message arriving now (refused with SpoolFullError below min_free). */
  receive: (expectedSize: number) => Promise<Incoming>;
  /** Queue or relay the message; resolves with the reply for the client's DATA. */
  accept: (m: InboundMessage, mode: 'queue' | 'cutthrough', fallback: 'queue' | 'reject') => Promise<Reply>;
  /** Why the spool cannot take mail now (full, cannot write), as the reply; null when it can. */
  spoolRefusal: (listener: string) => Reply | null;
  /** The reply for an error the spool raised while taking a message; null if it is not the spool's refusal. */
  spoolRefused: (m: { listener: string }, e: unknown) => Reply | null;
  /** The header applications tag messages with (taken out at acceptance, kept for events). */
  tagsHeader?: () => string;
  /** Whether a recipient is on the suppression list for this sender, and what to do (src/suppression). */
  suppressed?: (recipient: string, sender: string) => SuppressionVerdict | undefined;
  /** A message's suppressed recipients were dropped (action: drop). */
  dropped?: (m: { listener: string; sender: string; queueId: string; recipients: string[] }) => void;
  /**
   * smtplb's own addresses (feedback reports, src/feedback; the unsubscribe mailto,
   * src/unsubscribe): is this one of them, and take a message to it (the reply to its DATA).
   */
  local?: { isAddress: (address: string) => boolean; take: (rcpt: string, raw: Buffer, client: string) => Promise<Reply> };
}

/** What the suppression list says of a recipient: refuse it at RCPT with this reply, or take it and drop it. */
export interface SuppressionVerdict {
  action: 'refuse' | 'drop';
  code: number;
  text: string;
}

interface SessionState {
  user?: UserEntry;
  routes: Map<string, { pool: string; route: number; domain: string }>;
  /** The class recipients were routed with at RCPT (before the message's header was seen). */
  rcptClass?: string;
  /** Recipients taken but suppressed (action: drop): not queued. */
  dropped: Set<string>;
  /** The transaction is to one of smtplb's own addresses (a complaint report, an unsubscribe): read here, never relayed. */
  local?: string;
}

const PROXY_HEADER_TIMEOUT = 5000;
/** Session ids: 16 characters as smtp-server makes them, from a per-process salt and a counter (no random draw per connection). */
const SESSION_SALT = randomBytes(4).readUInt32BE(0).toString(32).padStart(6, '0').slice(-6);
let sessionSeq = 0;
const LOCKOUT_MS = 5 * 60_000;
const AUTH_TABLE_MAX = 10_000;

/** A socket's setNoDelay where TCP_NODELAY came with the socket from its listener. */
function keepNoDelay<S>(this: S): S {
  return this;
}

function smtpError(code: number, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(text), { responseCode: code });
}

export class SmtpListener extends SocketListener {
  private smtp: SMTPServer;
  /** The name this listener greets and stamps Received lines with (the config's hostname; a reload changes it). */
  private hostname: string;
  private sessions = new Map<string, SessionState>();
  private raw = new Map<string, net.Socket>();
  /**
   * Open sessions per client (IPv4 address or IPv6 /64). An entry lives only while that client
   * has a session open (taken at connect, given back at close), so the table is bounded by the
   * open sessions themselves (max_clients per listener, max_connections in all): no flood of
   * addresses can leave entries behind. The AUTH-failure table below outlives sessions, so it
   * has its own ceiling.
   */
  private perIp = new Map<string, number>();
  /** AUTH failures per client, bounded: lockouts that ended are the first to go. */
  private authFailures = new BoundedMap<{ count: number; until: number }>(AUTH_TABLE_MAX, (f) => f.until < Date.now());
  private secureContext?: tls.SecureContext;

  constructor(cfg: ListenerConfig, private ctx: SmtpListenerContext) {
    super(cfg, ctx);
    this.hostname = ctx.hostname;
    ({ server: this.smtp, secureContext: this.secureContext } = this.createSmtpServer(cfg, this.hostname));
  }

  /**
   * The SMTP server for `cfg`, with its TLS contexts built (certificate and key read, and
   * checked against each other, now): nothing of the running listener is touched, so a file
   * that cannot be used throws here and the listener keeps serving as it was.
   */
  private createSmtpServer(cfg: ListenerConfig, hostname: string): { server: SMTPServer; secureContext?: tls.SecureContext } {
    // TLS 1.2 at least (smtp-server's own default is TLS 1.0) with Mozilla's intermediate cipher
    // list unless configured, and no renegotiation started by the client (a cheap way to make
    // the server do a handshake's work again and again), for STARTTLS and implicit TLS alike.
    const tlsFiles = cfg.tls
      ? { key: fs.readFileSync(cfg.tls.key), cert: fs.readFileSync(cfg.tls.cert), minVersion: cfg.tls.min_version, ciphers: cfg.tls.ciphers, secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION }
      : {};
    const secureContext = cfg.tls?.implicit ? tls.createSecureContext(tlsFiles) : undefined;
    const server = new SMTPServer({
      name: hostname,
      banner: 'smtplb',
      size: cfg.max_message_size,
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: !cfg.require_auth,
      allowInsecureAuth: false,
      disabledCommands: cfg.tls ? [] : ['STARTTLS', 'AUTH'],
      hideENHANCEDSTATUSCODES: false,
      // REQUIRETLS (RFC 8689) is a promise about every later hop, which smtplb does not keep yet.
      hideREQUIRETLS: true,
      // DSN (RFC 3461): RET, ENVID, NOTIFY and ORCPT are kept and honoured (delivery/dsn-params.ts).
      hideDSN: false,
      ...tlsFiles,
      // Implicit TLS (port 465) is terminated here before smtp-server sees the socket.
      secure: !!cfg.tls?.implicit,
      secured: !!cfg.tls?.implicit,
      maxClients: cfg.max_clients,
      disableReverseLookup: true,
      logger: false,
      socketTimeout: cfg.client_timeout,
      closeTimeout: 30_000,
      onConnect: (s, cb) => this.onConnect(s, cb),
      onAuth: (a, s, cb) => void this.onAuth(a, s, cb),
      onMailFrom: (a, s, cb) => this.onMailFrom(a, s, cb),
      onRcptTo: (a, s, cb) => this.onRcptTo(a, s, cb),
      onData: (stream, s, cb) => this.onData(stream, s, cb),
      onClose: (s) => this.onClose(s),
    });
    server.on('error', (e) => this.ctx.log.debug({ listener: cfg.name, err: e.message }, 'smtp session error'));
    useRelaySessions(server, (session, address) => !!session.user || inNetworks(this.cfg.relay_networks, session.remoteAddress) || (address !== undefined && !!this.ctx.local?.isAddress(address)), cfg.forbid_unauth_pipelining);
    return { server, secureContext };
  }

  /**
   * Reload, in two steps: build the new SMTP server and TLS contexts (throws, changing
   * nothing, when a TLS file cannot be used), then apply them. New sessions get the new
   * certificate; sessions already open keep the server and certificate they started with.
   */
  stage(cfg: ListenerConfig, hostname = this.hostname): () => void {
    const built = this.createSmtpServer(cfg, hostname);
    return () => {
      this.smtp = built.server;
      this.secureContext = built.secureContext;
      this.cfg = cfg;
      this.hostname = hostname;
    };
  }

  update(cfg: ListenerConfig, hostname?: string): void {
    this.stage(cfg, hostname)();
  }

  protected accept(sock: net.Socket): void {
    const remote = plainIp(sock.remoteAddress ?? '');
    const opts = { remoteAddress: remote, remotePort: sock.remotePort };
    if (this.cfg.accept_proxy && inNetworks(this.cfg.accept_proxy, remote)) {
      void readProxyHeader(sock, PROXY_HEADER_TIMEOUT).then((r) => {
        if (!r.ok) {
          this.ctx.log.warn({ listener: this.cfg.name, client: remote, error: r.error }, 'bad PROXY header');
          sock.destroy();
          return;
        }
        if (r.addresses) {
          opts.remoteAddress = r.addresses.source;
          opts.remotePort = r.addresses.sourcePort;
        }
        this.startSession(sock, opts);
      });
    } else {
      this.startSession(sock, opts);
    }
  }

  private startSession(sock: net.Socket, opts: { remoteAddress: string; remotePort?: number }): void {
    const smtp = this.smtp as unknown as { connect(s: net.Socket, o: unknown): void };
    // The session's end gives the connection back even when TLS took the socket over (STARTTLS
    // removes every listener from the plain socket, so its 'close' is never heard): the socket
    // is found again by the session id, chosen here (smtp-server's own format), never by the
    // client's address and port, which a PROXY header could repeat.
    const id = `${SESSION_SALT}${(sessionSeq++).toString(32).padStart(10, '0')}`;
    // What smtp-server would otherwise ask the kernel for on every connection: the local
    // address (a getsockname), and TCP_NODELAY (a setsockopt; the listening socket passed it on).
    const local = this.bound ? { localAddress: this.bound.address, localPort: this.bound.port } : {};
    if (this.nodelayInherited) sock.setNoDelay = keepNoDelay;
    this.raw.set(id, sock);
    sock.once('close', () => this.raw.get(id) === sock && this.raw.delete(id));
    if (!this.secureContext) {
      smtp.connect(sock, { ...opts, ...local, id });
      batchReplies(sock);
      sock.resume();
      return;
    }
    const tlsSock = new tls.TLSSocket(sock, { isServer: true, secureContext: this.secureContext });
    const timer = setTimeout(() => tlsSock.destroy(), 10_000);
    tlsSock.once('secure', () => {
      clearTimeout(timer);
      if (this.nodelayInherited) tlsSock.setNoDelay = keepNoDelay; // a TLSSocket passes it on to the same TCP socket
      smtp.connect(tlsSock, { ...opts, ...local, id });
      batchReplies(tlsSock);
    });
    tlsSock.on('error', (e) => {
      clearTimeout(timer);
      this.ctx.log.debug({ listener: this.cfg.name, client: opts.remoteAddress, err: e.message }, 'TLS handshake failed');
      tlsSock.destroy();
    });
    sock.resume();
  }

  private onConnect(session: SMTPServerSession, cb: (err?: Error) => void): void {
    const ip = clientKey(session.remoteAddress);
    const lock = this.authFailures.get(ip);
    if (lock && lock.until > Date.now()) return cb(smtpError(421, `4.7.0 ${this.hostname} Too many authentication failures, try again later`));
    const n = (this.perIp.get(ip) ?? 0) + 1;
    if (n > this.cfg.max_connections_per_ip) return cb(smtpError(421, `4.7.0 ${this.hostname} Too many connections from your address`));
    this.perIp.set(ip, n);
    this.sessions.set(session.id, { routes: new Map(), dropped: new Set() });
    this.ctx.metrics.listenerSessions.labels(this.cfg.name).inc();
    cb();
  }

  private onClose(session: SMTPServerSession): void {
    const sock = this.raw.get(session.id);
    if (sock) {
      this.raw.delete(session.id);
      this.released(sock);
    }
    if (!this.sessions.delete(session.id)) return;
    const ip = clientKey(session.remoteAddress);
    const n = (this.perIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(ip);
    else this.perIp.set(ip, n);
  }

  private async onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, cb: (err: Error | null | undefined, res?: { user: string }) => void): Promise<void> {
    const user = this.ctx.users().get(auth.username ?? '');
    const ok = user && auth.password != null ? await this.ctx.verifyPassword(auth.password, user.password).catch(() => false) : false;
    if (ok && user) {
      const st = this.sessions.get(session.id);
      if (st) st.user = user;
      return cb(null, { user: user.name });
    }
    const ip = clientKey(session.remoteAddress);
    const f = this.authFailures.get(ip) ?? { count: 0, until: 0 };
    f.count++;
    if (f.count >= this.cfg.max_auth_failures) {
      f.until = Date.now() + LOCKOUT_MS;
      f.count = 0;
      this.ctx.log.warn({ listener: this.cfg.name, client: ip }, `AUTH failures from ${ip}: locked out for ${LOCKOUT_MS / 60000} minutes`);
      this.authFailures.set(ip, f);
      return cb(smtpError(421, `4.7.0 ${this.hostname} Too many authentication failures, closing connection`));
    }
    this.authFailures.set(ip, f);
    cb(smtpError(535, '5.7.8 Authentication credentials invalid'));
  }

  private onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb: (err?: Error) => void): void {
    const refused = this.ctx.spoolRefusal(this.cfg.name);
    if (refused) return cb(smtpError(refused.code, refused.text));
    const st = this.sessions.get(session.id);
    if (st) {
      st.routes.clear();
      st.dropped.clear();
      st.local = undefined;
    }
    const user = st?.user;
    if (user?.sender_domains && address.address) {
      const d = domainOf(address.address);
      if (!domainAllowed(user.sender_domains, d)) {
        return cb(smtpError(553, `5.7.1 <${address.address}>: user ${user.name} may not send as ${d}`));
      }
    }
    cb();
  }

  private onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, done: (err?: Error) => void): void {
    const cb = (err?: Error & { responseCode?: number }) => {
      if (err) this.ctx.metrics.listenerRecipientsRejected.labels(this.cfg.name, String(err.responseCode ?? 451)).inc();
      done(err);
    };
    const st = this.sessions.get(session.id);
    // smtplb's own addresses take mail from anyone (providers' feedback loops, recipients who
    // unsubscribe), alone in its transaction: it is read here, never relayed, so this opens no relay.
    const local = this.ctx.local?.isAddress(address.address) ?? false;
    if (local || st?.local) {
      if (!local || session.envelope.rcptTo.length > 0) return cb(smtpError(452, `4.5.3 Mail to ${st?.local ?? address.address} goes alone; send to other recipients in another transaction`));
      if (st) st.local = address.address;
      return cb();
    }
    const authenticated = !!st?.user;
    if (!authenticated && !inNetworks(this.cfg.relay_networks, session.remoteAddress)) {
      this.ctx.metrics.listenerRejected.labels(this.cfg.name, 'relay_denied').inc();
      return cb(smtpError(554, `5.7.1 <${address.address}>: Relay access denied`));
    }
    if (session.envelope.rcptTo.length >= this.cfg.max_recipients) return cb(smtpError(452, '4.5.3 Too many recipients'));
    const domain = domainOf(address.address);
    if (!domain) return cb(smtpError(550, `5.1.3 <${address.address}>: a domain is required`));
    const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address || '' : '';
    const cls = classOf({ userClass: st?.user?.class, senderDomain: domainOf(sender) || undefined, listenerClass: this.cfg.class }, this.ctx.classes().sender_domains);
    if (st) st.rcptClass = cls;
    const choice = this.ctx.route({ domain, class: cls, senderDomain: domainOf(sender) || undefined, user: st?.user?.name, listener: this.cfg.name });
    if (!choice) return cb(smtpError(550, `5.4.4 <${address.address}>: no route to ${domain}`));
    const suppressed = this.ctx.suppressed?.(address.address, sender);
    if (suppressed) {
      this.ctx.metrics.listenerSuppressed.labels(this.cfg.name, suppressed.action).inc();
      if (suppressed.action === 'refuse') return cb(smtpError(suppressed.code, suppressed.text));
      st?.dropped.add(address.address);
    }
    st?.routes.set(address.address, { pool: choice.rule.pool, route: choice.index, domain });
    cb();
  }

  private onData(stream: SMTPServerDataStream, session: SMTPServerSession, done: (err: Error | null, message?: string) => void): void {
    const cb = (err: (Error & { responseCode?: number }) | null, message?: string) => {
      this.ctx.metrics.listenerMessages.labels(this.cfg.name, err ? String(err.responseCode ?? 451) : '250').inc();
      done(err, message);
    };
    const st = this.sessions.get(session.id);
    void this.take(stream, session, st)
      .then((reply) => {
        if (reply.code >= 200 && reply.code < 300) cb(null, reply.text);
        else cb(smtpError(reply.code, reply.text));
      })
      .catch((e: Error) => {
        this.ctx.log.error({ err: e, listener: this.cfg.name }, 'accepting a message failed');
        cb(smtpError(451, '4.3.0 Temporary failure, please try again'));
      });
  }

  private async takeLocal(stream: SMTPServerDataStream, rcpt: string, client: string, local: NonNullable<SmtpListenerContext['local']>): Promise<Reply> {
    const read = await readLocal(stream as AsyncIterable<Buffer>);
    if (!read.ok) {
      return read.why === 'too-big'
        ? { code: 552, text: `5.3.4 Mail to ${rcpt} is limited to ${LOCAL_MESSAGE_MAX} bytes` }
        : { code: 452, text: '4.3.1 Too much mail to this address is being read at once; please try again later' };
    }
    try {
      return await local.take(rcpt, read.raw, client);
    } finally {
      read.release();
    }
  }

  /** DATA: written to the spool as it arrives (cleanup), then policy, signing, and the relay's answer. */
  private async take(stream: SMTPServerDataStream, session: SMTPServerSession, st: SessionState | undefined): Promise<Reply> {
    if (st?.local && this.ctx.local) return this.takeLocal(stream, st.local, session.remoteAddress, this.ctx.local);
    const from = session.envelope.mailFrom as { args?: Record<string, string> } | false;
    const declared = (from && Number(from.args?.SIZE)) || 0;
    let got: Awaited<ReturnType<typeof receive>>;
    try {
      got = await receive(stream, () => this.ctx.receive(declared), this.ctx.classes().header, () => stream.sizeExceeded, this.ctx.tagsHeader?.());
    } catch (e) {
      stream.resume(); // read the rest, so the reply comes after the final dot
      const refused = this.ctx.spoolRefused({ listener: this.cfg.name }, e);
      if (refused) return refused;
      throw e;
    }
    if (stream.sizeExceeded) {
      await got.incoming.discard();
      this.ctx.metrics.listenerRejected.labels(this.cfg.name, 'too_big').inc();
      return { code: 552, text: `5.3.4 Message size exceeds the limit of ${this.cfg.max_message_size} bytes` };
    }
    if (got.bareLineEndings && this.cfg.bare_line_endings === 'reject') {
      await got.incoming.discard();
      this.ctx.metrics.listenerRejected.labels(this.cfg.name, 'bare_line_ending').inc();
      return { code: 550, text: '5.5.2 Message refused: bare CR or LF in the data (RFC 5321 2.3.8); end every line with CRLF' };
    }
    let r: { message: InboundMessage } | { reply: Reply };
    try {
      r = await cleanup(
        { got, session: session as unknown as CleanupInput['session'], user: st?.user, routes: st?.routes, rcptClass: st?.rcptClass, listener: { name: this.cfg.name, class: this.cfg.class, identity: this.cfg.identity }, hostname: this.hostname },
        this.ctx,
      );
    } catch (e) {
      await got.incoming.discard();
      throw e;
    }
    if ('reply' in r) {
      await got.incoming.discard();
      return r.reply;
    }
    if (st?.dropped.size) {
      const dropped = r.message.recipients.filter((x) => st.dropped.has(x.address)).map((x) => x.address);
      r = { message: { ...r.message, recipients: r.message.recipients.filter((x) => !st.dropped.has(x.address)) } };
      this.ctx.dropped?.({ listener: this.cfg.name, sender: r.message.sender, queueId: got.incoming.id, recipients: dropped });
      if (!r.message.recipients.length) {
        await got.incoming.discard();
        return { code: 250, text: `2.0.0 Ok: ${got.incoming.id} taken; every recipient is suppressed, nothing to deliver` };
      }
    }
    return this.ctx.accept(r.message, this.cfg.delivery, this.cfg.cutthrough_fallback);
  }
}

/** Mail to one of smtplb's own addresses: read into memory (bounded), handed to its handler, never queued. */
export { protocolOf } from '../cleanup/cleanup.js';

/**
 * The replies to a pipelined batch of commands in one write (one TLS record under TLS): the
 * socket is corked while what arrived in one read is handled, and uncorked a turn later, when
 * smtp-server has answered every command of it that it could answer at once (a read of one
 * line is not corked: one reply). Added once
 * smtp-server reads the socket, so it never starts the data flowing itself.
 */
function batchReplies(sock: net.Socket): void {
  let corked = false;
  // First in line: corked before smtp-server's reader handles the chunk.
  sock.prependListener('data', (chunk: Buffer | string) => {
    if (corked || sock.destroyed) return;
    // One line (a client that waits for each reply): one reply, nothing to gather.
    const first = chunk.indexOf('\n');
    if (first === -1 || chunk.indexOf('\n', first + 1) === -1) return;
    corked = true;
    sock.cork();
    setImmediate(() => {
      corked = false;
      sock.uncork();
    });
  });
}
