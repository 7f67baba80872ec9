// Who a message says it is from: the header From (and Sender, where From lists several
// mailboxes) parsed by RFC 5322's grammar, obsolete forms included (§3.4, §4.4), to the one
// domain that binds. The gateway's From binding and the domain it signs for both come from
// here, so what DMARC at the receiving side reads as the author's domain is what was checked.
//
// Written by hand because the kept parsers read addresses as a mail client displays them:
// nodemailer's addressparser (mailauth's reader) recovers from what does not parse and takes
// the last "@" in a quoted local part for the domain separator. A binding decision must refuse
// whatever the grammar does not produce. `email-addresses` implements the grammar but has not
// been kept since 2021; the tests use it, and Python's `email`, as independent readers.
//
// Pure: a header block in, a verdict out. Work is linear in the header's size.
import { printable } from '../core/printable.js';

/** The author's identity as the header block states it. */
export type Author =
  /** No From header at all. */
  | { kind: 'none' }
  /**
   * `domain` binds (the single From mailbox's, or the Sender's where From lists several);
   * `domains` is every domain the From and Sender fields show, which a sender limited to some
   * domains must all be allowed.
   */
  | { kind: 'ok'; domain: string; domains: string[] }
  /** Does not parse, or breaks a rule of RFC 5322 §3.6: `rule` says which, for the reply. */
  | { kind: 'bad'; rule: string };

type Token = { t: 'atom' | 'quoted' | 'literal' | 'special'; v: string };

class ParseError extends Error {}

/** Characters that end an atom (RFC 5322 §3.2.3 specials, plus white space and controls). */
const SPECIALS = '()<>[]:;@\\,."';

/**
 * Tokens of an unfolded header value, comments and white space dropped (CFWS may stand between
 * any two tokens in the obsolete syntax that a receiver must read). Bytes above 127 are atext
 * (RFC 6532), so a UTF-8 display name is words.
 */
function tokenize(s: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = s.length;
  while (i < n) {
    const c = s[i];
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
      i++;
    } else if (c === '(') {
      // Comments nest, and may hold quoted pairs (§3.2.2).
      let depth = 0;
      do {
        const d = s[i];
        if (d === undefined) throw new ParseError('an unclosed comment');
        if (d === '\\') i++;
        else if (d === '(') depth++;
        else if (d === ')') depth--;
        i++;
      } while (depth > 0);
    } else if (c === '"') {
      let v = '';
      i++;
      for (;;) {
        const d = s[i];
        if (d === undefined) throw new ParseError('an unclosed quoted string');
        if (d === '"') break;
        if (d === '\\') {
          if (i + 1 >= n) throw new ParseError('an unclosed quoted string');
          v += s[i + 1];
          i += 2;
          continue;
        }
        if (d === '\r' || d === '\n') {
          i++;
          continue;
        }
        v += d;
        i++;
      }
      i++;
      out.push({ t: 'quoted', v });
    } else if (c === '[') {
      const end = s.indexOf(']', i);
      if (end < 0) throw new ParseError('an unclosed domain literal');
      out.push({ t: 'literal', v: s.slice(i, end + 1) });
      i = end + 1;
    } else if (SPECIALS.includes(c)) {
      if (c === ')' || c === ']' || c === '\\') throw new ParseError(`a stray "${c}"`);
      out.push({ t: 'special', v: c });
      i++;
    } else {
      const code = c.charCodeAt(0);
      if (code < 0x20 || code === 0x7f) throw new ParseError('a control character');
      let j = i;
      while (j < n) {
        const d = s[j];
        const dc = d.charCodeAt(0);
        if (d === ' ' || d === '\t' || d === '\r' || d === '\n' || SPECIALS.includes(d) || dc < 0x20 || dc === 0x7f) break;
        j++;
      }
      out.push({ t: 'atom', v: s.slice(i, j) });
      i = j;
    }
  }
  return out;
}

const isWord = (x: Token | undefined) => x !== undefined && (x.t === 'atom' || x.t === 'quoted');
const isSpecial = (x: Token | undefined, c: string) => x !== undefined && x.t === 'special' && x.v === c;

/** domain = dot-atom / obs-domain (atoms joined by dots); a domain literal binds to no domain name. */
function domainAt(tokens: Token[], at: number, end: number, inRoute = false): { domain: string; next: number } {
  const first = tokens[at];
  if (first?.t === 'literal') {
    // A route's domains are dropped, so a literal there binds nothing either way.
    if (inRoute) return { domain: first.v, next: at + 1 };
    throw new ParseError('an address literal in place of a domain');
  }
  if (first?.t !== 'atom') throw new ParseError('no domain after "@"');
  const labels = [first.v];
  let i = at + 1;
  while (i < end && isSpecial(tokens[i], '.')) {
    const next = tokens[i + 1];
    if (next?.t !== 'atom') throw new ParseError('an empty domain label');
    labels.push(next.v);
    i += 2;
  }
  return { domain: labels.join('.').toLowerCase(), next: i };
}

/** addr-spec = local-part "@" domain, exactly filling tokens[at, end). */
function addrSpec(tokens: Token[], at: number, end: number): string {
  // local-part = dot-atom / quoted-string / obs-local-part (words joined by dots)
  if (!isWord(tokens[at])) throw new ParseError('no local part');
  let i = at + 1;
  while (i < end && isSpecial(tokens[i], '.')) {
    if (!isWord(tokens[i + 1])) throw new ParseError('an empty local-part word');
    i += 2;
  }
  if (!isSpecial(tokens[i], '@') || i >= end) throw new ParseError('no "@" after the local part');
  const d = domainAt(tokens, i + 1, end);
  if (d.next !== end) throw new ParseError(`"${tokens[d.next].v}" after the domain`);
  return d.domain;
}

/** One mailbox (name-addr or addr-spec) filling tokens[at, end): its domain. */
function mailbox(tokens: Token[], at: number, end: number): string {
  if (at >= end) throw new ParseError('an empty mailbox');
  let lt = -1;
  for (let i = at; i < end; i++) if (isSpecial(tokens[i], '<')) {
    if (lt >= 0) throw new ParseError('a second "<"');
    lt = i;
  }
  if (lt < 0) return addrSpec(tokens, at, end);
  // display-name = phrase = words, and (obs-phrase) dots after the first word.
  for (let i = at; i < lt; i++) {
    const x = tokens[i];
    if (isWord(x)) continue;
    if (isSpecial(x, '.') && i > at) continue;
    throw new ParseError(`"${x.v}" in the display name (quote it)`);
  }
  if (!isSpecial(tokens[end - 1], '>') || end - 1 <= lt) throw new ParseError('text after the closing ">" or none');
  const close = end - 1;
  let i = lt + 1;
  // obs-route = *("," / CFWS) "@" domain *("," ["@" domain]) ":" before the addr-spec: dropped.
  if (isSpecial(tokens[i], '@') || isSpecial(tokens[i], ',')) {
    for (;;) {
      while (isSpecial(tokens[i], ',')) i++;
      if (isSpecial(tokens[i], ':')) break;
      if (!isSpecial(tokens[i], '@')) throw new ParseError('a malformed route');
      i = domainAt(tokens, i + 1, close, true).next;
      if (isSpecial(tokens[i], ':')) break;
      if (!isSpecial(tokens[i], ',')) throw new ParseError('a malformed route');
    }
    i++;
  }
  for (let j = i; j < close; j++) if (isSpecial(tokens[j], '>')) throw new ParseError('a second ">"');
  return addrSpec(tokens, i, close);
}

/** mailbox-list (with obs-mbox-list's empty elements): the domain of each mailbox. */
export function parseMailboxList(value: string): string[] {
  const tokens = tokenize(value);
  const domains: string[] = [];
  let start = 0;
  let inAngle = false;
  for (let i = 0; i <= tokens.length; i++) {
    const x = tokens[i];
    if (x && isSpecial(x, '<')) inAngle = true;
    else if (x && isSpecial(x, '>')) inAngle = false;
    else if (x && (isSpecial(x, ':') || isSpecial(x, ';')) && !inAngle) throw new ParseError('a group (name: ...;), which From may not hold');
    if (i < tokens.length && !(isSpecial(x, ',') && !inAngle)) continue;
    if (i > start) domains.push(mailbox(tokens, start, i));
    start = i + 1;
  }
  if (!domains.length) throw new ParseError('no mailbox');
  return domains;
}

/** The fields named `name` in a header block, unfolded (the first occurrence first). */
export function headerFields(head: string, name: string): string[] {
  const out: string[] = [];
  const lower = name.toLowerCase();
  const lines = head.split(/\r?\n/);
  for (let k = 0; k < lines.length; k++) {
    const line = lines[k];
    const colon = line.indexOf(':');
    // The name, then optional white space before the colon (obs-optional, §4.5.3).
    if (colon < 0 || line.slice(0, colon).trimEnd().toLowerCase() !== lower) continue;
    let v = line.slice(colon + 1);
    while (k + 1 < lines.length && /^[ \t]/.test(lines[k + 1])) v += ` ${lines[++k]}`;
    out.push(v);
  }
  return out;
}

/**
 * The author of a message from its header block (RFC 5322 §3.6.2): exactly one From field; a
 * list of several mailboxes only with exactly one Sender, whose single mailbox then binds.
 */
export function authorOf(header: Buffer | string): Author {
  const head = typeof header === 'string' ? header : header.toString('utf8');
  const froms = headerFields(head, 'from');
  if (froms.length === 0) return { kind: 'none' };
  if (froms.length > 1) return { kind: 'bad', rule: 'more than one From header (RFC 5322 3.6)' };
  let from: string[];
  try {
    from = parseMailboxList(froms[0]);
  } catch (e) {
    return { kind: 'bad', rule: `the From header does not parse (RFC 5322 3.4): ${printable((e as Error).message, 120)}` };
  }
  const senders = headerFields(head, 'sender');
  if (senders.length > 1) return { kind: 'bad', rule: 'more than one Sender header (RFC 5322 3.6)' };
  let sender: string | undefined;
  if (senders.length === 1) {
    let list: string[];
    try {
      list = parseMailboxList(senders[0]);
    } catch (e) {
      return { kind: 'bad', rule: `the Sender header does not parse (RFC 5322 3.4): ${printable((e as Error).message, 120)}` };
    }
    if (list.length !== 1) return { kind: 'bad', rule: 'the Sender header must hold one mailbox (RFC 5322 3.6.2)' };
    sender = list[0];
  }
  if (from.length > 1 && !sender) return { kind: 'bad', rule: 'a From header with several mailboxes needs a Sender header (RFC 5322 3.6.2)' };
  const domains = [...new Set(sender ? [...from, sender] : from)];
  return { kind: 'ok', domain: from.length > 1 ? sender! : from[0], domains };
}
