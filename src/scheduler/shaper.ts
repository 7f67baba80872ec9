// Per-destination shaping at run time: the state behind the throttle arithmetic (one pair per
// server and destination), warm-up counters, and operators' named suspensions. The queue
// manager asks it which servers of a pool may take a destination's mail now; the delivery
// agent reserves a pair when it starts and reports the reply when it ends.
//
// On a cluster (`cluster:` in the config) this state is the node's own view, and each
// delivery on a limited pair also asks the shared limits (Redis) for its grant: one
// concurrency, one rate, one warm-up count and one backoff state for every node. Without the
// store the node applies its share of each limit (limit ÷ nodes last seen).
import { randomBytes } from 'node:crypto';
import type { Pool, Server } from '../balancing/pool.js';
import { eligible } from '../balancing/eligible.js';
import type { BackoffConfig, ShapingRule } from '../config/schema.js';
import { applyBackoff } from '../control/admission.js';
import type { ControlStore, Override, Suspension } from '../control/types.js';
import type { Spool } from '../spool/spool.js';
import { parseRate, perMinute } from '../config/units.js';
import { domainMatches } from '../routing/route.js';
import { afterReply, effectiveLimits, newPair, pairAdmits, pairLimits, pairSlots, pairTake, rateText, ruleKeyFor, type PairState, type Verdict } from './throttle.js';
import { dayNumber, nextDay, warmupCap, warmupProgress } from './warmup.js';
import type { Backoff, ControlLists, GrantReply, SharedLimits } from '../cluster/cluster.js';
import type { Ticket } from '../delivery/deliver.js';
import { shareOfRule, shareOfWarmCap } from '../cluster/share.js';

/** Rate-limit waits shorter than this are waited out inside the delivery (cluster grants). */
const SHORT_WAIT_MS = 250;

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
  /** Leases of deliveries started on this node's own share (Redis away), by lease: the pair. */
  private localLeases = new Map<string, string>();
  /** Warm-up counts as the cluster had them when the store went away, per `pool/server`. */
  private atLoss = new Map<string, { day: number; seen: number }>();

  constructor(private cfg: () => ShaperConfig, private spool: Spool, private shared?: SharedLimits & ControlStore & { control(): ControlLists }) {
    this.susp = spool.control.suspensions();
    this.over = spool.control.overrides();
  }

  /** The cluster's lists replace this node's (the store is where operators' state lives on a cluster). */
  useControl(lists: ControlLists): void {
    this.susp = lists.suspensions;
    this.over = lists.overrides;
  }

  /** The store went away: remember the warm-up counts it had, to share what is left of today's caps. */
  wentLocal(now = Date.now()): void {
    const day = dayNumber(now);
    for (const [key, c] of this.sent) if (c.day === day) this.atLoss.set(key, { day, seen: c.n });
  }

  /** The store is back: what this node sent on its own goes into the shared counts. */
  async wentShared(now = Date.now()): Promise<void> {
    const day = dayNumber(now);
    // Every count taken before the first await: a grant meanwhile sets a count to Redis's, without this node's own sends.
    const todo = [...this.atLoss]
      .filter(([, at]) => at.day === day)
      .map(([key, at]) => {
        const c = this.sent.get(key);
        return { key, seen: at.seen, since: c && c.day === day ? Math.max(0, c.n - at.seen) : 0 };
      });
    this.atLoss.clear();
    await this.mergeWarm(todo, day);
  }

  /** Redis came back without its data (nobody noticed it go): today's counts as this node knows them go back in. */
  async reseeded(now = Date.now()): Promise<void> {
    const day = dayNumber(now);
    await this.mergeWarm([...this.sent].filter(([, c]) => c.day === day).map(([key, c]) => ({ key, seen: c.n, since: 0 })), day);
  }

  private async mergeWarm(todo: { key: string; seen: number; since: number }[], day: number): Promise<void> {
    for (const t of todo) {
      const n = await this.shared?.resyncWarm(t.key, day, t.seen, t.since);
      const c = this.sent.get(t.key);
      if (n != null && c && c.day === day) c.n = Math.max(c.n, n);
    }
  }

  /** The shaping rule for a destination: an operator's override in force, else the config's. */
  private rule(domain: string, pool?: string, now = Date.now()): ShapingRule {
    const rules = this.cfg().shaping;
    const key = ruleKeyFor(domain, Object.keys(rules));
    const rule = key ? rules[key] : { burst: 1 };
    const o = pool === undefined ? undefined : this.override(pool, domain, now);
    const full = o ? { ...rule, ...(o.concurrency !== null ? { concurrency: o.concurrency } : {}), ...(o.rate !== null ? { rate: parseRate(o.rate) } : {}) } : rule;
    return this.shared && !this.shared.shared ? shareOfRule(full, this.shared.nodes) : full;
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
    const cap = this.capNow(pool, server, now);
    if (cap === null) return { ok: true };
    if (this.sentToday(pool, server, now) < cap) return { ok: true };
    return { ok: false, reason: `warm-up cap of ${cap} for ${server.name} reached today`, at: nextDay(now), hold: server.warmup.overflow === 'hold' };
  }

  /** Today's cap for this node: the plan's, or while off the cluster's store, this node's share of what was left. */
  private capNow(pool: string, server: Server, now: number): number | null {
    const cap = server.warmup ? warmupCap(server.warmup, now) : null;
    if (cap === null || !this.shared || this.shared.shared) return cap;
    const at = this.atLoss.get(`${pool}/${server.name}`);
    return shareOfWarmCap(cap, at && at.day === dayNumber(now) ? at.seen : 0, this.shared.nodes);
  }

  private sentToday(pool: string, server: Server, now: number): number {
    const key = `${pool}/${server.name}`;
    const day = dayNumber(now);
    let c = this.sent.get(key);
    if (!c || c.day !== day) this.sent.set(key, (c = { day, n: this.spool.control.warmupSent(key, day) }));
    return c.n;
  }

  /** Everything that decides whether `server` may start a delivery to `domain` now. */
  check(pool: Pool, server: Server, domain: string, now = Date.now(), needsConnection = true): Verdict & { hold?: boolean } {
    const w = this.warm(pool.name, server, now);
    if (!w.ok) return w;
    const rule = this.rule(domain, pool.name, now);
    const p = this.pair(pool.name, server, domain);
    return pairAdmits(p, pairLimits(rule, p), rule.burst, now, needsConnection);
  }

  /** Deliveries `server` can still start for `domain` now (Infinity when nothing limits it). */
  private slots(pool: Pool, server: Server, domain: string, now: number): number {
    const rule = this.rule(domain, pool.name, now);
    const p = this.pair(pool.name, server, domain);
    let n = pairSlots(p, pairLimits(rule, p), rule.burst, now);
    if (server.warmup) {
      const cap = this.capNow(pool.name, server, now);
      if (cap !== null) n = Math.min(n, Math.max(0, cap - this.sentToday(pool.name, server, now)));
    }
    return n;
  }

  /**
   * For a queued job: which of the pool's candidate servers may not take it now, or why it
   * waits. `starting` jobs of the same destination were already let through in this pass and
   * have not reserved their slot yet: they count against the limits.
   */
  plan(pool: Pool, domain: string, now = Date.now(), starting = 0, key = domain): Plan {
    // An operator's suspension names the domain or its site; every limit below is the key's.
    const s = this.suspension(pool.name, domain, now) ?? (key !== domain ? this.suspension(pool.name, key, now) : undefined);
    if (s) return { ok: false, reason: `suspension: ${pool.name} → ${s.destination} suspended by ${s.who} until ${new Date(s.until).toISOString()}: ${s.reason}`, at: s.until, spacing: 0 };
    const el = eligible(pool.servers, now, pool.cfg.slowstart);
    if (el.status !== 'ok') return { ok: true, exclude: new Set() }; // the delivery agent deals with down and busy
    const exclude = new Set<string>();
    let wait: { reason: string; at: number; spacing: number } | undefined;
    let spacing = Infinity;
    for (const i of el.indices) {
      const server = pool.servers[i];
      const v = this.check(pool, server, key, now);
      if (v.ok) continue;
      const reason = `${v.hold || v.reason.startsWith('warm-up') ? 'warm-up' : 'throttle'}: ${v.reason} (${pool.name}/${server.name} → ${key})`;
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
        capacity += this.slots(pool, server, key, now);
        const rule = this.rule(key, pool.name, now);
        const interval = pairLimits(rule, this.pair(pool.name, server, key)).interval;
        if (!binding || interval > binding.interval) binding = { server, interval };
      }
      if (starting >= capacity && binding) {
        const n = el.indices.length - exclude.size;
        const step = binding.interval > 0 ? binding.interval / n : 250;
        const what = binding.interval > 0 ? `rate limit ${rateText(binding.interval)}` : 'concurrency limit reached';
        return { ok: false, reason: `throttle: ${what} (${pool.name}/${binding.server.name} → ${key})`, at: now + step, spacing: step };
      }
    }
    return { ok: true, exclude };
  }

  /** A delivery starts on (server, domain): count it against the limits. Returns how to take it back. */
  begin(pool: string, server: Server, domain: string, newConnection: boolean, now = Date.now()): () => void {
    const rule = this.rule(domain, pool, now);
    const p = this.pair(pool, server, domain);
    const eff = pairLimits(rule, p);
    const before = { tat: p.tat, connTat: p.connTat };
    Object.assign(p, pairTake(p, eff, rule.burst, now, newConnection));
    const wkey = `${pool}/${server.name}`;
    if (server.warmup) {
      const n = this.sentToday(pool, server, now) + 1;
      this.sent.set(wkey, { day: dayNumber(now), n });
    }
    return () => {
      p.inflight = Math.max(0, p.inflight - 1);
      Object.assign(p, before);
      const c = this.sent.get(wkey);
      if (server.warmup && c) c.n = Math.max(0, c.n - 1);
    };
  }

  /**
   * The delivery agent's question for one server: may it take this destination's mail now?
   * Yes counts the delivery against the limits until `end`. On a cluster a limited pair also
   * needs the shared store's grant.
   */
  async reserve(pool: Pool, server: Server, domain: string, newConnection: boolean, parked?: string): Promise<(Verdict & { hold?: boolean }) & { ticket?: Ticket }> {
    let now = Date.now();
    const v = this.check(pool, server, domain, now, newConnection);
    if (!v.ok) return v;
    const undo = this.begin(pool.name, server, domain, newConnection, now);
    const rule = this.rule(domain, pool.name, now);
    const cap = server.warmup ? warmupCap(server.warmup, now) : null;
    const pairKey = `${pool.name}/${server.name}|${domain}`;
    if (!this.shared) return v;
    /** Admitted on this node's own share: its lease is made here, and joins the store when it comes back. */
    const local = (): Ticket => {
      if (parked) return { lease: parked, granted: false };
      if (!rule.concurrency) return { lease: null, granted: false };
      const lease = randomBytes(6).toString('hex');
      this.localLeases.set(lease, pairKey);
      return { lease, granted: false };
    };
    if (!this.shared.shared) return { ...v, ticket: local() };
    // A reused connection's lease goes with the delivery, to be parked again or given back at its end.
    if (!rule.concurrency && !rule.rate && !rule.connect_rate && cap === null) return { ...v, ticket: { lease: parked ?? null, granted: false } };
    const day = dayNumber(now);
    const ask = () =>
      this.shared!.grant({
        pair: pairKey,
        warm: cap === null ? null : { key: `${pool.name}/${server.name}`, day, cap },
        // The reused connection's lease is this delivery's slot: no second one.
        concurrency: parked ? undefined : rule.concurrency,
        rate: rule.rate,
        burst: rule.burst,
        connectInterval: effectiveLimits(rule, 1, Infinity).connectInterval,
        newConnection,
        now: Date.now(),
      });
    let g: GrantReply = await ask();
    // A rate limit's next slot a few milliseconds away (other nodes took the last one): wait
    // for it here. Going back through the queue would cost a spool write and a pass each
    // time, and the slot would be late, which at 30/s across three nodes loses a tenth of the rate.
    for (let i = 0; i < 5 && g.ok === false && g.kind === 'rate' && g.waitMs <= SHORT_WAIT_MS; i++) {
      await new Promise((r) => setTimeout(r, Math.max(1, g.ok === false ? g.waitMs : 1)));
      g = await ask();
    }
    if (g.ok === 'unavailable') {
      // The store went away meanwhile: this node's share decides, as for every delivery from now on.
      undo();
      now = Date.now();
      const verdict = this.check(pool, server, domain, now, newConnection);
      if (!verdict.ok) return verdict;
      this.begin(pool.name, server, domain, newConnection, now);
      return { ...verdict, ticket: local() };
    }
    const p = this.pair(pool.name, server, domain);
    p.factor = Math.min(1, Math.max(0, g.factor || 1));
    // Another node's suspension ends here too with one probe delivery.
    if (g.suspendedUntil > p.suspendedUntil) p.probe = true;
    p.suspendedUntil = Math.max(p.suspendedUntil, g.suspendedUntil);
    if (g.warmSent !== null) {
      const c = this.sent.get(`${pool.name}/${server.name}`);
      if (c && c.day === day) c.n = g.warmSent;
    }
    if (g.ok) return { ...v, ticket: { lease: parked ?? g.lease, granted: true } };
    undo();
    if (g.warmSent !== null) {
      // The count the store gave already is the cluster's, without this delivery.
      const c = this.sent.get(`${pool.name}/${server.name}`);
      if (c && c.day === day) c.n = g.warmSent;
    }
    const where = `(${pool.name}/${server.name} → ${domain})`;
    if (g.kind === 'warm-up') return { ok: false, reason: `warm-up cap of ${cap} for ${server.name} reached today (cluster)`, at: nextDay(now), hold: server.warmup!.overflow === 'hold' };
    if (g.kind === 'suspended') return { ok: false, reason: `suspended after repeated throttling (cluster) ${where}`, at: now + g.waitMs };
    if (g.kind === 'rate') return { ok: false, reason: `rate limit ${rateText(pairLimits(rule, p).interval)} (cluster)`, at: now + Math.max(1, g.waitMs), spacing: pairLimits(rule, p).interval };
    return { ok: false, reason: g.kind === 'connection' ? 'connection rate limit (cluster)' : g.reason, at: now + Math.max(1, g.waitMs) };
  }

  /**
   * The delivery ended with this reply: adapt the pair, give back an unused warm-up slot.
   * `keep`: its connection stays open for the next message to the destination; on a cluster
   * the delivery's lease (its `ticket`) then stays with the connection (returned, to be given
   * back by `releaseParked` when the connection closes).
   */
  end(pool: string, server: Server, domain: string, code: number | null, text: string, delivered: boolean, keep = false, ticket?: Ticket, now = Date.now()): string | undefined {
    const key = `${pool}/${server.name}|${domain}`;
    const p = this.pairs.get(key);
    let backoff: Backoff | null = null;
    if (p) {
      const next = afterReply(p, code, text, this.cfg().backoff, now, this.rule(domain, pool, now));
      // Sent as a change, not a value: another node's cut meanwhile must not be undone by this one's climb.
      if (next.factor !== p.factor || next.suspendedUntil !== p.suspendedUntil) backoff = { factor: next.factor < p.factor ? { down: next.factor } : next.factor > p.factor ? { up: next.factor - p.factor } : null, suspendedUntil: next.suspendedUntil };
      // The change applied as every store applies it (control/admission.ts).
      const applied = backoff ? applyBackoff({ tat: 0, ctat: 0, inflight: 0, warmSent: 0, factor: p.factor, susp: p.suspendedUntil }, { factor: backoff.factor ?? undefined, suspendedUntil: backoff.suspendedUntil }) : null;
      Object.assign(p, next, { inflight: Math.max(0, p.inflight - 1) }, applied ? { factor: applied.factor, suspendedUntil: applied.susp } : {});
    }
    if (++this.ended % 1000 === 0) this.prune(now);
    const k = `${pool}/${server.name}`;
    const c = server.warmup ? this.sent.get(k) : undefined;
    if (server.warmup) {
      if (c && !delivered) c.n = Math.max(0, c.n - 1);
      if (c) this.spool.control.setWarmupSent(k, c.day, c.n);
    }
    if (!this.shared) return undefined;
    if (ticket?.lease) this.localLeases.delete(ticket.lease);
    const park = keep && ticket?.lease && this.shared.shared ? ticket.lease : undefined;
    if (ticket || backoff) this.shared.release(key, park ? null : ticket?.lease ?? null, c ? { key: k, day: c.day } : null, !!c && !delivered && !!ticket?.granted, backoff);
    return park;
  }

  /** The store is back: deliveries that started on this node's own share take their leases there. */
  adoptLocal(): [string, string][] {
    return [...this.localLeases].map(([lease, pair]) => [pair, lease]);
  }

  /** An idle connection holding a parked lease closed: the slot goes back to the cluster. */
  releaseParked(pool: string, server: Server, domain: string, lease: string): void {
    this.shared?.release(`${pool}/${server.name}|${domain}`, lease, null, false, null);
  }

  /**
   * Forget pairs that hold nothing a fresh pair would not: direct-to-MX sending meets many
   * destinations, and their state must not grow without bound.
   */
  private prune(now: number): void {
    for (const [key, p] of this.pairs) {
      if (p.inflight === 0 && p.factor >= 1 && !p.probe && p.base === undefined && p.suspendedUntil <= now && p.tat <= now && p.connTat <= now && p.strikes.length === 0) this.pairs.delete(key);
    }
  }

  /** Does a concurrency limit apply to this destination (configured or an override)? */
  concurrencyLimited(domain: string): boolean {
    return this.rule(domain).concurrency !== undefined || this.over.some((o) => o.concurrency !== null && domainMatches(o.destination, domain));
  }

  /** Messages a connection may carry for this destination (shaping's messages_per_connection). */
  messagesPerConnection(domain: string): number | undefined {
    return this.rule(domain).messages_per_connection;
  }

  // Where suspensions and overrides are kept (control/types.ts): on a cluster or under workers the
  // shared store (every node follows them; a change it cannot take now is refused with
  // ClusterUnavailableError, not kept on one node where the others would never see it), else
  // the node's spool. Each operation is written once, here.
  store(): ControlStore {
    return this.shared ?? this.spool.control;
  }

  async suspend(s: Omit<Suspension, 'id' | 'created'>): Promise<Suspension> {
    const full = { ...s, id: randomBytes(4).toString('hex'), created: Date.now() };
    await this.store().putSuspension(full);
    this.susp = [...this.susp, full];
    return full;
  }

  async cancel(id: string): Promise<boolean> {
    if (!this.susp.some((s) => s.id === id)) return false;
    await this.store().removeSuspension(id);
    this.susp = this.susp.filter((s) => s.id !== id);
    return true;
  }

  async addOverride(o: Omit<Override, 'id' | 'created'>): Promise<Override> {
    const full = { ...o, id: randomBytes(4).toString('hex'), created: Date.now() };
    await this.store().putOverride(full);
    this.over = [...this.over, full];
    return full;
  }

  async cancelOverride(id: string): Promise<boolean> {
    if (!this.over.some((o) => o.id === id)) return false;
    await this.store().removeOverride(id);
    this.over = this.over.filter((o) => o.id !== id);
    return true;
  }

  /** Every suspension and override this node holds, lapsed or not: what it seeds an empty store with. */
  ownLists(): { suspensions: Suspension[]; overrides: Override[] } {
    return { suspensions: this.susp, overrides: this.over };
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
        const eff = pairLimits(rule, p);
        return {
          pool: p.pool,
          server: p.server,
          destination: p.domain,
          factor: +p.factor.toFixed(3),
          inflight: p.inflight,
          concurrency: rule.concurrency || p.base !== undefined || p.probe ? eff.concurrency : null,
          rate_per_minute: eff.interval ? +(60_000 / eff.interval).toFixed(2) : null,
          configured_rate_per_minute: rule.rate ? perMinute(rule.rate) : null,
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
