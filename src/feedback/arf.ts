// Complaint reports (ARF, RFC 5965) as the providers' feedback loops send them (Yahoo CFL,
// Microsoft JMRP, and any generic ARF): a multipart/report with a machine-readable
// message/feedback-report part and the original message (message/rfc822) or its headers
// (text/rfc822-headers). The MIME structure is read by postal-mime (kept by the author of
// nodemailer and mailauth, no dependencies); the feedback-report fields and the original's
// header lines are plain "Name: value" text, read here. What this returns is plain data: who
// complained, about what message, as far as the report says.

export interface Complaint {
  /** abuse, fraud, virus, other, not-spam (RFC 5965 / RFC 6650). */
  feedbackType: string;
  /** The recipient who complained, as the report's Original-Rcpt-To names it (the provider knows who it was). */
  recipient: string | null;
  /** The original's To: only a hint (a list, a group, a redacted name), used when nothing better names the recipient. */
  to: string | null;
  /** The envelope sender of the original: Original-Mail-From, else its Return-Path / From. */
  sender: string | null;
  /** smtplb's queue id, from its own Received line in the original's headers. */
  queueId: string | null;
  messageId: string | null;
  /** The original's List-Unsubscribe field (its token names recipient, sender domain and tags). */
  listUnsubscribe: string | null;
  userAgent: string | null;
}

/** Header fields of a header block (unfolded), lower-cased names, in order. */
export function headerFields(text: string): { name: string; value: string }[] {
  const end = text.search(/\r?\n\r?\n/);
  const block = (end >= 0 ? text.slice(0, end) : text).slice(0, 256 * 1024);
  const out: { name: string; value: string }[] = [];
  for (const line of block.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const m = /^([!-9;-~]+)[ \t]*:(.*)$/.exec(line);
    if (m) out.push({ name: m[1].toLowerCase(), value: m[2].trim() });
  }
  return out;
}

const first = (fields: { name: string; value: string }[], name: string) => fields.find((f) => f.name === name)?.value ?? null;
// A field value is cut to 1 KB before it is searched: an address is far shorter, and the
// unanchored search below is quadratic on a long run of address characters with no '@'
// (a 4 MB report must not hold the event loop).
const ADDRESS_FIELD_MAX = 1024;
const address = (value: string | null) => {
  if (!value) return null;
  const v = value.slice(0, ADDRESS_FIELD_MAX);
  if (!v.includes('@')) return null;
  return /<([^<>\s]*@[^<>\s]+)>/.exec(v)?.[1] ?? /([^\s<>:;,"]+@[^\s<>:;,"]+)/.exec(v)?.[1] ?? null;
};

/** The address of a field that names exactly one: a To naming several says nothing about which of them complained. */
const singleAddress = (value: string | null) => (value && value.slice(0, ADDRESS_FIELD_MAX).split('@').length === 2 ? address(value) : null);

/** The queue id of the first Received line smtplb wrote: "by HOST (smtplb) with PROTO id QUEUEID". */
export function smtplbQueueId(fields: { name: string; value: string }[]): string | null {
  for (const f of fields) {
    if (f.name !== 'received') continue;
    const m = /\(smtplb\) with \S+ id ([A-Za-z0-9]+)/.exec(f.value);
    if (m) return m[1];
  }
  return null;
}

const text = (c: ArrayBuffer | Uint8Array | string) => (typeof c === 'string' ? c : Buffer.from(c instanceof ArrayBuffer ? new Uint8Array(c) : c).toString('latin1'));

/** The complaint an ARF report makes, or null when the message is not one. */
export async function parseArf(raw: Buffer): Promise<Complaint | null> {
  // Loaded with the first report: most nodes never take one.
  const { default: PostalMime } = await import('postal-mime');
  const email = await PostalMime.parse(raw.subarray(0, 4 * 1024 * 1024), { forceRfc822Attachments: true, attachmentEncoding: 'arraybuffer' });
  const parts = email.attachments ?? [];
  const report = parts.find((p) => p.mimeType?.toLowerCase() === 'message/feedback-report');
  if (!report) return null;
  const fb = headerFields(text(report.content as ArrayBuffer));
  const original = parts.find((p) => ['message/rfc822', 'text/rfc822-headers', 'message/rfc822-headers'].includes(p.mimeType?.toLowerCase() ?? ''));
  const orig = original ? headerFields(text(original.content as ArrayBuffer)) : [];
  return {
    feedbackType: (first(fb, 'feedback-type') ?? 'abuse').toLowerCase(),
    recipient: address(first(fb, 'original-rcpt-to')),
    to: singleAddress(first(orig, 'to')),
    sender: address(first(fb, 'original-mail-from')) ?? address(first(orig, 'return-path')) ?? address(first(orig, 'from')),
    queueId: smtplbQueueId(orig),
    messageId: first(orig, 'message-id')?.slice(0, 998) ?? null,
    listUnsubscribe: first(orig, 'list-unsubscribe')?.slice(0, 4096) ?? null,
    userAgent: first(fb, 'user-agent')?.slice(0, 200) ?? null,
  };
}
