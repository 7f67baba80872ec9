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
  const r = takeHeaders(message, [name]);
  return r.values[0] === undefined ? { message: r.message } : { message: r.message, value: r.values[0] };
}

/**
 * takeHeader for several names in one pass over the header block (intake takes the class and
 * the tags headers from every message); a line goes to the first name it matches.
 */
export function takeHeaders(message: Buffer, names: readonly string[]): { message: Buffer; values: (string | undefined)[] } {
  const values: (string | undefined)[] = names.map(() => undefined);
  const headEnd = headerEnd(message);
  const head = message.subarray(0, headEnd).toString('latin1');
  const lower = names.map((n) => `${n.toLowerCase()}:`);
  // Most messages have none of them: one search each, not a split of the block into lines.
  const folded = head.toLowerCase();
  if (!lower.some((l) => folded.startsWith(l) || folded.includes(`\n${l}`))) return { message, values };
  const lines = head.split(/(?<=\n)/);
  const kept: string[] = [];
  let taken = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].toLowerCase();
    const k = lower.findIndex((l) => line.startsWith(l));
    if (k < 0) {
      kept.push(lines[i]);
      continue;
    }
    taken = true;
    let v = lines[i].slice(lower[k].length);
    while (i + 1 < lines.length && /^[ \t]/.test(lines[i + 1])) v += lines[++i];
    values[k] ??= v.replace(/\s+/g, ' ').trim();
  }
  if (!taken) return { message, values };
  return { message: Buffer.concat([Buffer.from(kept.join(''), 'latin1'), message.subarray(headEnd)]), values };
}

/** Offset just past the header block's last line (the blank line stays with the body). */
export function headerEnd(message: Buffer): number {
  const crlf = message.indexOf('\r\n\r\n');
  const lf = message.indexOf('\n\n');
  if (crlf < 0 && lf < 0) return message.length;
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return crlf + 2;
  return lf + 1;
}
