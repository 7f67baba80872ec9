// Per-destination shaping at run time: the state behind the throttle arithmetic (one pair per
// server and destination), warm-up counters, and operators' named suspensions. The queue
// manager asks it which servers of a pool may take a destination's mail now; the delivery
// agent reserves a pair when it starts and reports the reply when it ends.
import { randomBytes } from 'node:crypto';
import type { Pool, Server } from '../balancing/pool.js';
import { eligible } from '../balancing/eligible.js';
import type { BackoffConfig, ShapingRule } from '../config/schema.js';
import type { Override, Spool, Suspension } from '../spool/spool.js';
import { parseRate } from '../config/units.js';
import { domainMatches } from '../routing/route.js';
import { afterReply, effectiveLimits, newPair, pairAdmits, pairSlots, rateTake, rateText, ruleKeyFor, type PairState, type Verdict } from './throttle.js';
import { dayNumber, nextDay, warmupCap, warmupProgress } from './warmup.js';

export interface ShaperConfig {
  shaping: Record<string, ShapingRule>;
  backoff: BackoffConfig;
}

/** A job's go-ahead: the servers it must not use now, or why and until when it waits. */
export type Plan = { ok: true; exclude: Set<string> } | { ok: false; reason: string; at: number; spacing: number };

export class Shaper {
  private pairs = new Map<string, PairState & { pool: string; server: string; domain: string }>();
  private sent = new Map<string, { day: number; n: number }>();
  private ended = 0;
  private susp: Suspension[];
  private over: Override[];

  constructor(private cfg: () => ShaperConfig, private spool: Spool) {
    this.susp = spool.suspensions();
    this.over = spool.overrides();
  }

  /** The shaping rule for a destination: an operator's override in force, else the config's. */
  private rule(domain: string, pool?: string, now = Date.now()): ShapingRule {
    const rules = this.cfg().shaping;
    const key = ruleKeyFor(domain, Object.keys(rules));
    const rule = key ? rules[key] : { burst: 1 };
    const o = pool === undefined ? undefined : this.override(pool, domain, now);
    if (!o) return rule;
    return { ...rule, ...(o.concurrency !== null ? { concurrency: o.concurrency } : {}), ...(o.rate !== null ? { rate: parseRate(o.rate) } : {}) };
  }

  override(pool: string, domain: string, now = Date.now()): Override | undefined {
    return this.over.find((o) => o.until > now && (o.pool === pool || o.pool === '*') && domainMatches(o.destination, domain));
  }

  private pair(pool: string, server: Server, domain: string) {
    const key = `${pool}/${server.name}|${domain}`;
    let p = this.pairs.get(key);
    if (!p) this.pairs.set(key, (p = { ...newPair(), pool, server: server.name, domain }));
    return p;
  }

  /** The operator's suspension covering (pool, destination), if any is in force. */
  suspension(pool: string, domain: string, now = Date.now()): Suspension | undefined {
    return this.susp.find((s) => s.until > now && (s.pool === pool || s.pool === '*') && domainMatches(s.destination, domain));
  }

  /** Warm-up: may this server take one more message today? */
  private warm(pool: string, server: Server, now: number): Verdict & { hold?: boolean } {
    if (!server.warmup) return { ok: true };
    const cap = warmupCap(server.warmup, now);
    if (cap === null) return { ok: true };
    if (this.sentToday(pool, server, now) < cap) return { ok: true };
    return { ok: false, reason: `warm-up cap of ${cap} for ${server.name} reached today`, at: nextDay(now), hold: server.warmup.overflow === 'hold' };
  }

  private sentToday(pool: string, server: Server, now: number): number {
    const key = `${pool}/${server.name}`;
    const day = dayNumber(now);
    let c = this.sent.get(key);
    if (!c || c.day !== day) this.sent.set(key, (c = { day, n: this.spool.warmupSent(key, day) }));
    return c.n;
  }

  /** Everything that decides whether `server` may start a delivery to `domain` now. */
  check(pool: Pool, server: Server, domain: string, now = Date.now(), needsConnection = true): Verdict & { hold?: boolean } {
    const w = this.warm(pool.name, server, now);
    if (!w.ok) return w;
    const rule = this.rule(domain, pool.name, now);
    const p = this.pair(pool.name, server, domain);
    return pairAdmits(p, effectiveLimits(rule, p.factor, Infinity), rule.burst, now, needsConnection);
  }

  /** Deliveries `server` can still start for `domain` now (Infinity when nothing limits it). */
  private slots(pool: Pool, server: Server, domain: string, now: number): number {
    const rule = this.rule(domain, pool.name, now);
    const p = this.pair(pool.name, server, domain);
    let n = pairSlots(p, effectiveLimits(rule, p.factor, Infinity), rule.burst, now);
    if (server.warmup) {
      const cap = warmupCap(server.warmup, now);
      if (cap !== null) n = Math.min(n, Math.max(0, cap - this.sentToday(pool.name, server, now)));
    }
    return n;
  }

  /**
   * For a queued job: which of the pool's candidate servers may not take it now, or why it
   * waits. `starting` jobs of the same destination were already let through in this pass and
   * have not reserved their slot yet: they count against the limits.
   */
  plan(pool: Pool, domain: string, now = Date.now(), starting = 0): Plan {
    const s = this.suspension(pool.name, domain, now);
    if (s) return { ok: false, reason: `suspension: ${pool.name} → ${s.destination} suspended by ${s.who} until ${new Date(s.until).toISOString()}: ${s.reason}`, at: s.until, spacing: 0 };
    const el = eligible(pool.servers, now, pool.cfg.slowstart);
    if (el.status !== 'ok') return { ok: true, exclude: new Set() }; // the delivery agent deals with down and busy
    const exclude = new Set<string>();
    let wait: { reason: string; at: number; spacing: number } | undefined;
    let spacing = Infinity;
    for (const i of el.indices) {
      const server = pool.servers[i];
      const v = this.check(pool, server, domain, now);
      if (v.ok) continue;
      const reason = `${v.hold || v.reason.startsWith('warm-up') ? 'warm-up' : 'throttle'}: ${v.reason} (${pool.name}/${server.name} → ${domain})`;
      if (v.hold) return { ok: false, reason, at: v.at, spacing: 0 };
      exclude.add(server.key);
      spacing = Math.min(spacing, v.spacing ?? 0);
      if (!wait || v.at < wait.at) wait = { reason, at: v.at, spacing: 0 };
    }
    // Jobs behind a rate limit are spread out over the time they need, not all due together.
    if (wait) wait.spacing = Number.isFinite(spacing) ? spacing / el.indices.length : 0;
    if (exclude.size === el.indices.length && wait) return { ok: false, ...wait };
    if (starting > 0) {
      let capacity = 0;
      let binding: { server: Server; interval: number } | undefined;
      for (const i of el.indices) {
        const server = pool.servers[i];
        if (exclude.has(server.key)) continue;
        capacity += this.slots(pool, server, domain, now);
        const rule = this.rule(domain, pool.name, now);
        const interval = effectiveLimits(rule, this.pair(pool.name, server, domain).factor, Infinity).interval;
        if (!binding || interval > binding.interval) binding = { server, interval };
      }
      if (starting >= capacity && binding) {
        const n = el.indices.length - exclude.size;
        const step = binding.interval > 0 ? binding.interval / n : 250;
        const what = binding.interval > 0 ? `rate limit ${rateText(binding.interval)}` : 'concurrency limit reached';
        return { ok: false, reason: `throttle: ${what} (${pool.name}/${binding.server.name} → ${domain})`, at: now + step, spacing: step };
      }
    }
    return { ok: true, exclude };
  }

  /** A delivery starts on (server, domain): count it against the limits. */
  begin(pool: string, server: Server, domain: string, newConnection: boolean, now = Date.now()): void {
    const rule = this.rule(domain, pool, now);
    const p = this.pair(pool, server, domain);
    const eff = effectiveLimits(rule, p.factor, Infinity);
    p.inflight++;
    p.tat = rateTake(p.tat, eff.interval, now);
    if (newConnection) p.connTat = rateTake(p.connTat, eff.connectInterval, now);
    if (server.warmup) {
      const n = this.sentToday(pool, server, now) + 1;
      this.sent.set(`${pool}/${server.name}`, { day: dayNumber(now), n });
    }
  }

  /** The delivery ended with this reply: adapt the pair, give back an unused warm-up slot. */
  end(pool: string, server: Server, domain: string, code: number | null, text: string, delivered: boolean, now = Date.now()): void {
    const key = `${pool}/${server.name}|${domain}`;
    const p = this.pairs.get(key);
    if (p) {
      const next = afterReply(p, code, text, this.cfg().backoff, now);
      Object.assign(p, next, { inflight: Math.max(0, p.inflight - 1) });
    }
    if (++this.ended % 1000 === 0) this.prune(now);
    if (server.warmup) {
      const k = `${pool}/${server.name}`;
      const c = this.sent.get(k);
      if (c && !delivered) c.n = Math.max(0, c.n - 1);
      if (c) this.spool.setWarmupSent(k, c.day, c.n);
    }
  }

  /**
   * Forget pairs that hold nothing a fresh pair would not: direct-to-MX sending meets many
   * destinations, and their state must not grow without bound.
   */
  private prune(now: number): void {
    for (const [key, p] of this.pairs) {
      if (p.inflight === 0 && p.factor >= 1 && p.suspendedUntil <= now && p.tat <= now && p.connTat <= now && p.strikes.length === 0) this.pairs.delete(key);
    }
  }

  /** Messages a connection may carry for this destination (shaping's messages_per_connection). */
  messagesPerConnection(domain: string): number | undefined {
    return this.rule(domain).messages_per_connection;
  }

  async suspend(s: Omit<Suspension, 'id' | 'created'>): Promise<Suspension> {
    const full = { ...s, id: randomBytes(4).toString('hex'), created: Date.now() };
    await this.spool.addSuspension(full);
    this.susp.push(full);
    return full;
  }

  async cancel(id: string): Promise<boolean> {
    this.susp = this.susp.filter((s) => s.id !== id);
    return this.spool.removeSuspension(id);
  }

  async addOverride(o: Omit<Override, 'id' | 'created'>): Promise<Override> {
    const full = { ...o, id: randomBytes(4).toString('hex'), created: Date.now() };
    await this.spool.addOverride(full);
    this.over.push(full);
    return full;
  }

  async cancelOverride(id: string): Promise<boolean> {
    this.over = this.over.filter((o) => o.id !== id);
    return this.spool.removeOverride(id);
  }

  overrides(now = Date.now()): Override[] {
    return this.over.filter((o) => o.until > now);
  }

  suspensions(now = Date.now()): Suspension[] {
    return this.susp.filter((s) => s.until > now);
  }

  /** Pairs whose limits differ from the configured ones, or that are busy: for the admin API. */
  throttles(now = Date.now()) {
    return [...this.pairs.values()]
      .filter((p) => p.factor < 1 || p.suspendedUntil > now || p.inflight > 0)
      .map((p) => {
        const rule = this.rule(p.domain, p.pool, now);
        const eff = effectiveLimits(rule, p.factor, Infinity);
        return {
          pool: p.pool,
          server: p.server,
          destination: p.domain,
          factor: +p.factor.toFixed(3),
          inflight: p.inflight,
          concurrency: rule.concurrency ? eff.concurrency : null,
          rate_per_minute: eff.interval ? +(60_000 / eff.interval).toFixed(2) : null,
          configured_rate_per_minute: rule.rate ? +((rule.rate.count * 60_000) / rule.rate.perMs).toFixed(2) : null,
          suspended_until: p.suspendedUntil > now ? new Date(p.suspendedUntil).toISOString() : null,
          last_throttle_reply: p.lastReply ?? null,
        };
      });
  }

  serverWarmup(pool: string, server: Server, now = Date.now()) {
    return server.warmup ? warmupProgress(server.warmup, this.sentToday(pool, server, now), now) : null;
  }

  warmupStatus(pools: Iterable<Pool>, now = Date.now()) {
    const out = [];
    for (const pool of pools) for (const s of pool.servers) if (s.warmup) out.push({ pool: pool.name, server: s.name, ...this.serverWarmup(pool.name, s, now)! });
    return out;
  }
}
