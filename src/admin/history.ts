// The dashboard's recent past: a bounded in-memory ring of samples (the last hour at 10 s
// resolution by default) and of marks on the time axis (server state changes, admin actions,
// throttles, suspensions). A timer (unref'd, stopped on shutdown) reads what already exists:
// the Prometheus counters the data path increments anyway, the spool's per-destination
// counters, the shaper's state and the gateway's health history. Nothing is added to the
// per-message path. One destination's page is destination-view.ts.
//
// Under `workers: N` the primary samples (it serves the dashboard) but the relay numbers are
// the workers': each shard's queue and counters. The primary then asks every shard for a
// compact reading of them at each step (GET /api/history/relay, `relayReading` below: counter
// totals, queue per pool, its largest destinations, throttles and suspensions; bounded in
// size), with the fan-out's 2 s timeout, and merges them into one sample. One request per
// shard per step, on the sampler's own timer (a step still waiting is not started twice),
// so the dashboard's reads never wait for a shard; a shard that does not answer is missing
// from that step only. Counters are diffed per shard, so a restarted worker's counters
// starting again from zero are not lost or counted twice.
import type { Metrics } from './metrics.js';
import type { Pool } from '../balancing/pool.js';
import type { Relay } from '../runtime/relay.js';
import type { Override, Suspension } from '../control/types.js';
import { mergeThrottles, unionById, type ThrottleView } from './fanout.js';
import { destinationView, type DestinationView } from './destination-view.js';
export { destinationView, lastReplies, type DestinationView } from './destination-view.js';

export const DEFAULT_STEP_MS = 10_000;
export const WINDOW_MS = 3_600_000;
/** Destinations kept by name in each sample (the largest queues). */
export const TOP_DESTINATIONS = 20;
/** Destinations looked at for a pool's oldest message (one index seek each, as the queue metrics do). */
const OLDEST_AMONG = 200;
/** Destinations /api/history answers with (the sample's largest, then the window's): bounds the answer however they churn. */
const SNAPSHOT_DESTINATIONS = 50;
const MAX_MARKS = 1000;
/** More new throttled pairs than this in one step become a single mark. */
const THROTTLE_MARKS_PER_STEP = 20;

/** The sampling step: SMTPLB_HISTORY_STEP_MS (100 ms to 10 min), else 10 s. */
export function historyStep(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.SMTPLB_HISTORY_STEP_MS);
  return Number.isFinite(v) && v >= 100 && v <= 600_000 ? Math.round(v) : DEFAULT_STEP_MS;
}

/** A fixed-size ring: pushing past capacity drops the oldest. */
export class Ring<T> {
  private items: T[] = [];
  private head = 0;

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError('ring capacity must be at least 1');
  }

  get length(): number {
    return this.items.length;
  }

  push(x: T): void {
    if (this.items.length < this.capacity) this.items.push(x);
    else {
      this.items[this.head] = x;
      this.head = (this.head + 1) % this.capacity;
    }
  }

  /** Oldest first. */
  toArray(): T[] {
    return this.head === 0 ? this.items.slice() : [...this.items.slice(this.head), ...this.items.slice(0, this.head)];
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

/** Counts over one step for one pool, and its queue at the step's end. */
export interface PoolSample {
  /** Recipients delivered (final). */
  delivered: number;
  /** Delivery attempts answered with a temporary failure (4xx). */
  deferred: number;
  /** Recipients bounced (5xx, or expired in the queue). */
  bounced: number;
  /** Delivery attempts that got no reply (connection refused, timeout, reset). */
  no_reply: number;
  /** Recipients in the queue (waiting, held or failed). */
  queued: number;
  /** Age of the oldest waiting message, seconds (among its largest destinations); null when none waits. */
  oldest: number | null;
}

export interface Sample {
  /** End of the step, ms since the epoch. */
  t: number;
  /** Length of the step, ms (timers drift; rates divide by this). */
  dt: number;
  pools: Record<string, PoolSample>;
  /** Failed outcomes over the step by reply class, all pools (smtplb_outcomes_total). */
  classes?: Record<string, number>;
  /** The largest destinations now. */
  destinations: { pool: string; destination: string; queued: number; oldest: number }[];
}

export type MarkKind = 'down' | 'up' | 'ejected' | 'drain' | 'enable' | 'disabled' | 'weight' | 'throttle' | 'throttle-end' | 'suspend' | 'suspend-end' | 'override' | 'override-end';

export interface Mark {
  at: number;
  kind: MarkKind | string;
  pool: string;
  server?: string;
  destination?: string;
  text: string;
}

const SERIES = ['delivered', 'deferred', 'bounced', 'no_reply', 'queued', 'oldest'] as const;

/** What /api/history answers: columns, ready for a chart (nulls where a pool or destination had no value). */
export interface HistorySnapshot {
  step_ms: number;
  window_ms: number;
  now: number;
  t: number[];
  dt: number[];
  pools: Record<string, Record<(typeof SERIES)[number], (number | null)[]>>;
  destinations: { pool: string; destination: string; queued: (number | null)[]; oldest: (number | null)[] }[];
  /** Failed outcomes per step by reply class (0 where a step had none of that class). */
  classes: Record<string, (number | null)[]>;
  marks: Mark[];
}

/** The ring of samples and marks. Pure: time comes in with the data. */
export class History {
  readonly samples: Ring<Sample>;
  readonly marks: Ring<Mark>;

  constructor(readonly stepMs = DEFAULT_STEP_MS, readonly windowMs = WINDOW_MS) {
    this.samples = new Ring(Math.min(3600, Math.max(2, Math.ceil(windowMs / stepMs))));
    this.marks = new Ring(MAX_MARKS);
  }

  add(s: Sample): void {
    this.samples.push(s);
  }

  mark(m: Mark): void {
    this.marks.push(m);
  }

  snapshot(now: number): HistorySnapshot {
    const from = now - this.windowMs;
    const samples = this.samples.toArray().filter((s) => s.t >= from);
    const n = samples.length;
    const pools: HistorySnapshot['pools'] = {};
    // The largest destinations change over an hour: the ones that were largest last, then at their peak.
    const seen = new Map<string, { last: number; at: number; peak: number }>();
    samples.forEach((s, i) => {
      for (const [name, p] of Object.entries(s.pools)) {
        let cols = pools[name];
        if (!cols) pools[name] = cols = Object.fromEntries(SERIES.map((k) => [k, new Array<number | null>(n).fill(null)])) as HistorySnapshot['pools'][string];
        for (const k of SERIES) cols[k][i] = p[k];
      }
      for (const d of s.destinations) {
        const key = `${d.pool}|${d.destination}`;
        const e = seen.get(key);
        if (!e) seen.set(key, { last: d.queued, at: i, peak: d.queued });
        else Object.assign(e, { last: d.queued, at: i, peak: Math.max(e.peak, d.queued) });
      }
    });
    const keep = new Set([...seen].sort(([, a], [, b]) => b.at - a.at || b.last - a.last || b.peak - a.peak).slice(0, SNAPSHOT_DESTINATIONS).map(([k]) => k));
    const dests = new Map<string, HistorySnapshot['destinations'][number]>();
    samples.forEach((s, i) => {
      for (const d of s.destinations) {
        const key = `${d.pool}|${d.destination}`;
        if (!keep.has(key)) continue;
        let cols = dests.get(key);
        if (!cols) dests.set(key, (cols = { pool: d.pool, destination: d.destination, queued: new Array(n).fill(null), oldest: new Array(n).fill(null) }));
        cols.queued[i] = d.queued;
        cols.oldest[i] = d.oldest;
      }
    });
    const classes: HistorySnapshot['classes'] = {};
    samples.forEach((s, i) => {
      for (const [k, v] of Object.entries(s.classes ?? {})) (classes[k] ??= samples.map((x) => (x.classes ? 0 : null)))[i] = v;
    });
    return {
      step_ms: this.stepMs,
      window_ms: this.windowMs,
      now,
      t: samples.map((s) => s.t),
      dt: samples.map((s) => s.dt),
      pools,
      destinations: [...dests.values()],
      classes,
      marks: this.marks.toArray().filter((m) => m.at >= from).sort((a, b) => a.at - b.at),
    };
  }
}

/** Counter totals per pool: [delivered, deferred, bounced, no_reply]. */
export type CounterTotals = Map<string, [number, number, number, number]>;

/** Read the counters the relay increments anyway (recipients' final outcomes, attempts by reply class). */
export async function readCounters(metrics: Pick<Metrics, 'finalOutcomes' | 'deliveries'>): Promise<CounterTotals> {
  const out: CounterTotals = new Map();
  const row = (pool: string) => {
    let r = out.get(pool);
    if (!r) out.set(pool, (r = [0, 0, 0, 0]));
    return r;
  };
  for (const v of (await metrics.finalOutcomes.get()).values) {
    const pool = String(v.labels.pool ?? '');
    if (v.labels.outcome === 'delivered') row(pool)[0] += v.value;
    else row(pool)[2] += v.value; // bounced, expired
  }
  for (const v of (await metrics.deliveries.get()).values) {
    const pool = String(v.labels.pool ?? '');
    if (v.labels.result === '4xx') row(pool)[1] += v.value;
    else if (v.labels.result === 'error') row(pool)[3] += v.value;
  }
  return out;
}

/** smtplb_outcomes_total summed over pools, by class. */
export async function readClasses(metrics: Partial<Pick<Metrics, 'outcomes'>>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of metrics.outcomes ? (await metrics.outcomes.get()).values : []) {
    const k = String(v.labels.class ?? 'other');
    out[k] = (out[k] ?? 0) + v.value;
  }
  return out;
}

/** Per class since `prev` (a counter that went backwards counts from zero). */
export function classDeltas(prev: Record<string, number>, cur: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(cur)) out[k] = v >= (prev[k] ?? 0) ? v - (prev[k] ?? 0) : v;
  return out;
}

/** Counts since `prev` (a counter that went backwards counts from zero). */
export function counterDeltas(prev: CounterTotals, cur: CounterTotals): CounterTotals {
  const out: CounterTotals = new Map();
  for (const [pool, c] of cur) {
    const p = prev.get(pool) ?? [0, 0, 0, 0];
    out.set(pool, c.map((v, i) => (v >= p[i] ? v - p[i] : v)) as [number, number, number, number]);
  }
  return out;
}

/** A gateway's health and admin history entry (Gateway.history). */
export interface GatewayEvent {
  at: string;
  pool: string;
  server: string;
  event: string;
  detail: string | null;
}

export interface HistorySources {
  metrics: Pick<Metrics, 'finalOutcomes' | 'deliveries'> & Partial<Pick<Metrics, 'outcomes'>>;
  relay(): Relay | undefined;
  pools(): Map<string, Pool>;
  /** The gateway's recent health and admin changes (bounded, newest last). */
  events(): readonly GatewayEvent[];
  /** The delivery log file, when the config names one (the destination page reads its tail). */
  deliveryLog(): string | undefined;
}

/** A relay's numbers for one history step (what a shard sends the primary's sampler). */
export interface RelayReading {
  /** Counter totals per pool: [delivered, deferred, bounced, no_reply]. */
  counters: Record<string, [number, number, number, number]>;
  /** smtplb_outcomes_total by class (diffed per shard like `counters`). */
  classes?: Record<string, number>;
  /** Per pool: recipients in the queue (waiting, held, failed), and its oldest waiting message (ms since the epoch, among its largest destinations). */
  pools: Record<string, { queued: number; oldest: number | null }>;
  /** The largest destinations (oldest: ms since the epoch). */
  destinations: { pool: string; destination: string; queued: number; oldest: number }[];
  /** Pairs in adaptive backoff (below full speed or suspended). */
  throttles: ThrottleView[];
  suspensions: Suspension[];
  overrides: Override[];
}

/** Destinations a shard's reading names (the primary keeps TOP_DESTINATIONS of their merge). */
const READING_DESTINATIONS = 50;

/** One relay's reading now: from counters and the spool's per-destination counters, never a scan. */
export async function relayReading(relay: Relay, metrics: HistorySources['metrics'], now = Date.now()): Promise<RelayReading> {
  const counters: RelayReading['counters'] = {};
  for (const [pool, c] of await readCounters(metrics)) counters[pool] = c;
  const pools: RelayReading['pools'] = {};
  const pool = (name: string) => (pools[name] ??= { queued: 0, oldest: null });
  for (const d of relay.spool.index.destinationSummaries()) pool(d.pool).queued += d.queued + d.held + d.failed;
  const { top } = relay.spool.view.byDestination(OLDEST_AMONG);
  for (const d of top) {
    const p = pool(d.pool);
    if (p.oldest === null || d.oldest < p.oldest) p.oldest = d.oldest;
  }
  return {
    counters,
    classes: await readClasses(metrics),
    pools,
    destinations: top.slice(0, READING_DESTINATIONS).map((d) => ({ pool: d.pool, destination: d.domain, queued: d.queued, oldest: d.oldest })),
    throttles: relay.shaper.throttles(now).filter((t) => t.factor < 1 || t.suspended_until),
    suspensions: relay.shaper.suspensions(now),
    overrides: relay.shaper.overrides(now),
  };
}

/** Several shards' readings as one (counters aside: those are diffed per shard). */
export function mergeReadings(readings: Omit<RelayReading, 'counters'>[]): Omit<RelayReading, 'counters'> {
  const pools: RelayReading['pools'] = {};
  const dests = new Map<string, RelayReading['destinations'][number]>();
  for (const r of readings) {
    for (const [name, p] of Object.entries(r.pools ?? {})) {
      const q = (pools[name] ??= { queued: 0, oldest: null });
      q.queued += p.queued;
      if (p.oldest !== null && (q.oldest === null || p.oldest < q.oldest)) q.oldest = p.oldest;
    }
    for (const d of r.destinations ?? []) {
      const key = `${d.pool}|${d.destination}`;
      const e = dests.get(key);
      if (!e) dests.set(key, { ...d });
      else {
        e.queued += d.queued;
        e.oldest = Math.min(e.oldest, d.oldest);
      }
    }
  }
  return {
    pools,
    destinations: [...dests.values()].sort((a, b) => b.queued - a.queued),
    throttles: mergeThrottles(readings.map((r) => r.throttles)),
    suspensions: unionById(readings.map((r) => r.suspensions)),
    overrides: unionById(readings.map((r) => r.overrides)),
  };
}

/** The shards' readings for one step; null when there are no shards (the local relay, if any, is read). */
export type ShardReader = () => Promise<{ shard: number; reading: RelayReading }[] | null>;

/** Samples every `stepMs` into a History; marks from state changes. */
export class HistorySampler {
  readonly history: History;
  private timer?: NodeJS.Timeout;
  private prev: CounterTotals = new Map();
  /** Under workers: each shard's counter totals at the last step it answered. */
  private prevByShard = new Map<number, CounterTotals>();
  private prevClasses: Record<string, number> = {};
  private prevClassesByShard = new Map<number, Record<string, number>>();
  private shards?: ShardReader;
  /** Under workers: the suspensions and overrides of the last step's readings (for the marks). */
  private remoteControls?: { suspensions: Suspension[]; overrides: Override[] };
  private last = Date.now();
  private busy = false;
  private seenEvents = new WeakSet<object>();
  private throttled = new Map<string, { pool: string; server: string; destination: string }>();
  private suspensions = new Map<string, { pool: string; destination: string; until: number; kind: 'suspend' | 'override' }>();

  constructor(private src: HistorySources, readonly stepMs = historyStep()) {
    this.history = new History(stepMs);
  }

  start(): void {
    if (this.timer) return;
    this.last = Date.now();
    // A failed sample (the spool closing under it) is skipped; the next step tries again.
    this.timer = setInterval(() => void this.tick().catch(() => {}), this.stepMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Under workers (the primary): read the relay numbers from the shards (the admin server attaches its fan-out). */
  attachShards(read: ShardReader): void {
    this.shards = read;
  }

  /** The sampling timer while started (undefined when stopped): it must not keep the process alive. */
  get timerHandle(): NodeJS.Timeout | undefined {
    return this.timer;
  }

  /** One sample now (the timer calls this; tests may too). */
  async tick(now = Date.now()): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const remote = this.shards ? await this.shards() : null;
      const dt = Math.max(1, now - this.last);
      this.last = now;
      const pools: Record<string, PoolSample> = {};
      const pool = (name: string) => (pools[name] ??= { delivered: 0, deferred: 0, bounced: 0, no_reply: 0, queued: 0, oldest: null });
      for (const name of this.src.pools().keys()) pool(name);
      const addDeltas = (deltas: CounterTotals) => {
        for (const [name, [d, f, b, e]] of deltas) {
          const p = pool(name);
          p.delivered += d;
          p.deferred += f;
          p.bounced += b;
          p.no_reply += e;
        }
      };
      let reading: Omit<RelayReading, 'counters'> | undefined;
      const classes: Record<string, number> = {};
      const addClasses = (d: Record<string, number>) => {
        for (const [k, v] of Object.entries(d)) classes[k] = (classes[k] ?? 0) + v;
      };
      if (remote) {
        for (const { shard, reading: r } of remote) {
          const cur: CounterTotals = new Map(Object.entries(r.counters ?? {}));
          addDeltas(counterDeltas(this.prevByShard.get(shard) ?? new Map(), cur));
          this.prevByShard.set(shard, cur);
          addClasses(classDeltas(this.prevClassesByShard.get(shard) ?? {}, r.classes ?? {}));
          this.prevClassesByShard.set(shard, r.classes ?? {});
        }
        reading = mergeReadings(remote.map((x) => x.reading));
        this.remoteControls = { suspensions: reading.suspensions, overrides: reading.overrides };
      } else {
        const cur = await readCounters(this.src.metrics);
        addDeltas(counterDeltas(this.prev, cur));
        this.prev = cur;
        const curClasses = await readClasses(this.src.metrics);
        addClasses(classDeltas(this.prevClasses, curClasses));
        this.prevClasses = curClasses;
        const relay = this.src.relay();
        if (relay) reading = await relayReading(relay, this.src.metrics, now);
      }
      let destinations: Sample['destinations'] = [];
      if (reading) {
        const age = (t: number) => Math.max(0, Math.round((now - t) / 1000));
        for (const [name, p] of Object.entries(reading.pools)) Object.assign(pool(name), { queued: p.queued, oldest: p.oldest === null ? null : age(p.oldest) });
        destinations = reading.destinations.slice(0, TOP_DESTINATIONS).map((d) => ({ pool: d.pool, destination: d.destination, queued: d.queued, oldest: age(d.oldest) }));
        this.throttleMarks(reading.throttles, now);
      }
      this.collectMarks(now);
      this.history.add({ t: now, dt, pools, classes, destinations });
    } finally {
      this.busy = false;
    }
  }

  /** The operators' suspensions and overrides now: the local relay's, or under workers the shards' at the last step. */
  private controls(now: number): { suspensions: Suspension[]; overrides: Override[] } | undefined {
    const relay = this.src.relay();
    if (relay) return { suspensions: relay.shaper.suspensions(now), overrides: relay.shaper.overrides(now) };
    return this.remoteControls && { suspensions: this.remoteControls.suspensions.filter((s) => s.until > now), overrides: this.remoteControls.overrides.filter((o) => o.until > now) };
  }

  /** Marks from the gateway's health history and the operators' suspensions (cheap: also run on every read). */
  collectMarks(now = Date.now()): void {
    const from = now - this.history.windowMs;
    for (const e of this.src.events()) {
      if (this.seenEvents.has(e)) continue;
      this.seenEvents.add(e);
      const at = Date.parse(e.at);
      if (!(at >= from)) continue;
      const verb = { up: 'is UP', down: 'is DOWN', ejected: 'ejected', drain: 'drained', enable: 'enabled', disabled: 'disabled', weight: 'weight changed' }[e.event] ?? e.event;
      this.history.mark({ at, kind: e.event, pool: e.pool, server: e.server, text: `${e.pool}/${e.server} ${verb}${e.detail ? `: ${e.detail}` : ''}` });
    }
    const controls = this.controls(now);
    if (!controls) return;
    const current = new Map<string, { pool: string; destination: string; until: number; kind: 'suspend' | 'override'; created: number; text: string }>();
    for (const s of controls.suspensions) current.set(`s:${s.id}`, { ...s, kind: 'suspend', text: `${s.pool} → ${s.destination} suspended by ${s.who}: ${s.reason}` });
    for (const o of controls.overrides) {
      const limits = [o.rate ? `rate ${o.rate}` : '', o.concurrency ? `concurrency ${o.concurrency}` : ''].filter(Boolean).join(', ');
      current.set(`o:${o.id}`, { ...o, kind: 'override', text: `${o.pool} → ${o.destination} override ${limits} by ${o.who}: ${o.reason}` });
    }
    for (const [id, s] of current) {
      if (this.suspensions.has(id)) continue;
      this.suspensions.set(id, s);
      if (s.created >= from) this.history.mark({ at: s.created, kind: s.kind, pool: s.pool, destination: s.destination, text: s.text });
    }
    for (const [id, s] of this.suspensions) {
      if (current.has(id)) continue;
      this.suspensions.delete(id);
      this.history.mark({ at: Math.min(now, s.until), kind: `${s.kind}-end`, pool: s.pool, destination: s.destination, text: `${s.pool} → ${s.destination} ${s.kind === 'suspend' ? 'suspension' : 'override'} ended` });
    }
  }

  /** Pairs entering or leaving adaptive backoff since the last step (marked at the step's time). */
  private throttleMarks(throttles: ThrottleView[], now: number): void {
    const current = new Map<string, { pool: string; server: string; destination: string; factor: number; reply: string | null; suspended: string | null }>();
    for (const t of throttles) {
      if (t.factor < 1 || t.suspended_until) current.set(`${t.pool}/${t.server}|${t.destination}`, { pool: t.pool, server: t.server, destination: t.destination, factor: t.factor, reply: t.last_throttle_reply, suspended: t.suspended_until });
    }
    const fresh = [...current].filter(([k]) => !this.throttled.has(k));
    if (fresh.length > THROTTLE_MARKS_PER_STEP) {
      const pools = [...new Set(fresh.map(([, t]) => t.pool))];
      this.history.mark({ at: now, kind: 'throttle', pool: pools.length === 1 ? pools[0] : '*', text: `${fresh.length} server/destination pairs throttled` });
    } else {
      for (const [, t] of fresh) {
        const how = t.suspended ? `suspended until ${t.suspended}` : `at ${Math.round(t.factor * 100)}%`;
        this.history.mark({ at: now, kind: 'throttle', pool: t.pool, server: t.server, destination: t.destination, text: `${t.pool}/${t.server} → ${t.destination} throttled, ${how}${t.reply ? `: ${t.reply}` : ''}` });
      }
    }
    const ended = [...this.throttled].filter(([k]) => !current.has(k));
    if (ended.length > THROTTLE_MARKS_PER_STEP) this.history.mark({ at: now, kind: 'throttle-end', pool: '*', text: `${ended.length} throttled pairs back to full speed` });
    else for (const [, t] of ended) this.history.mark({ at: now, kind: 'throttle-end', pool: t.pool, server: t.server, destination: t.destination, text: `${t.pool}/${t.server} → ${t.destination} back to full speed` });
    this.throttled = new Map([...current].map(([k, t]) => [k, { pool: t.pool, server: t.server, destination: t.destination }]));
  }

  snapshot(now = Date.now()): HistorySnapshot {
    this.collectMarks(now);
    return this.history.snapshot(now);
  }

  /** One destination's page: queue, throttle state, suspensions, warm-up against the plan, last replies. */
  async destination(domain: string, now = Date.now()): Promise<DestinationView | null> {
    const relay = this.src.relay();
    if (!relay) return null;
    return destinationView(relay, this.src.pools(), domain, this.src.deliveryLog(), now);
  }
}
