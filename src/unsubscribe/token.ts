// One-click unsubscribe tokens (RFC 8058): what the List-Unsubscribe URL carries. A token binds
// the recipient, the sender's domain (the scope the unsubscribe suppresses in), the message's
// tags and the time it was made, under an HMAC with the operator's secret: the endpoint needs
// no database row per message, and an altered or forged token is refused. Pure functions.
//
// Form: base64url(JSON [version, recipient, sender domain, tags, seconds since epoch]) "." the
// first 16 bytes of HMAC-SHA256 over that text, base64url. About 100 characters for a
// typical recipient and two tags, well inside a URL's and a header line's limits.
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface UnsubscribeClaim {
  recipient: string;
  senderDomain: string;
  tags: Record<string, string>;
  /** ms since the epoch (kept to the second). */
  issued: number;
}

const VERSION = 1;
const MAC_BYTES = 16;
/** Longer tokens are refused before any work: the endpoint is public. */
export const TOKEN_MAX = 2048;

function mac(secret: string, text: string): Buffer {
  return createHmac('sha256', secret).update(text).digest().subarray(0, MAC_BYTES);
}

export function makeToken(secret: string, c: UnsubscribeClaim): string {
  const text = Buffer.from(JSON.stringify([VERSION, c.recipient, c.senderDomain, c.tags, Math.floor(c.issued / 1000)]), 'utf8').toString('base64url');
  return `${text}.${mac(secret, text).toString('base64url')}`;
}

/** The claim a token carries, or why it is refused (altered, forged, malformed, too old). */
export function readToken(secret: string, token: string, now: number, maxAgeMs: number): { ok: true; claim: UnsubscribeClaim } | { ok: false; reason: string } {
  if (token.length > TOKEN_MAX) return { ok: false, reason: 'token too long' };
  const dot = token.indexOf('.');
  if (dot <= 0 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) return { ok: false, reason: 'malformed token' };
  const text = token.slice(0, dot);
  const given = Buffer.from(token.slice(dot + 1), 'base64url');
  const want = mac(secret, text);
  if (given.length !== want.length || !timingSafeEqual(given, want)) return { ok: false, reason: 'token signature does not match' };
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed token' };
  }
  if (!Array.isArray(v) || v[0] !== VERSION || typeof v[1] !== 'string' || typeof v[2] !== 'string' || typeof v[4] !== 'number' || !v[3] || typeof v[3] !== 'object' || Array.isArray(v[3])) return { ok: false, reason: 'malformed token' };
  const issued = v[4] * 1000;
  if (issued > now + 5 * 60_000) return { ok: false, reason: 'token issued in the future' };
  if (now - issued > maxAgeMs) return { ok: false, reason: 'token expired' };
  const tags: Record<string, string> = {};
  for (const [k, val] of Object.entries(v[3] as Record<string, unknown>)) if (typeof val === 'string') tags[k] = val;
  return { ok: true, claim: { recipient: v[1], senderDomain: v[2], tags, issued } };
}
