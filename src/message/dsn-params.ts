// The ESMTP parameters a message keeps from its client to its last hop: DSN's RET and ENVID
// (RFC 3461) and BODY (RFC 6152) and SMTPUTF8 (RFC 6531) on MAIL; NOTIFY and ORCPT on each
// RCPT. smtp-server checks and xtext-decodes them at the door; here they are bounded, stored
// as a small JSON text with the message and each recipient, and encoded again for the next
// hop. Pure functions.

export type Notify = 'NEVER' | 'SUCCESS' | 'FAILURE' | 'DELAY';

export interface MessageParams {
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  body?: '7BIT' | '8BITMIME';
  smtputf8?: boolean;
  /** The domain smtplb signed for at acceptance (its DKIM-Signature is the line after its Received). */
  signed?: string;
}

export interface RcptDsn {
  notify?: Notify[];
  orcpt?: string;
  /** Set once its delay notice went out (queue.delay_warning): one per recipient. */
  warned?: boolean;
}

/** RFC 3461 4.4: ENVID at most 100 characters; ORCPT bounded likewise (an address plus its type). */
const ENVID_MAX = 100;
const ORCPT_MAX = 500;
const NOTIFY_VALUES = new Set<Notify>(['NEVER', 'SUCCESS', 'FAILURE', 'DELAY']);
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

/** The parameters of a session's MAIL FROM as smtp-server parsed them. */
export function paramsFromSession(envelope: { dsn?: { ret?: string | null; envid?: string | null }; bodyType?: string; smtpUtf8?: boolean }): MessageParams {
  const p: MessageParams = {};
  const ret = envelope.dsn?.ret?.toUpperCase();
  if (ret === 'FULL' || ret === 'HDRS') p.ret = ret;
  const envid = envelope.dsn?.envid;
  if (typeof envid === 'string' && envid && !CONTROL.test(envid)) p.envid = envid.slice(0, ENVID_MAX);
  const body = envelope.bodyType?.toUpperCase();
  if (body === '7BIT' || body === '8BITMIME') p.body = body;
  if (envelope.smtpUtf8) p.smtputf8 = true;
  return p;
}

/** A RCPT's DSN parameters as smtp-server parsed them. */
export function rcptDsnFrom(dsn: { notify?: string[]; orcpt?: string } | undefined): RcptDsn | undefined {
  if (!dsn) return undefined;
  const out: RcptDsn = {};
  const notify = (dsn.notify ?? []).map((n) => n.toUpperCase()).filter((n): n is Notify => NOTIFY_VALUES.has(n as Notify));
  if (notify.length) out.notify = notify;
  if (typeof dsn.orcpt === 'string' && dsn.orcpt.includes(';') && !CONTROL.test(dsn.orcpt)) out.orcpt = dsn.orcpt.slice(0, ORCPT_MAX);
  return out.notify || out.orcpt ? out : undefined;
}

/** As stored: JSON, or null when there is nothing to keep. */
export function encodeStored(v: MessageParams | RcptDsn | undefined): string | null {
  return v && Object.keys(v).length ? JSON.stringify(v) : null;
}

export function decodeParams(s: string | null | undefined): MessageParams {
  if (!s) return {};
  try {
    const v = JSON.parse(s) as MessageParams;
    return typeof v === 'object' && v ? v : {};
  } catch {
    return {};
  }
}

export function decodeRcptDsn(s: string | null | undefined): RcptDsn {
  return decodeParams(s) as RcptDsn;
}

/** A failure is reported unless NOTIFY was given without FAILURE (NEVER, or SUCCESS/DELAY only). */
export function wantsFailure(d: RcptDsn): boolean {
  return !d.notify || d.notify.includes('FAILURE');
}

/** A delay notice: asked for with DELAY, or by default (no NOTIFY: RFC 3461 4.1 leaves it to the MTA; Postfix sends them). */
export function wantsDelay(d: RcptDsn): boolean {
  return !d.notify || d.notify.includes('DELAY');
}

export function wantsSuccess(d: RcptDsn): boolean {
  return !!d.notify?.includes('SUCCESS');
}

/** RFC 3461 4: xtext, so no byte outside 33-126 (and no "+" or "=") reaches a command line. */
export function xtext(s: string): string {
  // smtp-server decodes "+XX" to the character of code XX: such a character is that byte
  // again; a character past 255 (UTF-8 text) is its UTF-8 bytes.
  let out = '';
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    for (const b of code < 256 ? [code] : Buffer.from(ch, 'utf8')) out += b < 33 || b > 126 || b === 43 || b === 61 ? `+${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  }
  return out;
}

/** The NOTIFY and ORCPT arguments of one RCPT TO for a hop that offers DSN ('' otherwise). */
export function rcptArgs(d: RcptDsn | undefined, hopOffersDsn: boolean): string {
  if (!hopOffersDsn || !d) return '';
  return `${d.notify ? ` NOTIFY=${d.notify.join(',')}` : ''}${d.orcpt ? ` ORCPT=${xtext(d.orcpt)}` : ''}`;
}

/** Does the envelope need SMTPUTF8 from the next hop (an address with a non-ASCII character)? */
export function needsSmtpUtf8(sender: string, recipients: readonly string[]): boolean {
  // eslint-disable-next-line no-control-regex
  const wide = /[^\x00-\x7f]/;
  return wide.test(sender) || recipients.some((r) => wide.test(r));
}
