// RFC 2920 command pipelining for nodemailer's SMTPConnection. Where the server offers
// PIPELINING, MAIL FROM, every RCPT TO and DATA go out in one write and their replies are read
// in order, so an envelope costs one round trip instead of three (nodemailer pipelines only the
// RCPTs, after MAIL's reply, and has no option for more). Written here, as a patch of one
// connection's envelope step, because no maintained Node SMTP client pipelines the whole
// envelope; nodemailer's own checks and MAIL FROM parameters (SIZE, 8BITMIME, SMTPUTF8, DSN)
// are kept by running its step first and taking over only the replies.
//
// Outcomes are the ones nodemailer gives unpipelined: a refused MAIL fails the message with
// MAIL's reply; refused recipients are listed (rejectedErrors); all refused fails with
// "all recipients were rejected" from RCPT TO. The one difference on the wire: DATA was sent
// in the group, so a server that opens a data phase although nothing was accepted (RFC 2920
// says it must refuse DATA then) is sent an empty message end, as Postfix does, before the
// failure is reported and the connection reused.
import type { Socket } from 'node:net';
import type SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';

type SmtpErr = Error & { recipient?: string; rejected?: string[]; rejectedErrors?: SmtpErr[] };
type Callback = (err: SmtpErr | null, info?: unknown) => void;

/** The parts of SMTPConnection's internals this relies on (nodemailer 6/7, lib/smtp-connection). */
interface Internals {
  options: { lmtp?: boolean };
  _socket?: Socket;
  _responseActions: ((str: string) => void)[];
  _supportedExtensions: string[];
  _usingSmtpUtf8?: boolean;
  _ehloLines?: string[];
  _envelope: { from: string; to: string[]; rcptQueue: string[]; accepted: string[]; rejected: string[]; rejectedErrors: SmtpErr[] };
  _setEnvelope(envelope: unknown, callback: Callback): void;
  _sendCommand(str: string, logStr?: string): void;
  _getDsnRcptToArgs(): string;
  /** Set per transaction by upstream.ts's sendOn: one recipient's NOTIFY/ORCPT arguments. */
  _smtplbRcptArgs?: (rcpt: string) => string;
  _formatError(message: string, type: string, response: string | false, command: string): SmtpErr;
}

export function pipelineEnvelope(conn: SMTPConnection): void {
  const c = conn as unknown as Internals;
  const setEnvelope = c._setEnvelope.bind(conn);
  c._setEnvelope = (envelope, callback) => {
    if (c.options.lmtp || !c._supportedExtensions.includes('PIPELINING')) return setEnvelope(envelope, callback);
    const before = c._responseActions.length;
    // One write for the whole group.
    const socket = c._socket;
    const send = c._sendCommand;
    let mailSent = false;
    c._sendCommand = (str: string, logStr?: string) => {
      if (str.startsWith('MAIL FROM:')) mailSent = true;
      send.call(conn, str, logStr);
    };
    socket?.cork();
    try {
      try {
        setEnvelope(envelope, callback);
      } finally {
        c._sendCommand = send;
      }
      // Its checks refused the envelope (already reported), or MAIL was not sent as expected.
      if (!mailSent || c._responseActions.length !== before + 1) return;
      c._responseActions.pop();
      const env = c._envelope;
      let mailError: SmtpErr | null = null;
      let lastRcpt = '';
      c._responseActions.push((str) => {
        if (str.charAt(0) === '2') return;
        const utf8 = c._usingSmtpUtf8 && /^550 /.test(str) && /[\x80-\uFFFF]/.test(env.from);
        mailError = c._formatError(utf8 ? 'Internationalized mailbox name not allowed' : 'Mail command failed', 'EENVELOPE', str, 'MAIL FROM');
      });
      for (const rcpt of env.rcptQueue.splice(0)) {
        c._responseActions.push((str) => {
          lastRcpt = str;
          if (str.charAt(0) === '2') return void env.accepted.push(rcpt);
          const utf8 = c._usingSmtpUtf8 && /^553 /.test(str) && /[\x80-\uFFFF]/.test(rcpt);
          const err = c._formatError(utf8 ? 'Internationalized mailbox name not allowed' : 'Recipient command failed', 'EENVELOPE', str, 'RCPT TO');
          err.recipient = rcpt;
          env.rejected.push(rcpt);
          env.rejectedErrors.push(err);
        });
        c._sendCommand(`RCPT TO:<${rcpt}>${c._smtplbRcptArgs ? c._smtplbRcptArgs(rcpt) : c._getDsnRcptToArgs()}`);
      }
      c._responseActions.push((str) => {
        let failure: SmtpErr | null = mailError;
        if (!failure && env.accepted.length === 0) {
          failure = c._formatError("Can't send mail - all recipients were rejected", 'EENVELOPE', lastRcpt, 'RCPT TO');
          failure.rejected = env.rejected;
          failure.rejectedErrors = env.rejectedErrors;
        }
        if (failure) {
          const f = failure;
          if (str.charAt(0) !== '3') return callback(f);
          // A data phase opened for nothing: closed empty, its reply read, then the failure.
          c._responseActions.push(() => callback(f));
          return c._sendCommand('.');
        }
        if (!/^[23]/.test(str)) return callback(c._formatError('Data command failed', 'EENVELOPE', str, 'DATA'));
        callback(null, {
          accepted: env.accepted,
          rejected: env.rejected,
          ...(c._ehloLines?.length ? { ehlo: c._ehloLines } : {}),
          ...(env.rejectedErrors.length ? { rejectedErrors: env.rejectedErrors } : {}),
        });
      });
      c._sendCommand('DATA');
    } finally {
      socket?.uncork();
    }
  };
}
