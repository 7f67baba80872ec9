// Throttle arithmetic for one (server or source, destination) pair: the shaping limits in
// force, a rate limiter, and adaptive backoff (multiplicative decrease on throttling replies,
// additive increase on clean deliveries, a suspension when throttling repeats). Pure
// functions over plain data; the Shaper holds the state and the clock.
import type { Rate } from '../config/units.js';
import { decide, nextTat, take, type AdmissionState, type PairLimits } from '../control/admission.js';
import { PROVIDER_BACKOFF_PATTERNS } from '../routing/providers.js';

export interface ShapeRule {
  concurrency?: number;
  rate?: Rate;
  /** Messages a rate limit lets through at once before spacing them out. */
  burst: number;
  messages_per_connection?: number;
  connect_rate?: Rate;
}

export interface BackoffPolicy {
  patterns: RegExp[];
  /** Factor applied to concurrency and rate on each throttling reply. */
  decrease: number;
  min_factor: number;
  /** Added back to the factor for each clean delivery. */
  increase: number;
  /** Throttling replies within `window` that suspend the pair for `suspend_for`. */
  suspend_after: number;
  window: number;
  suspend_for: number;
}

export interface PairState {
  inflight: number;
  /** Rate limiter: the theoretical arrival time of the next message (GCRA). */
  tat: number;
  connTat: number;
  /** 1 = the configured limits; lower after throttling replies. */
  factor: number;
  strikes: number[];
  suspendedUntil: number;
  lastReply?: string;
  /**
   * Where no concurrency is configured: the deliveries in flight when the destination first
   * pushed back, the base its factor cuts (nothing to halve otherwise). Gone once the factor
   * has climbed back to 1.
   */
  base?: number;
  /** A suspension ended: one delivery at a time until one succeeds. */
  probe?: boolean;
  /** When the factor was last cut. */
  lastCut?: number;
}

/**
 * Throttling replies within this time of the last cut do not cut again: they answer deliveries
 * that were in flight before it (a destination refusing 11 of 13 connections opened together
 * is pushing back once, not 11 times), as TCP cuts its window once per round trip.
 */
export const CUT_GUARD_MS = 1000;

export function newPair(): PairState {
  return { inflight: 0, tat: 0, connTat: 0, factor: 1, strikes: [], suspendedUntil: 0 };
}

/** The pair's limits in force: its factor over the configured concurrency, else over its observed base; 1 while probing. */
export function pairLimits(rule: ShapeRule, p: PairState): Effective {
  const eff = effectiveLimits(rule, p.factor, p.base ?? Infinity);
  return p.probe ? { ...eff, concurrency: 1 } : eff;
}

/** The built-in throttling replies: texts big receivers use when they want less, slower mail. */
export const BUILTIN_THROTTLE_PATTERNS: RegExp[] = [
  /try (again )?later/i,
  /rate.?limit/i,
  /too many (connections|messages|recipients|concurrent|sessions)/i,
  /\bTSS0\d\b/, // Yahoo: temporarily deferred due to unexpected volume or user complaints
  /\bS3150\b/, // Microsoft: sending IP temporarily rate limited
  /\b4\.7\.(0|28)\b.*(throttl|deferr|limit)/i,
  /throttl/i,
  /temporarily (deferred|rate limited|rejected)/i,
  /exceeded.*(rate|limit)/i,
  // The providers' own wording, each with its source (routing/providers.ts).
  ...PROVIDER_BACKOFF_PATTERNS,
];

/** Does this reply ask us to slow down? Only 421/450/451 count, as receivers use them so. */
export function isThrottleReply(code: number | null, text: string, extra: RegExp[]): boolean {
  if (code !== 421 && code !== 450 && code !== 451) return false;
  // Bounded input whatever the caller: the patterns backtrack, so their cost grows with the text.
  if (text.length > 4096) text = text.slice(0, 4096);
  return BUILTIN_THROTTLE_PATTERNS.some((p) => p.test(text)) || extra.some((p) => p.test(text));
}

export interface Effective {
  concurrency: number;
  /** Milliseconds between messages, or 0 for no rate limit. */
  interval: number;
  connectInterval: number;
}

/** The limits in force after backoff: both concurrency and rate scaled by the factor. */
export function effectiveLimits(rule: ShapeRule, factor: number, defaultConcurrency: number): Effective {
  const base = rule.concurrency ?? defaultConcurrency;
  return {
    concurrency: Math.max(1, Math.floor(base * factor)),
    interval: rule.rate ? rule.rate.perMs / (rule.rate.count * factor) : 0,
    connectInterval: rule.connect_rate ? rule.connect_rate.perMs / rule.connect_rate.count : 0,
  };
}

/** GCRA: when may the next message go, given the limiter's state? */
export function rateReadyAt(tat: number, interval: number, burst: number, now: number): number {
  if (interval <= 0) return now;
  return Math.max(now, tat - (burst - 1) * interval);
}

/** How many messages the limiter lets go at `now`, without waiting. */
export function rateTokens(tat: number, interval: number, burst: number, now: number): number {
  if (interval <= 0) return Infinity;
  return Math.max(0, burst - Math.ceil((Math.max(tat, now) - now) / interval));
}

/** How many more deliveries the pair can start right now (concurrency and rate). */
export function pairSlots(p: PairState, eff: Effective, burst: number, now: number): number {
  if (p.suspendedUntil > now) return 0;
  return Math.max(0, Math.min(eff.concurrency - p.inflight, rateTokens(p.tat, eff.interval, burst, now)));
}

/**
 * The pair as control/admission.ts reads it, with the limits already scaled by its factor
 * (`eff`), so the factor there is 1: the one admission function decides for the node's own
 * shaper as it does for the primary's store and (in Lua) Redis.
 */
export function asAdmission(p: PairState, eff: Effective, burst: number): { state: AdmissionState; limits: PairLimits } {
  return {
    state: { tat: p.tat, ctat: p.connTat, factor: 1, susp: p.suspendedUntil, inflight: p.inflight, warmSent: 0 },
    limits: { concurrency: Number.isFinite(eff.concurrency) ? eff.concurrency : 0, rateCount: eff.interval > 0 ? 1 : 0, ratePeriod: eff.interval, burst, connectInterval: eff.connectInterval, warmCap: -1 },
  };
}

/** Spend one token: the limiter's state after a message goes at `now`. */
export const rateTake = nextTat;

/** The pair once a delivery has started at `now` (one more in flight, the rate's and the connection rate's next slots). */
export function pairTake(p: PairState, eff: Effective, burst: number, now: number, newConnection: boolean): PairState {
  const { state, limits } = asAdmission(p, eff, burst);
  const next = take(state, limits, now, newConnection);
  return { ...p, inflight: next.inflight, tat: next.tat, connTat: next.ctat };
}

export type Verdict = { ok: true } | { ok: false; reason: string; at: number; spacing?: number };

/** May one more delivery start on this pair now? */
export function pairAdmits(p: PairState, eff: Effective, burst: number, now: number, needsConnection: boolean): Verdict {
  const { state, limits } = asAdmission(p, eff, burst);
  const d = decide(state, limits, now, needsConnection);
  if (d.ok) return d;
  if (d.kind === 'suspended') return { ok: false, reason: `suspended after repeated throttling (${p.lastReply ?? ''})`.trim(), at: p.suspendedUntil };
  if (d.kind === 'concurrency') return { ok: false, reason: `concurrency limit ${eff.concurrency} reached`, at: now + 250 };
  if (d.kind === 'rate') return { ok: false, reason: `rate limit ${rateText(eff.interval)}`, at: now + d.waitMs, spacing: eff.interval };
  return { ok: false, reason: `connection rate limit ${rateText(eff.connectInterval)}`, at: now + d.waitMs };
}

export function rateText(interval: number): string {
  const perMin = 60_000 / interval;
  if (perMin >= 600) return `${+(perMin / 60).toFixed(2)}/s`;
  return perMin >= 1 ? `${+perMin.toFixed(2)}/min` : `${+(perMin * 60).toFixed(2)}/hour`;
}

/** The pair after a reply: throttling cuts it down, a clean delivery lets it climb back. */
export function afterReply(p: PairState, code: number | null, text: string, policy: BackoffPolicy, now: number, rule?: Pick<ShapeRule, 'concurrency'>): PairState {
  if (isThrottleReply(code, text, policy.patterns)) {
    const lastReply = `${code} ${text}`.slice(0, 200);
    if (p.lastCut !== undefined && now - p.lastCut < CUT_GUARD_MS && now >= p.lastCut) return { ...p, lastReply };
    // `inflight` still counts the delivery that got this reply: the concurrency that drew it.
    const base = p.base ?? Math.max(1, p.inflight);
    // The lowest the factor goes: min_factor of a configured concurrency (its floor is the
    // operator's to set). Over a concurrency observed instead, it may be cut lower, down to one
    // delivery at a time (a destination that takes one connection at a time gets one).
    const floor = rule?.concurrency !== undefined ? policy.min_factor : Math.min(policy.min_factor, 1 / base);
    // A cut that can still help is tried first: only pushing back at the floor counts toward a
    // suspension (otherwise the climb after each cut, probing for the limit, would suspend a
    // destination that merely has one).
    const recent = p.strikes.filter((t) => now - t < policy.window);
    const strikes = p.factor <= floor * (1 + 1e-9) ? [...recent, now] : recent;
    const suspend = strikes.length >= policy.suspend_after;
    return {
      ...p,
      factor: Math.max(floor, p.factor * policy.decrease),
      base,
      lastCut: now,
      probe: suspend || p.probe,
      strikes: suspend ? [] : strikes,
      suspendedUntil: suspend ? now + policy.suspend_for : p.suspendedUntil,
      lastReply,
    };
  }
  if (code !== null && code >= 200 && code < 300 && (p.factor < 1 || p.probe || p.base !== undefined)) {
    const factor = Math.min(1, p.factor + policy.increase);
    return { ...p, factor, probe: false, base: factor >= 1 ? undefined : p.base };
  }
  // Any other answer in SMTP (a 550 for an unknown user, a 452 for a full mailbox) ends a probe:
  // the destination took the connection and did not push back. Only a 2xx climbs.
  if (p.probe && code !== null) return { ...p, probe: false };
  return p;
}

/** The shaping rule for a destination: exact domain, then `*.parent` patterns, then default. */
export function ruleKeyFor(domain: string, keys: string[]): string | undefined {
  const d = domain.toLowerCase();
  if (keys.includes(d)) return d;
  let best: string | undefined;
  for (const k of keys) {
    if (k.startsWith('*.') && d.endsWith(k.slice(1).toLowerCase()) && (!best || k.length > best.length)) best = k;
  }
  return best ?? (keys.includes('default') ? 'default' : undefined);
}
