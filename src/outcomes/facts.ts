// An outcome as the classifier reads it: an SMTP reply, or (no reply code) a connection, TLS or
// DNS failure told apart by the text smtplb itself wrote for it, or an expiry; and a reply's
// enhanced status code. Pure.
import type { OutcomeFacts } from './reply-class.js';

export function outcomeFacts(code: number | null, text: string, expired = false): OutcomeFacts {
  if (expired) return { kind: 'expired', code, text };
  if (code !== null) return { kind: 'reply', code, text };
  if (/\b(?:certificate|TLS|SSL|STARTTLS|handshake)\b/i.test(text)) return { kind: 'tls', code, text };
  if (/\bDNS\b|NXDOMAIN|SERVFAIL|\bnull MX\b|\bno MX\b|ENOTFOUND|EAI_AGAIN/i.test(text)) return { kind: 'dns', code, text };
  return { kind: 'connect', code, text };
}

/** "250 2.0.0 Ok" → "2.0.0"; null when the reply has no enhanced code. */
export function enhancedCode(reply: string): string | null {
  return /^(?:\d{3}[ -])?([245]\.\d{1,3}\.\d{1,3})\b/.exec(reply.trim())?.[1] ?? null;
}
