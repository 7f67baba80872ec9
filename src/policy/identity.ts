// Which domain the gateway may sign for, and whether the header From is one the sender may
// use. A DKIM signature is the gateway vouching for a domain; it must never vouch for a domain
// the sender is not allowed to use, or DMARC passes for mail its owner did not send.
//
// - An authenticated user with `sender_domains`: the envelope sender (checked at MAIL) and the
//   header From must both be among them; the message is signed for the From domain.
// - An authenticated user without `sender_domains`, and relay-network clients on a listener
//   with `identity: any`: signed for the From domain, else the envelope sender's.
// - Relay-network clients on a listener with `identity: aligned` (the default): signed for the
//   From domain only when it is aligned with the envelope sender's (the same domain, or one a
//   subdomain of the other, DMARC's relaxed alignment); otherwise for the envelope sender's
//   domain only. A trusted network still cannot borrow an identity by writing a From header.

import type { Author } from '../cleanup/from-header.js';

export function domainAllowed(patterns: readonly string[], domain: string): boolean {
  const d = domain.toLowerCase();
  return patterns.some((p) => {
    const q = p.toLowerCase();
    return q === d || (q.startsWith('*.') && d.endsWith(q.slice(1)));
  });
}

function aligned(a: string, b: string): boolean {
  return a === b || a.endsWith(`.${b}`) || b.endsWith(`.${a}`);
}

export type IdentityVerdict = { ok: true; signFor: (string | undefined)[] } | { ok: false; code: number; text: string };

/**
 * `author` is the header's author as RFC 5322 reads it (cleanup/from-header.ts). A From that
 * does not parse, or shows several domains, is never signed for; a sender bound to some domains
 * is refused it, naming the rule.
 */
export function identity(q: { user?: { name: string; sender_domains?: string[] }; author: Author; senderDomain?: string; rule: 'aligned' | 'any' }): IdentityVerdict {
  const { user, author, senderDomain } = q;
  if (user?.sender_domains) {
    if (author.kind === 'none') return { ok: true, signFor: [senderDomain] };
    if (author.kind === 'bad') return { ok: false, code: 550, text: `5.7.1 user ${user.name}: ${author.rule}` };
    const denied = author.domains.find((d) => !domainAllowed(user.sender_domains!, d));
    if (denied !== undefined) return { ok: false, code: 550, text: `5.7.1 user ${user.name} may not send as ${denied} (header ${author.domain === denied || author.domains.length === 1 ? 'From' : 'From/Sender'})` };
    return { ok: true, signFor: [author.domain] };
  }
  // One domain in From (and Sender): the only author domain a signature may vouch for.
  const fromDomain = author.kind === 'ok' && author.domains.length === 1 ? author.domain : undefined;
  if (user || q.rule === 'any') return { ok: true, signFor: [fromDomain, senderDomain] };
  if (fromDomain && (!senderDomain || aligned(fromDomain, senderDomain))) return { ok: true, signFor: [fromDomain, senderDomain] };
  return { ok: true, signFor: [senderDomain] };
}
