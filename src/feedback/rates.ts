// Complaint rates, pure: complaints / delivered over the last 24 hours, per sender domain, per
// class and per tag (`k=v`), from hourly tallies; and whether one has reached `pause_at`
// (Gmail and Yahoo name 0.3% as the line bulk senders must stay under, and want it under
// 0.1%). A rate drawn from a handful of deliveries says nothing, so a pause needs `min_delivered`.

export type TallyKind = 'domain' | 'class' | 'tag';

export interface TallyRow { kind: TallyKind; key: string; delivered: number; complaints: number }

export interface RateRow extends TallyRow {
  /** complaints / delivered, 0 when nothing was delivered. */
  rate: number;
}

export const HOUR_MS = 3_600_000;
export const WINDOW_HOURS = 24;

export function hourOf(ms: number): number {
  return Math.floor(ms / HOUR_MS);
}

export function withRates(rows: readonly TallyRow[]): RateRow[] {
  return rows.map((r) => ({ ...r, rate: r.delivered > 0 ? r.complaints / r.delivered : 0 }));
}

/** The keys a delivered or complained-about message counts under. */
export function tallyKeys(m: { sender: string; class?: string | null; tags?: Record<string, string> }): { kind: TallyKind; key: string }[] {
  const out: { kind: TallyKind; key: string }[] = [];
  const at = m.sender.lastIndexOf('@');
  if (at > 0) out.push({ kind: 'domain', key: m.sender.slice(at + 1).toLowerCase() });
  if (m.class) out.push({ kind: 'class', key: m.class });
  for (const [k, v] of Object.entries(m.tags ?? {}).slice(0, 10)) out.push({ kind: 'tag', key: `${k}=${v}`.slice(0, 200) });
  return out;
}

export interface PausePolicy {
  /** A fraction: 0.003 for 0.3%. */
  pause_at: number;
  min_delivered: number;
}

/** The classes and tags whose complaint rate reached the line: what to pause, and why. */
export function toPause(rows: readonly RateRow[], p: PausePolicy): { destination: string; reason: string }[] {
  return rows
    .filter((r) => r.kind !== 'domain' && r.delivered >= p.min_delivered && r.complaints > 0 && r.rate >= p.pause_at)
    .map((r) => ({
      destination: `${r.kind}:${r.key}`,
      reason: `complaint rate ${(r.rate * 100).toFixed(2)}% over 24 h (${r.complaints} complaints, ${r.delivered} delivered) reached pause_at ${(p.pause_at * 100).toFixed(2)}%`,
    }));
}

/** Is a message of this class with these tags paused? The pause that holds it, if any. */
export function pausedBy<T extends { destination: string }>(pauses: readonly T[], cls: string | undefined, tags: Record<string, string>): T | undefined {
  // Names as an operator's suspension stores them: lower case.
  const keys = new Set([...(cls !== undefined ? [`class:${cls}`] : []), ...Object.entries(tags).map(([k, v]) => `tag:${k}=${v}`)].map((k) => k.toLowerCase()));
  return pauses.find((s) => keys.has(s.destination.toLowerCase()));
}
