// 8-bit MIME to 7-bit for a hop that does not offer 8BITMIME (RFC 6152 3: the relay converts,
// or returns the message): every MIME leaf whose body holds 8-bit bytes is re-encoded as
// quoted-printable (nodemailer's encoder, RFC 2045 6.7) and labelled so; multiparts and
// message/rfc822 parts are walked. What cannot be converted is refused with the reason: 8-bit
// bytes in a header (no MIME encoding applies there without rewriting the text) or in a part
// labelled `binary`. Postfix converts the same way.
//
// Written by hand for the walk: the kept MIME libraries parse into a tree and build a new
// message, which would re-fold every header and re-encode every part, 7-bit ones included, and
// lose the bytes DKIM signed. Here every byte outside a converted body stays as it came.
// Pure; linear in the message's size (the depth of nested parts is bounded).
import qp from 'nodemailer/lib/qp/index.js';
import { headerFields } from '../cleanup/from-header.js';

export type SevenBit = { ok: true; message: Buffer; converted: boolean } | { ok: false; reason: string };

const MAX_DEPTH = 20;

/** Any byte above 127? */
export function hasEightBit(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] > 127) return true;
  return false;
}

/** Split at the blank line that ends the header block (CRLF line endings, as stored). */
function split(entity: Buffer): { head: Buffer; body: Buffer } {
  if (entity.subarray(0, 2).toString('latin1') === '\r\n') return { head: Buffer.alloc(0), body: entity.subarray(2) };
  const end = entity.indexOf('\r\n\r\n');
  if (end < 0) return { head: entity, body: Buffer.alloc(0) };
  return { head: entity.subarray(0, end + 2), body: entity.subarray(end + 4) };
}

/** A header field's unfolded value (the first one), or undefined. */
function field(head: string, name: string): string | undefined {
  return headerFields(head, name)[0]?.trim();
}

/** A parameter of a structured header value (boundary="..."), unquoted. */
function param(value: string, name: string): string | undefined {
  const m = new RegExp(`;\\s*${name}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]+))`, 'i').exec(value);
  return m ? (m[1] ?? m[2]).replace(/\\(.)/g, '$1') : undefined;
}

/** `head` with its Content-Transfer-Encoding set to quoted-printable (replaced, or added at the end). */
function labelQp(head: string, addMime: boolean): string {
  const cte = /^Content-Transfer-Encoding[ \t]*:(?:[^\r\n]|\r\n[ \t])*\r\n/im;
  if (cte.test(head)) return head.replace(cte, 'Content-Transfer-Encoding: quoted-printable\r\n');
  return `${head}${addMime && !/^MIME-Version[ \t]*:/im.test(head) ? 'MIME-Version: 1.0\r\n' : ''}Content-Transfer-Encoding: quoted-printable\r\n`;
}

function convert(entity: Buffer, depth: number, top: boolean): SevenBit {
  if (depth > MAX_DEPTH) return { ok: false, reason: 'MIME parts nested too deep to convert' };
  const { head, body } = split(entity);
  if (hasEightBit(head)) return { ok: false, reason: '8-bit characters in a header cannot be converted to 7-bit' };
  if (!hasEightBit(body)) return { ok: true, message: entity, converted: false };
  const h = head.toString('latin1');
  const type = (field(h, 'Content-Type') ?? 'text/plain').toLowerCase();
  const cte = (field(h, 'Content-Transfer-Encoding') ?? '7bit').toLowerCase();
  if (type.startsWith('multipart/')) {
    const boundary = param(field(h, 'Content-Type') ?? '', 'boundary');
    if (!boundary) return { ok: false, reason: 'a multipart without a boundary cannot be converted' };
    const delim = Buffer.from(`\r\n--${boundary}`);
    // The body with a CRLF in front, so the first delimiter is found like the others.
    const b = Buffer.concat([Buffer.from('\r\n'), body]);
    const out: Buffer[] = [];
    let at = b.indexOf(delim);
    if (at < 0) return { ok: false, reason: 'a multipart whose boundary never appears cannot be converted' };
    const preamble = b.subarray(2, Math.max(2, at));
    if (hasEightBit(preamble)) return { ok: false, reason: '8-bit characters in a multipart preamble cannot be converted' };
    out.push(b.subarray(0, at)); // the CRLF put in front, and the preamble
    let converted = false;
    for (;;) {
      const lineEnd = b.indexOf('\r\n', at + delim.length);
      const delimLine = b.subarray(at, lineEnd < 0 ? b.length : lineEnd + 2);
      out.push(delimLine);
      if (delimLine.subarray(delim.length, delim.length + 2).toString('latin1') === '--' || lineEnd < 0) {
        const epilogue = b.subarray(at + delimLine.length);
        if (hasEightBit(epilogue)) return { ok: false, reason: '8-bit characters in a multipart epilogue cannot be converted' };
        out.push(epilogue);
        break;
      }
      const start = lineEnd + 2;
      const next = b.indexOf(delim, start);
      if (next < 0) return { ok: false, reason: 'a multipart part without its closing boundary cannot be converted' };
      const part = convert(b.subarray(start, next), depth + 1, false);
      if (!part.ok) return part;
      converted ||= part.converted;
      out.push(part.message);
      at = next;
    }
    const joined = Buffer.concat(out).subarray(2); // without the CRLF put in front
    return { ok: true, message: Buffer.concat([head, Buffer.from('\r\n'), joined]), converted };
  }
  if (type.startsWith('message/rfc822') || type.startsWith('message/global')) {
    const inner = convert(body, depth + 1, false);
    if (!inner.ok) return inner;
    return { ok: true, message: Buffer.concat([head, Buffer.from('\r\n'), inner.message]), converted: inner.converted };
  }
  if (cte === 'binary') return { ok: false, reason: 'a binary MIME part cannot be converted to 7-bit' };
  if (cte === 'quoted-printable' || cte === 'base64') return { ok: false, reason: `8-bit bytes in a part labelled ${cte}` };
  // 7bit (mislabelled) or 8bit: quoted-printable, lines of at most 76 characters.
  const encoded = qp.wrap(qp.encode(body), 76);
  return { ok: true, message: Buffer.concat([Buffer.from(labelQp(h, top), 'latin1'), Buffer.from('\r\n'), Buffer.from(encoded, 'latin1')]), converted: true };
}

/** The message for a 7-bit hop: unchanged when it holds no 8-bit byte, converted where it can be, or why not. */
export function toSevenBit(message: Buffer): SevenBit {
  return convert(message, 0, true);
}

/**
 * The lines smtplb put on top of a message at acceptance, apart from the client's message:
 * its Received field and, when it signed (`signed`, the domain it recorded then), its
 * DKIM-Signature. A converted message is signed again over the client's part, as at
 * acceptance. A DKIM-Signature the client wrote is the client's: never taken for ours, so a
 * conversion never signs for a domain the client named.
 */
export function ourTopFields(message: Buffer, signed: string | undefined): { received: Buffer; signature?: { domain: string }; rest: Buffer } | null {
  const fieldEnd = (from: number): number => {
    let at = from;
    for (;;) {
      const nl = message.indexOf('\r\n', at);
      if (nl < 0) return message.length;
      if (message[nl + 2] !== 0x20 && message[nl + 2] !== 0x09) return nl + 2;
      at = nl + 2;
    }
  };
  const r = fieldEnd(0);
  const received = message.subarray(0, r);
  if (!/^Received:[^]*\(smtplb\)/i.test(received.toString('latin1'))) return null;
  if (!signed) return { received, rest: message.subarray(r) };
  const s = fieldEnd(r);
  const sig = message.subarray(r, s).toString('latin1');
  const domain = /^DKIM-Signature:/i.test(sig) ? /[;\s]d=([^;\s]+)/.exec(sig.replace(/\r\n[ \t]/g, ' '))?.[1]?.toLowerCase() : undefined;
  if (domain !== signed) return null;
  return { received, signature: { domain }, rest: message.subarray(s) };
}
