// Retry arithmetic, pure: when a deferred delivery is tried next, and when it gives up.

/** Delay before attempt number `attempts + 1`, given `attempts` failures so far (≥ 1). The last interval repeats. */
export function retryDelay(schedule: readonly number[], attempts: number): number {
  if (schedule.length === 0) return 60_000;
  return schedule[Math.min(Math.max(attempts, 1), schedule.length) - 1];
}

export function expired(createdAt: number, maxAge: number, now: number): boolean {
  return now - createdAt >= maxAge;
}

/** The next attempt time, or null when the message would be past max_age by then. */
export function nextAttempt(schedule: readonly number[], attempts: number, createdAt: number, maxAge: number, now: number): number | null {
  if (expired(createdAt, maxAge, now)) return null;
  const at = now + retryDelay(schedule, attempts);
  // The last try happens at max_age rather than never: the operator's max_age is a promise.
  return Math.min(at, createdAt + maxAge);
}
