// Settling a message's outcomes is one decision and one transaction (spool.ts, invariant 1).
// The decision is here, pure: which of the updates apply (an outcome is recorded once: a row
// that already has its final state keeps it; a row in flight is skipped when asked), and
// whether the message leaves the queue with them (no recipient left open), in which case its
// rows and history go instead of being updated first only to be deleted.
import { OPEN, type RcptState, type RecipientRow } from './records.js';

export interface SettlementPlan {
  /** Each update that applies, with the row it changes and the state it had before. */
  applied: { u: RecipientRow; prev: RecipientRow; was: RcptState }[];
  /** No recipient stays open: the message leaves the queue. */
  leaves: boolean;
}

export function planSettlement(rows: (RecipientRow & { leased: number })[], updates: RecipientRow[], unleasedOnly: boolean): SettlementPlan {
  const state = new Map(rows.map((r) => [r.rcpt, r.state]));
  const applied: SettlementPlan['applied'] = [];
  for (const u of updates) {
    const prev = rows.find((r) => r.rcpt === u.rcpt);
    const was = prev && state.get(prev.rcpt);
    if (!prev || !was || !OPEN.has(was)) continue;
    if (unleasedOnly && prev.leased) continue;
    applied.push({ u, prev, was });
    state.set(prev.rcpt, u.state);
  }
  return { applied, leaves: ![...state.values()].some((s) => OPEN.has(s)) };
}

/** Recipients set to `bounced` become `failed`: outcome known, DSN owed (invariant 1). */
export function owed(updates: RecipientRow[]): RecipientRow[] {
  return updates.map((u) => (u.state === 'bounced' ? { ...u, state: 'failed' } : u));
}
