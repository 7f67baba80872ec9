// Adjustments to smtp-server's connection, kept in this one module:
//  1. The greeting goes out at once. smtp-server waits 100 ms to catch "early talkers" (a
//     spam-bot heuristic for inbound MX); a relay for one's own applications gains nothing
//     from it, and it caps a session-per-message client at 10 messages/s per session.
//  2. A client with no right to relay is refused at RCPT with 554 5.7.1 before the address
//     is parsed: smtplb's only local addresses are its feedback and unsubscribe addresses
//     (asked about by the listener, exactly), so every other address (including the classic
//     relay-test forms that smtp-server would answer with a 501 syntax error) is relaying.
//  3. A reply whose text already starts with an enhanced status code (RFC 3463) keeps it:
//     smtp-server otherwise adds one from a fixed table by reply code (554 → 5.6.0), which
//     is wrong for relay denial (5.7.1), too many recipients (4.5.3) or a full disk (4.3.1).
//  4. A plain session that ends with QUIT is closed as soon as its 221 is in the kernel, as
//     Postfix's smtpd does. smtp-server half-closes and waits up to 5 s for the client's own
//     FIN, which costs a shutdown, a read, an epoll change and a timer per session, and keeps
//     the connection counted against the limits after the client is done.
//  5. AUTH is not listed in the EHLO reply before TLS: AUTH is refused there (538), and a
//     client that trusts the list (Python's smtplib, swaks --auth) would send its password in
//     clear first and only then read the refusal.
//  6. MAIL and RCPT parameters of extensions not offered are refused with 555 5.5.4.
//  7. Pipelining only where RFC 2920 allows it (Postfix's smtpd_forbid_unauth_pipelining): a
//     command that must end a group (EHLO, HELO, DATA, STARTTLS, VRFY, EXPN) with more input
//     already behind it in the same read, or several commands in one read from a client that
//     was not offered PIPELINING (before EHLO, after HELO), is answered 554 5.5.0 and the
//     connection closed. Message text sent with DATA before the 354 is how an SMTP smuggling
//     attack rides on a server that reads line endings differently, and it is refused when it
//     comes in the same read. It is a heuristic, as Postfix's is: text in a later read (under
//     TLS each record is a read of its own) or before the greeting (which goes out the moment
//     the connection is taken, before its first read) cannot be told apart. What stops the
//     smuggling itself is that no bare CR or LF is ever relayed (cleanup/line-endings.ts).
// All override internals of smtp-server 3.x; the tests check greeting latency, the enhanced
// codes and the connection given back at QUIT, so an upgrade that changes them fails loudly.
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { printable } from '../core/printable.js';

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;

interface ServerInternals {
  connections: Set<unknown>;
  /** Set by the listener: refuse pipelining that RFC 2920 does not allow. */
  forbidPipelining?: boolean;
  /** Set by the listener: may this session relay at all (or is `address`, as the RCPT command gives it, one of smtplb's own)? */
  mayRelay?: (session: { remoteAddress: string; user?: unknown }, address?: string) => boolean;
  options: { maxClients?: number };
  _onError(err: Error): void;
  _onClientConnect(data: unknown): void;
}

class RelaySession extends (SMTPConnection as unknown as new (server: unknown, socket: Socket, opts: unknown) => {
  _server: ServerInternals;
  name: string;
  send(code: number, data?: unknown, context?: unknown): void;
  _setListeners(cb: () => void): void;
  connectionReady(): void;
  on(ev: string, fn: (x: never) => void): void;
  init(): void;
  session: { remoteAddress: string; user?: unknown; envelope: { mailFrom: unknown } };
  secure: boolean;
  handler_RCPT(command: Buffer, callback: () => void): void;
  _socket: Socket;
  _closeTimer?: NodeJS.Timeout;
  close(): void;
  _createParser(): ParserInternals;
  _rejectInvalidParams(parsed: { args: Record<string, string | true> | false; duplicate: string | false }, keys: string[], callback: () => void): boolean;
}) {
  /**
   * MAIL and RCPT parameters: only those of extensions offered (RFC 5321 4.1.1.11: 555 for
   * any other; Postfix says "555 5.5.4 Unsupported option"), never taken and ignored.
   */
  override _rejectInvalidParams(parsed: { args: Record<string, string | true> | false; duplicate: string | false }, keys: string[], callback: () => void): boolean {
    if (super._rejectInvalidParams(parsed, keys, callback)) return true;
    const known = keys.includes('NOTIFY') ? RCPT_PARAMS : MAIL_PARAMS;
    const unknown = Object.keys(parsed.args || {}).find((k) => !known.has(k));
    if (unknown === undefined) return false;
    const value = (parsed.args as Record<string, string | true>)[unknown];
    this.send(555, `5.5.4 Unsupported option: ${printable(unknown, 64)}${value === true ? '' : `=${printable(String(value), 64)}`}`);
    callback();
    return true;
  }

  /** Whether the client said EHLO (was offered PIPELINING) in this session. */
  private esmtp = false;

  override _createParser(): ParserInternals {
    const parser = super._createParser();
    if (this._server.forbidPipelining) guardPipelining(parser, (name) => this.pipelined(name));
    return parser;
  }

  /** A command was dispatched; `behind` is whether more input arrived with it. True: refused. */
  private pipelined(command: { name: string; behind: boolean }): boolean {
    const { name, behind } = command;
    const violation = behind && (MUST_END_GROUP.has(name) || !this.esmtp);
    if (name === 'EHLO') this.esmtp = true;
    else if (name === 'HELO') this.esmtp = false;
    if (!violation) return false;
    this.send(554, '5.5.0 Error: SMTP protocol synchronization (command pipelined where RFC 2920 does not allow it)');
    this.close();
    return true;
  }

  handler_QUIT(_command: Buffer, callback: () => void): void {
    const sock = this._socket;
    this.send(221, 'Bye');
    // The replies of a pipelined batch are held (corked) until the batch is answered; QUIT ends it.
    while (sock.writableCorked) sock.uncork();
    // Nothing left in Node's buffer: the 221 went to the kernel, which still sends it before the
    // FIN. (A client that sent more after QUIT, against RFC 2920, gets a reset, as from
    // Postfix.) A TLS session ends with smtp-server's close (close_notify, then FIN).
    const now = !(sock instanceof TLSSocket) && !sock.destroyed && sock.writableLength === 0;
    if (now) sock.destroy();
    this.close(); // smtp-server's bookkeeping: parser stopped, connection forgotten; no end() on a destroyed socket
    if (now) clearTimeout(this._closeTimer);
    callback();
  }

  override handler_RCPT(command: Buffer, callback: () => void): void {
    const mayRelay = this._server.mayRelay;
    if (this.session.envelope.mailFrom && mayRelay && !mayRelay(this.session, /<([^<>]{1,320})>/.exec(command.toString('latin1', 0, 400))?.[1])) {
      this.send(554, '5.7.1 Relay access denied');
      return callback();
    }
    super.handler_RCPT(command, callback);
  }

  override init(): void {
    this._setListeners(() => {
      const max = this._server.options.maxClients;
      if (max && this._server.connections.size > max) return this.send(421, `4.7.0 ${this.name} Too many connected clients, try again in a moment`, false);
      this.connectionReady();
    });
  }

  override send(code: number, data?: unknown, context?: unknown): void {
    if (typeof data === 'string' && ENHANCED.test(data)) return super.send(code, data, false);
    // The EHLO reply: AUTH is offered only inside TLS, where it can be used (Postfix's
    // smtpd_tls_auth_only). A client that trusts the list never sends a password in clear.
    if (Array.isArray(data) && !this.secure) data = data.filter((line) => !(typeof line === 'string' && line.startsWith('AUTH ')));
    return super.send(code, data, context);
  }
}

/** The MAIL and RCPT parameters of the extensions smtplb offers (SIZE, 8BITMIME, SMTPUTF8, AUTH, DSN). */
const MAIL_PARAMS = new Set(['SIZE', 'BODY', 'SMTPUTF8', 'AUTH', 'RET', 'ENVID']);
const RCPT_PARAMS = new Set(['NOTIFY', 'ORCPT']);

/** Commands after which a client must wait for the reply (RFC 2920 3.1, RFC 3207 for STARTTLS). */
const MUST_END_GROUP = new Set(['EHLO', 'HELO', 'DATA', 'STARTTLS', 'VRFY', 'EXPN']);

interface ParserInternals {
  _dataMode: boolean;
  _remainder: string;
  /** Chunks the socket wrote that the parser has not started on (the one in hand is not among them). */
  writableBuffer?: unknown[];
  oncommand(command: Buffer, callback?: () => void): void;
  _write(chunk: Buffer, encoding: string, next: (err?: Error) => void): void;
}

/**
 * Tells `check` for each command line the parser dispatches whether more input came in the same
 * read (lines or bytes behind it in that chunk, or chunks queued behind it); a command `check`
 * refuses is not handed on. Counting newlines per chunk is linear in the input, once.
 */
function guardPipelining(parser: ParserInternals, check: (c: { name: string; behind: boolean }) => boolean): void {
  const write = parser._write.bind(parser);
  const dispatch = parser.oncommand.bind(parser);
  let lines = 0;
  let partial = false;
  parser._write = (chunk, encoding, next) => {
    if (!parser._dataMode) {
      let n = 0;
      let last = -1;
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) {
        n++;
        last = i;
      }
      lines = n;
      partial = last < chunk.length - 1;
    }
    write(chunk, encoding, next);
  };
  parser.oncommand = (command, callback) => {
    lines--;
    const name = command.subarray(0, Math.min(command.length, 16)).toString('latin1').split(' ', 1)[0].toUpperCase();
    // Node's Writable leaves a null where the chunk in hand was queued: only real chunks count.
    const behind = lines > 0 || partial || !!parser.writableBuffer?.some((c) => c != null);
    if (check({ name, behind })) return;
    dispatch(command, callback);
  };
}

/** Make `server` use RelaySession for every connection, including those it accepts itself. */
export function useRelaySessions(server: SMTPServer, mayRelay: (session: { remoteAddress: string; user?: unknown }, address?: string) => boolean, forbidPipelining = true): void {
  const s = server as unknown as ServerInternals & { connect(socket: Socket, opts: unknown): void };
  s.mayRelay = mayRelay;
  s.forbidPipelining = forbidPipelining;
  s.connect = (socket: Socket, opts: unknown) => {
    const connection = new RelaySession(server, socket, opts);
    s.connections.add(connection);
    connection.on('error', (err: Error) => s._onError(err));
    connection.on('connect', (data: unknown) => s._onClientConnect(data));
    connection.init();
  };
}
