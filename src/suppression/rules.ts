// The suppression list's decisions, as pure functions: which scope a send belongs to, what may
// feed the list, and the reply a suppressed recipient gets. The store is list.ts; the RCPT
// check sits in the SMTP listener and the feeding in the relay's final outcomes.
import type { OutcomeClass } from '../outcomes/reply-class.js';

/** `global` or a sender domain (lower case). */
export type SuppressionScope = string;

export interface SuppressionEntry {
  scope: SuppressionScope;
  address: string;
  reason: string;
  /** The reply class that fed it (bounces), else null. */
  class: OutcomeClass | null;
  /** bounce | operator | import | unsubscribe | complaint */
  source: string;
  created: number;
  /** ms since the epoch; null: until removed. */
  expires: number | null;
}

export interface SuppressionPolicy {
  enabled: boolean;
  scope: 'sender_domain' | 'global';
  action: 'refuse' | 'drop';
  from_classes: OutcomeClass[];
  bounce_ttl: number;
}

/** The classes that say the address itself is bad: the only ones the list may take from bounces. */
export const ADDRESS_CLASSES = ['invalid-recipient', 'inactive-mailbox', 'bad-domain', 'mailbox-full'] as const satisfies readonly OutcomeClass[];

/**
 * The form an address is kept and looked up in: trimmed and lower case. RFC 5321 lets a local
 * part be case-sensitive, but no large mailbox provider treats it so, and a list that kept
 * `Bob@` and `bob@` apart would let the second through.
 */
export function normalAddress(address: string): string {
  return address.trim().toLowerCase();
}

const DOMAIN = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)*$/;

/** A scope as given by an operator: `global` or a domain name; null when it is neither. */
export function parseScope(text: string): SuppressionScope | null {
  const s = text.trim().toLowerCase();
  return s === 'global' || (s.length <= 253 && DOMAIN.test(s)) ? s : null;
}

/** An address an operator may add: local@domain, bounded, no spaces or angle brackets. */
export function validAddress(address: string): boolean {
  const a = normalAddress(address);
  const at = a.lastIndexOf('@');
  return a.length <= 320 && at > 0 && at < a.length - 1 && !/[\s<>,;]/.test(a);
}

/**
 * The scope a message's suppressions are kept under: its envelope sender's domain (each sending
 * domain has its own list, like a tenant), or `global`. A null sender (a bounce) has no domain:
 * only global entries apply to it.
 */
export function scopeOf(policy: Pick<SuppressionPolicy, 'scope'>, sender: string): SuppressionScope {
  if (policy.scope === 'global') return 'global';
  const at = sender.lastIndexOf('@');
  return at > 0 ? sender.slice(at + 1).toLowerCase() : 'global';
}

/** The scopes a lookup checks, most specific first: the sender's domain, then `global`. */
export function lookupScopes(policy: Pick<SuppressionPolicy, 'scope'>, sender: string): SuppressionScope[] {
  const own = scopeOf(policy, sender);
  return own === 'global' ? ['global'] : [own, 'global'];
}

/**
 * Whether a final outcome feeds the list: a permanent (5xx) failure whose class says the address
 * is bad and is one the operator listed. A 4xx, an expiry, and the classes about the sender
 * (rate-limit, reputation, auth-policy) or the path (network, protocol) never do: the address
 * may be fine, and suppressing it would make a temporary failure permanent.
 */
export function feedsList(policy: SuppressionPolicy, code: number | null, cls: OutcomeClass): boolean {
  if (!policy.enabled || code === null || code < 500 || code > 599) return false;
  return (ADDRESS_CLASSES as readonly string[]).includes(cls) && policy.from_classes.includes(cls);
}

/** The entry a bounce adds. */
export function bounceEntry(policy: SuppressionPolicy, sender: string, recipient: string, cls: OutcomeClass, reply: string, now: number): SuppressionEntry {
  return {
    scope: scopeOf(policy, sender),
    address: normalAddress(recipient),
    reason: `${cls}: ${oneLine(reply)}`.slice(0, 200),
    class: cls,
    source: 'bounce',
    created: now,
    expires: policy.bounce_ttl > 0 ? now + policy.bounce_ttl : null,
  };
}

/** The RCPT reply for a suppressed address (the reason as printable ASCII, bounded). */
export function refusal(address: string, entry: Pick<SuppressionEntry, 'reason' | 'source'>): { code: number; text: string } {
  const why = oneLine(entry.reason).replace(/[^\x20-\x7e]/g, '?').slice(0, 120) || entry.source;
  return { code: 550, text: `5.1.1 <${address}>: recipient suppressed (${why})` };
}

function oneLine(text: string): string {
  return text.replace(/[\r\n\t]+/g, ' ').replace(/\s{2,}/g, ' ').trim();
}
