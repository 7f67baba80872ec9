// The cleanup stage's intake (Postfix's cleanup, between smtpd and the queue): the message goes
// to the spool's Incoming as the client sends it, which keeps it in memory up to the spool's
// INLINE_BODY_MAX and writes the rest to its file, so memory per message in flight is bounded
// (that, plus the header block up to HEADER_MAX, plus one chunk) whatever the message's size.
// Header rules apply to the header block on its way through: the traffic-class header is
// taken out before anything is stored. Signing and the Received line come after, as header
// lines put before the body when it is committed (the spool's prefix). Chunks are handed over,
// not copied: none is reused here after it is written. Bare CR and LF become CRLF on the way in
// (line-endings.ts), so nothing stored, signed or relayed holds one.
import type { Incoming } from '../spool/spool.js';
import { takeHeaders } from '../policy/classify.js';
import { LineEndings } from './line-endings.js';

/** Header block kept in memory for the header rules; past it, the rest is body (Postfix's header_size_limit is 100 KB). */
export const HEADER_MAX = 256 * 1024;

export interface Received {
  incoming: Incoming;
  /** The header block as written (class header taken out), for policy: From, Message-ID. */
  header: Buffer;
  /** The class header's value, if the message had one. */
  classValue?: string;
  /** The tags header's value (X-Smtplb-Tags), if the message had one: taken out like the class header. */
  tagsValue?: string;
  /** Whether the client sent a bare CR or LF (stored as CRLF either way). */
  bareLineEndings: boolean;
}

/**
 * Read a DATA stream into a new spool message. `open` starts it (it may refuse: spool full);
 * on any failure what was stored is removed and the error thrown.
 */
export async function receive(data: AsyncIterable<Buffer>, open: () => Promise<Incoming>, classHeader: string, tooBig: () => boolean = () => false, tagsHeader = 'X-Smtplb-Tags'): Promise<Received> {
  const incoming = await open();
  try {
    // The header block so far, in a buffer that doubles as it fills (each byte copied O(1)
    // times), searched for its end only from where the last search stopped.
    let acc = Buffer.allocUnsafe(0);
    let len = 0;
    let header: Buffer | undefined;
    let classValue: string | undefined;
    let tagsValue: string | undefined;
    /** The class and tags headers out of the header block: what the application told smtplb alone. */
    const ours = (block: Buffer) => {
      const r = takeHeaders(block, [classHeader, tagsHeader]);
      [classValue, tagsValue] = r.values;
      return r.message;
    };
    const endings = new LineEndings();
    const take = async (chunk: Buffer): Promise<void> => {
      if (!chunk.length) return;
      if (header) {
        await incoming.write(chunk);
        return;
      }
      if (len + chunk.length > acc.length) {
        const grown = Buffer.allocUnsafe(Math.max(len + chunk.length, acc.length * 2, 4096));
        acc.copy(grown, 0, 0, len);
        acc = grown;
      }
      const from = Math.max(0, len - 3);
      chunk.copy(acc, len);
      len += chunk.length;
      const buf = acc.subarray(0, len);
      const end = headerEndFrom(buf, from);
      if (end === len && len < HEADER_MAX) return; // the header block goes on
      const cut = Math.min(end, HEADER_MAX);
      header = ours(Buffer.from(buf.subarray(0, cut)));
      await incoming.write(header);
      if (cut < len) await incoming.write(Buffer.from(buf.subarray(cut)));
      acc = Buffer.allocUnsafe(0);
      len = 0;
    };
    for await (const chunk of data) {
      // Past the size limit the rest is read and dropped: the reply (552) follows the final dot.
      if (tooBig()) continue;
      await take(endings.push(chunk));
    }
    const tail = endings.end();
    if (tail && !tooBig()) await take(tail);
    if (!header) {
      // A message that is all header (or empty).
      header = ours(Buffer.from(acc.subarray(0, len)));
      await incoming.write(header);
    }
    return { incoming, header, classValue, tagsValue, bareLineEndings: endings.sawBare };
  } catch (e) {
    await incoming.discard();
    throw e;
  }
}

/** Where the header block ends (after its blank line), searching from `from`; the length if not yet. */
function headerEndFrom(buf: Buffer, from: number): number {
  const crlf = buf.indexOf('\r\n\r\n', from);
  const lf = buf.indexOf('\n\n', from);
  if (crlf < 0 && lf < 0) return buf.length;
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return crlf + 2;
  return lf + 1;
}
