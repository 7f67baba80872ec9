// Health decisions as pure functions: active-check transitions (rise/fall, as HAProxy),
// passive outlier ejection from live traffic, and the slow-start weight ramp.

export interface HealthState {
  up: boolean;
  /** Consecutive good checks while down. */
  successes: number;
  /** Consecutive bad checks while up. */
  failures: number;
  /** When `up` last changed (ms since epoch). */
  since: number;
  lastError?: string;
}

export function initialHealth(): HealthState {
  // Servers start up, like HAProxy: traffic flows at once and the first failed checks
  // (fall of them) take a dead server out.
  // since = 0: up "from the start", so slow start does not throttle a fresh process.
  return { up: true, successes: 0, failures: 0, since: 0 };
}

export function nextHealth(s: HealthState, ok: boolean, rise: number, fall: number, now: number, error?: string): HealthState {
  if (ok) {
    if (s.up) return s.failures === 0 ? s : { ...s, failures: 0 };
    const successes = s.successes + 1;
    return successes >= rise ? { up: true, successes: 0, failures: 0, since: now } : { ...s, successes };
  }
  if (!s.up) return { ...s, successes: 0, lastError: error };
  const failures = s.failures + 1;
  return failures >= fall
    ? { up: false, successes: 0, failures: 0, since: now, lastError: error }
    : { ...s, failures, lastError: error };
}

export interface OutlierConfig { consecutive_failures: number; ejection: number; max_ejection: number }

export interface Ejection {
  consecutive: number;
  /** How many times in a row this server has been ejected; grows the ejection period. */
  count: number;
  until: number;
}

export const NO_EJECTION: Ejection = { consecutive: 0, count: 0, until: 0 };

/**
 * Passive outlier detection: `consecutive_failures` connect failures or timeouts in a row
 * eject the server for ejection × 2^(n-1), capped at max_ejection. A success resets the
 * streak; the growth resets once a server has served cleanly after its ejection ended.
 */
export function nextEjection(e: Ejection, ok: boolean, cfg: OutlierConfig, now: number): Ejection {
  if (ok) {
    if (e.consecutive === 0 && (e.count === 0 || now < e.until)) return e;
    return { consecutive: 0, count: now >= e.until ? 0 : e.count, until: e.until };
  }
  const consecutive = e.consecutive + 1;
  if (consecutive < cfg.consecutive_failures) return { ...e, consecutive };
  const count = e.count + 1;
  const period = Math.min(cfg.max_ejection, cfg.ejection * 2 ** (count - 1));
  return { consecutive: 0, count, until: now + period };
}

export function isEjected(e: Ejection, now: number): boolean {
  return e.until > now;
}

/**
 * Slow start: a server that came back takes a weight growing linearly from a tenth to all of
 * it over `slowstart` ms, so a cold server is not flooded by the whole backlog at once.
 */
export function slowstartWeight(weight: number, upSince: number, slowstart: number, now: number): number {
  if (slowstart <= 0 || weight <= 0) return weight;
  const elapsed = now - upSince;
  if (elapsed >= slowstart) return weight;
  return weight * Math.max(0.1, elapsed / slowstart);
}
