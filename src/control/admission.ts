// Admission for one (server, destination) pair: may one more delivery start now, and the pair's
// state once it has. One pure function for every place that keeps the state: the node's own
// shaper (scheduler/shaper.ts, no cluster), the primary of a node's workers
// (cluster/primary-store.ts) and, as Lua beside it, a cluster's Redis (cluster/scripts.ts GRANT
// and RELEASE, which must say the same: test/admission.test.ts runs random sequences through
// all three and compares every decision).
//
// The checks, in order: an adaptive-backoff suspension; concurrency (the configured limit
// scaled by the backoff factor, at least 1); the rate (GCRA with a burst, the interval
// stretched by the factor); the connection rate (for a delivery that opens a connection); the
// warm-up cap of the day. Taking a slot: one more in flight, the rate's next slot, the
// connection rate's, one more sent today.

export interface PairLimits {
  /** Deliveries in flight at once before the factor (0: no limit). */
  concurrency: number;
  /** Messages per `ratePeriod` ms before the factor (0: no rate limit). */
  rateCount: number;
  ratePeriod: number;
  /** Messages a rate limit lets through at once before spacing them out. */
  burst: number;
  /** Milliseconds between new connections (0: no limit). */
  connectInterval: number;
  /** Messages the server may take today (-1: no cap). */
  warmCap: number;
}

export interface AdmissionState {
  /** The rate limiter's theoretical arrival time of the next message (GCRA). */
  tat: number;
  /** The connection rate's. */
  ctat: number;
  /** 1 = the configured limits; lower after throttling replies. */
  factor: number;
  /** Suspended after repeated throttling until (0: not). */
  susp: number;
  inflight: number;
  /** Sent today, for the warm-up cap. */
  warmSent: number;
}

export type Refusal = 'suspended' | 'concurrency' | 'rate' | 'connection' | 'warm-up';
export type Decision = { ok: true } | { ok: false; kind: Refusal; waitMs: number; limit?: number };

// The stores keep times to the microsecond and the factor to four decimals, as text (Lua's
// '%.3f', toFixed here: both round the exact value, where x * 1000 would not at epoch
// milliseconds). Every backend rounds the same way, so they decide the same.
const round3 = (x: number) => Number(x.toFixed(3));
const round4 = (x: number) => Number(x.toFixed(4));

/** The rate's interval after backoff (0: none). */
export function rateInterval(l: Pick<PairLimits, 'rateCount' | 'ratePeriod'>, factor: number): number {
  return l.rateCount > 0 && l.ratePeriod > 0 ? l.ratePeriod / (l.rateCount * factor) : 0;
}

/** The concurrency after backoff (Infinity: none). */
export function concurrencyLimit(l: Pick<PairLimits, 'concurrency'>, factor: number): number {
  return l.concurrency > 0 ? Math.max(1, Math.floor(l.concurrency * factor)) : Infinity;
}

/** May one more delivery start now? `fresh`: it opens a new connection. */
export function decide(s: AdmissionState, l: PairLimits, now: number, fresh: boolean): Decision {
  if (s.susp > now) return { ok: false, kind: 'suspended', waitMs: s.susp - now };
  const conc = concurrencyLimit(l, s.factor);
  if (s.inflight >= conc) return { ok: false, kind: 'concurrency', waitMs: 250, limit: conc };
  const interval = rateInterval(l, s.factor);
  if (interval > 0) {
    const ready = Math.max(now, s.tat - (l.burst - 1) * interval);
    if (ready > now) return { ok: false, kind: 'rate', waitMs: ready - now };
  }
  if (fresh && l.connectInterval > 0 && s.ctat > now) return { ok: false, kind: 'connection', waitMs: s.ctat - now };
  if (l.warmCap >= 0 && s.warmSent >= l.warmCap) return { ok: false, kind: 'warm-up', waitMs: 0, limit: l.warmCap };
  return { ok: true };
}

/**
 * The state once a delivery has started. A start a little after its rate slot (timers, a round
 * trip to the store) keeps the slot's time, up to a quarter interval and at most 10 ms: the
 * rate is the rate, not the rate minus the lag. Later than that the limiter was idle and starts
 * from now (no credit for idleness).
 */
export function take(s: AdmissionState, l: PairLimits, now: number, fresh: boolean): AdmissionState {
  const tat = nextTat(s.tat, rateInterval(l, s.factor), now);
  const ctat = fresh && l.connectInterval > 0 ? round3(Math.max(s.ctat, now) + l.connectInterval) : s.ctat;
  return { ...s, tat, ctat, inflight: s.inflight + 1, warmSent: l.warmCap >= 0 ? s.warmSent + 1 : s.warmSent };
}

/** The rate limiter's state after a message goes at `now` (see take). */
export function nextTat(tat: number, interval: number, now: number): number {
  if (interval <= 0) return tat;
  const base = tat < now - Math.min(interval / 4, 10) ? now : tat;
  return round3(Math.max(base, tat) + interval);
}

/** decide, and take when it says yes. */
export function admit(s: AdmissionState, l: PairLimits, now: number, fresh: boolean): { decision: Decision; state: AdmissionState } {
  const decision = decide(s, l, now, fresh);
  return { decision, state: decision.ok ? take(s, l, now, fresh) : s };
}

/**
 * A backoff change from one delivery's reply, sent as a change and not a value: a node's climb
 * after a clean delivery must not undo another's cut or suspension made meanwhile (the lower
 * factor and the later suspension win).
 */
export interface BackoffChange { factor?: { down: number } | { up: number }; suspendedUntil?: number }

export function applyBackoff(s: AdmissionState, c: BackoffChange): AdmissionState {
  let factor = s.factor;
  if (c.factor) factor = round4(Math.max(0.001, 'down' in c.factor ? Math.min(factor, c.factor.down) : Math.min(1, factor + c.factor.up)));
  const susp = c.suspendedUntil && c.suspendedUntil > s.susp ? c.suspendedUntil : s.susp;
  return { ...s, factor, susp };
}
