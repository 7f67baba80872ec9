// Delivery status notifications (RFC 3464): a multipart/report with a human part, the
// machine-readable message/delivery-status part, and the original headers. Built by hand:
// nodemailer's composer does not produce report parts, and the format is small and fixed.
import { randomBytes } from 'node:crypto';

export interface DsnRecipient {
  rcpt: string;
  action: 'failed' | 'delayed' | 'relayed';
  code: number | null;
  text: string;
  server: string | null;
  /** The recipient's NOTIFY and ORCPT as stored (dsn-params.ts): ORCPT becomes Original-Recipient. */
  dsn?: string | null;
  /** The host that answered (Remote-MTA), where it differs from the pool's label for the server. */
  host?: string;
  /** The pool the recipient was delivered through (to find the server's host). */
  pool?: string;
  /** The failure's reply class (src/outcomes/reply-class.ts): X-Smtplb-Class beside the Diagnostic-Code. */
  class?: string;
}

export interface DsnInput {
  hostname: string;
  queueId: string;
  sender: string;
  arrival: Date;
  recipients: DsnRecipient[];
  reason: 'rejected' | 'expired';
  /** The original's headers, or (`full`) the whole message (RET=FULL). */
  original: Buffer;
  full?: boolean;
  /** The client's ENVID (Original-Envelope-Id). */
  envid?: string;
}

function statusOf(r: DsnRecipient): string {
  if (r.action === 'relayed') return '2.0.0';
  const enhanced = /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(r.text)?.[1];
  if (enhanced) return enhanced;
  if (r.action === 'failed' && r.code && r.code >= 500) return '5.0.0';
  return r.action === 'failed' ? '4.4.7' : '4.0.0';
}

export function originalHeaders(body: Buffer): string {
  const text = body.toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  return (end < 0 ? text : text.slice(0, end)).replace(/\r?\n/g, '\r\n');
}

/** ORCPT (stored as "type;address", xtext-decoded) as the DSN's Original-Recipient field. */
function originalRecipient(r: DsnRecipient): string[] {
  if (!r.dsn) return [];
  try {
    const orcpt = (JSON.parse(r.dsn) as { orcpt?: string }).orcpt;
    if (!orcpt) return [];
    const i = orcpt.indexOf(';');
    return [`Original-Recipient: ${orcpt.slice(0, i)}; ${orcpt.slice(i + 1)}`];
  } catch {
    return [];
  }
}

/** An upstream's reply as report text: no control character (a bare CR in a relayed report would be one more). */
function clean(text: string): string {
  return text.replace(/[\x00-\x08\x0a-\x1f\x7f]+/g, ' ');
}

export function buildDsn(d: DsnInput): Buffer {
  const boundary = `=_smtplb_${randomBytes(8).toString('hex')}`;
  const date = new Date().toUTCString().replace('GMT', '+0000');
  const relayedOnly = d.recipients.every((r) => r.action === 'relayed');
  const delayedOnly = d.recipients.every((r) => r.action === 'delayed');
  const human = d.recipients
    .map((r) =>
      r.action === 'relayed'
        ? `<${r.rcpt}>: delivered to ${r.server ? `host ${r.server}` : 'the next system'}, which does not send delivery notifications: this is the last one (${clean(r.text)})`
        : r.action === 'delayed'
          ? `<${r.rcpt}>: not delivered yet, still trying; ${r.server ? `host ${r.server} said: ` : 'last answer: '}${clean(r.text) || 'no answer'}`
          : `<${r.rcpt}>: ${d.reason === 'expired' ? 'delivery did not succeed before the maximum queue time; last answer: ' : ''}${r.server ? `host ${r.server} said: ` : ''}${clean(r.text) || 'no answer'}`,
    )
    .join('\r\n');
  const perRcpt = d.recipients
    .map((r) =>
      [
        ...originalRecipient(r),
        `Final-Recipient: rfc822; ${r.rcpt}`,
        `Action: ${r.action}`,
        `Status: ${d.reason === 'expired' && r.action !== 'relayed' && !/^5/.test(statusOf(r)) ? '4.4.7' : statusOf(r)}`,
        ...(r.host || r.server ? [`Remote-MTA: dns; ${r.host ?? r.server}`] : []),
        ...(r.code ? [`Diagnostic-Code: smtp; ${clean(r.text)}`] : []),
        // An extension field (RFC 3464 7: X- fields are for private use) the sender's software can sort bounces by.
        ...(r.class ? [`X-Smtplb-Class: ${r.class}`] : []),
      ].join('\r\n'),
    )
    .join('\r\n\r\n');
  const lines = [
    `From: Mail Delivery System <MAILER-DAEMON@${d.hostname}>`,
    `To: <${d.sender}>`,
    `Subject: ${relayedOnly ? 'Successful Mail Delivery Report' : delayedOnly ? 'Delayed Mail (still being retried)' : 'Undelivered Mail Returned to Sender'}`,
    `Date: ${date}`,
    `Message-ID: <${d.queueId}.dsn.${randomBytes(4).toString('hex')}@${d.hostname}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated message.',
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    '',
    `This is the mail system at ${d.hostname}.`,
    '',
    relayedOnly
      ? 'Your message was relayed to one or more recipients, as you asked to be told (NOTIFY=SUCCESS).'
      : delayedOnly
        ? 'Your message could not be delivered yet to one or more recipients. It is still being retried: there is nothing for you to do now.'
      : d.reason === 'expired'
        ? 'Your message could not be delivered before it expired from the queue.'
        : 'Your message could not be delivered to one or more recipients.',
    '',
    human,
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    `Reporting-MTA: dns; ${d.hostname}`,
    ...(d.envid ? [`Original-Envelope-Id: ${d.envid}`] : []),
    `X-Smtplb-Queue-ID: ${d.queueId}`,
    `Arrival-Date: ${d.arrival.toUTCString().replace('GMT', '+0000')}`,
    '',
    perRcpt,
    '',
    `--${boundary}`,
    d.full ? 'Content-Type: message/rfc822' : 'Content-Type: text/rfc822-headers',
    '',
    '',
  ];
  // The returned message goes in as its bytes (an 8-bit one stays 8-bit, never re-encoded).
  const original = d.full ? d.original.subarray(0, d.original.length - (d.original.subarray(-2).toString('latin1') === '\r\n' ? 2 : 0)) : Buffer.from(originalHeaders(d.original), 'latin1');
  return Buffer.concat([Buffer.from(lines.join('\r\n'), 'utf8'), original, Buffer.from(`\r\n\r\n--${boundary}--\r\n`, 'latin1')]);
}
