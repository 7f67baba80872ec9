// Warm-up plans: a new IP or relay sends a growing daily volume so receivers learn to trust
// it. Pure functions over the plan, today's count and the clock.

export interface WarmupPlan {
  /** Midnight UTC of day 0, in ms. */
  start: number;
  /** Daily caps: day 0, day 1, ...; after the last day the server is warm (no cap). */
  schedule: number[];
  /** When the cap is reached: `spill` to the pool's other servers, or `hold` the mail until tomorrow. */
  overflow: 'spill' | 'hold';
}

const DAY = 86_400_000;

export function dayNumber(now: number): number {
  return Math.floor(now / DAY);
}

/** Today's cap, or null once the plan is over (warm). Before the start date the cap is 0. */
export function warmupCap(plan: WarmupPlan, now: number): number | null {
  const day = Math.floor((now - plan.start) / DAY);
  if (day < 0) return 0;
  return day < plan.schedule.length ? plan.schedule[day] : null;
}

/** Midnight UTC after `now`: when today's cap resets. */
export function nextDay(now: number): number {
  return (dayNumber(now) + 1) * DAY;
}

export interface WarmupProgress { day: number; cap: number | null; sent: number; remaining: number | null }

export function warmupProgress(plan: WarmupPlan, sentToday: number, now: number): WarmupProgress {
  const cap = warmupCap(plan, now);
  return { day: Math.floor((now - plan.start) / DAY), cap, sent: sentToday, remaining: cap === null ? null : Math.max(0, cap - sentToday) };
}
