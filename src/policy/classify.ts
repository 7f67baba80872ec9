// Traffic classes: which kind of mail a message is (transactional, marketing, ...), so routes
// can keep them on separate pools. Pure functions.

export interface ClassSources {
  /** An authenticated user's class is binding: the user cannot send as another class. */
  userClass?: string;
  /** The class header a trusted client set on the message. */
  headerClass?: string;
  senderDomain?: string;
  listenerClass?: string;
}

/** user > header > sender domain > listener: the most specific statement wins. */
export function classOf(src: ClassSources, bySenderDomain: Record<string, string>): string | undefined {
  if (src.userClass) return src.userClass;
  if (src.headerClass) return src.headerClass;
  const d = src.senderDomain?.toLowerCase();
  if (d) {
    if (bySenderDomain[d]) return bySenderDomain[d];
    const wild = Object.keys(bySenderDomain).find((k) => k.startsWith('*.') && d.endsWith(k.slice(1).toLowerCase()));
    if (wild) return bySenderDomain[wild];
  }
  return src.listenerClass;
}

/**
 * Remove every occurrence of header `name` (with its folded continuation lines) from a
 * message; returns the first value found. Only the header block is touched.
 */
export function takeHeader(message: Buffer, name: string): { message: Buffer; value?: string } {
  const headEnd = headerEnd(message);
  const head = message.subarray(0, headEnd).toString('latin1');
  const lower = `${name.toLowerCase()}:`;
  // Most messages have no such header: one search, not a split of the block into lines.
  const folded = head.toLowerCase();
  if (!folded.startsWith(lower) && !folded.includes(`\n${lower}`)) return { message };
  const lines = head.split(/(?<=\n)/);
  let value: string | undefined;
  const kept: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].toLowerCase().startsWith(lower)) {
      kept.push(lines[i]);
      continue;
    }
    let v = lines[i].slice(lower.length);
    while (i + 1 < lines.length && /^[ \t]/.test(lines[i + 1])) v += lines[++i];
    value ??= v.replace(/\s+/g, ' ').trim();
  }
  if (value === undefined) return { message };
  return { message: Buffer.concat([Buffer.from(kept.join(''), 'latin1'), message.subarray(headEnd)]), value };
}

/** Offset just past the header block's last line (the blank line stays with the body). */
export function headerEnd(message: Buffer): number {
  const crlf = message.indexOf('\r\n\r\n');
  const lf = message.indexOf('\n\n');
  if (crlf < 0 && lf < 0) return message.length;
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return crlf + 2;
  return lf + 1;
}
