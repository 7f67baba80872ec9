// The compliance gate's decision, pure: does the sending identity of a bulk message meet what
// Gmail, Yahoo (February 2024) and Microsoft (May 2025) require of bulk senders? It reads the
// doctor's findings (identity/checks.ts): a DKIM key that is missing, revoked, invalid or does
// not match the configured one; no DMARC record, or one the From domain does not align with;
// an egress address of the message's pool without forward-confirmed reverse DNS matching its
// HELO. Lookup failures (warnings) never hold mail: a resolver's bad minute is not the
// sender's fault, and a hold must not turn a temporary failure into a long wait.
import type { Finding } from '../identity/checks.js';

/** The doctor's error codes that gate bulk mail. */
export const GATING_CODES: ReadonlySet<string> = new Set([
  'dkim-missing', 'dkim-key-mismatch', 'dkim-revoked', 'dkim-invalid', 'dkim-multiple', 'dkim-algorithm', 'dkim-key-unreadable',
  'dmarc-missing', 'dmarc-invalid', 'dmarc-multiple', 'dmarc-unaligned',
  'ptr-missing', 'ptr-not-fcrdns', 'ptr-helo-mismatch',
]);

export interface IdentityFacts {
  subjects: { subject: string; kind: 'domain' | 'egress'; about: string }[];
  findings: Finding[];
}

/** The sending domain itself, else its parents (a subdomain sends under its parent's DMARC and the config's key). */
function domainSubjects(domain: string, facts: IdentityFacts): string[] {
  const labels = domain.toLowerCase().split('.');
  const known = new Set(facts.subjects.filter((s) => s.kind === 'domain').map((s) => s.subject.toLowerCase()));
  for (let i = 0; i < labels.length - 1; i++) {
    const d = labels.slice(i).join('.');
    if (known.has(d)) return [d];
  }
  return [];
}

/** Why a bulk message from `senderDomain` through `pool` must wait, or null when it may go. */
export function complianceProblem(senderDomain: string, pool: string, facts: IdentityFacts | undefined): string | null {
  if (!facts || !senderDomain) return null;
  const subjects = domainSubjects(senderDomain, facts);
  const egress = new Set(facts.subjects.filter((s) => s.kind === 'egress' && new RegExp(`(^|; )pool ${pool.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')},`).test(s.about)).map((s) => s.subject));
  const bad = facts.findings.filter((f) => f.severity === 'error' && GATING_CODES.has(f.code) && (subjects.includes(f.subject.toLowerCase()) ? f.check !== 'ptr' : f.check === 'ptr' && egress.has(f.subject)));
  if (!bad.length) return null;
  return `compliance: ${bad.slice(0, 3).map((f) => `${f.subject} ${f.code} (${f.problem.slice(0, 120)})`).join('; ')}`;
}

/** Day number (UTC) of a time: the providers' bulk-sender line is 5,000 messages a day. */
export const dayOf = (ms: number): number => Math.floor(ms / 86_400_000);

/** The bulk-sender line: 5,000 messages a day to Gmail (Google's sender guidelines) or Yahoo from one domain. */
export const BULK_SENDER_DAILY = 5000;

/** How long a bulk message waits, at most, for the doctor's first run after a start or reload. */
export const FIRST_CHECK_WAIT_MS = 5000;

/**
 * Before the doctor's first report: wait for it only while it is running and nothing failed.
 * A first run that failed (its resolver unreachable, say), or checks that are off, hold
 * nothing: the gate holds for what the records say, never for what could not be read.
 */
export function awaitFirstCheck(monitor: { checked_at: string | null; running: boolean; enabled: boolean; last_error: string | null }): boolean {
  return !monitor.checked_at && monitor.enabled && monitor.running && !monitor.last_error;
}
