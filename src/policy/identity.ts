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

export function identity(q: { user?: { name: string; sender_domains?: string[] }; fromDomain?: string; senderDomain?: string; rule: 'aligned' | 'any' }): IdentityVerdict {
  const { user, fromDomain, senderDomain } = q;
  if (user?.sender_domains) {
    if (!fromDomain) return { ok: true, signFor: [senderDomain] };
    if (!domainAllowed(user.sender_domains, fromDomain)) return { ok: false, code: 550, text: `5.7.1 user ${user.name} may not send as ${fromDomain} (header From)` };
    return { ok: true, signFor: [fromDomain] };
  }
  if (user || q.rule === 'any') return { ok: true, signFor: [fromDomain, senderDomain] };
  if (fromDomain && (!senderDomain || aligned(fromDomain, senderDomain))) return { ok: true, signFor: [fromDomain, senderDomain] };
  return { ok: true, signFor: [senderDomain] };
}
