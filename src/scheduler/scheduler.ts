// The queue manager (Postfix's qmgr, KumoMTA's scheduled → ready queues): the only part that decides what is
// delivered when. The queue index (spool.index) keeps, per (pool, destination), how much is queued and when
// the next row is due; each pass serves the due destinations round-robin and takes from each only as many
// rows as it may start now (one index seek per destination). A destination at its concurrency limit,
// throttled, suspended or capped by warm-up costs one comparison per pass and wakes when a slot frees or its
// wait ends, so a backlog for one destination never delays another's first attempt. Routes are evaluated
// again when a recipient is activated (as qmgr resolves the transport, not smtpd), so a reload's routes
// apply to mail already queued. max_age is checked on every path, waiting mail included, by a bounded sweep
// over the oldest messages. Outcomes are settled with the DSN they cause in one transaction (see the spool's
// invariants); if the spool cannot record them, scheduling pauses and the outcomes are retried from memory,
// never re-delivered.
import type { Logger } from 'pino';
import type { Pool } from '../balancing/pool.js';
import type { DeliveryGate, DeliveryRequest, DeliveryResult } from '../delivery/deliver.js';
import type { DsnRecipient } from '../delivery/dsn.js';
import { dsnFor, noteDsn, type DsnContext } from './bounce-report.js';
import { decodeRcptDsn, encodeStored, wantsDelay, wantsSuccess } from '../message/dsn-params.js';
import { group, passOn, silentServers, type Job } from './jobs.js';
import type { DestSummary, DsnToQueue, Envelope, EventRow, MessageRow, RecipientRow, Spool } from '../spool/spool.js';
import { nextAttempt } from './retry.js';
import type { Plan } from './shaper.js';

export { silentServers, type Job } from './jobs.js';

export interface QueuePolicy { retry: number[]; max_age: number; max_deliveries?: number; /** A "delayed" DSN once a recipient has waited this long (0: none). */ delay_warning?: number }

export interface SchedulerContext {
  spool: Spool;
  pools: () => Map<string, Pool>;
  policy: () => QueuePolicy;
  hostname: () => string;
  deliver: (req: DeliveryRequest) => Promise<DeliveryResult>;
  /** Shaping: may (pool, destination) go now, and through which servers. */
  shape?: { plan: (pool: Pool, domain: string, now: number, starting: number) => Plan; gate: (domain: string, pool: string) => DeliveryGate; /** The key its limits are counted under (its MX site's, or the domain). */ keyOf?: (pool: Pool, domain: string) => string };
  /** The route a queued message's recipients of `domain` take under the config in force now. */
  route?: (m: MessageRow, domain: string) => { pool: string; route: number } | null;
  /** Route a DSN's recipient (the original sender). */ routeBounce: (address: string) => Envelope['recipients'][number] | null;
  log: Logger;
  /** This process's part of a node-wide limit (`workers: N`: ceil(limit / N), so the node opens what the operator configured); absent: all of it. */
  share?: (limit: number) => number;
  /** The compliance gate (src/compliance): a message about to go through `pool` waits, why and until when; null: it goes. */
  holdFor?: (m: MessageRow, pool: string) => { reason: string; until: number } | null;
  /** One structured line per attempt and per final outcome. */
  onAttempt?: (m: MessageRow, rows: RecipientRow[], a: DeliveryResult['attempts'][number]) => void;
  /** One structured line per final outcome of a recipient (delivered, bounced, expired). */
  onFinal?: (m: MessageRow, row: RecipientRow, kind: 'delivered' | 'bounced' | 'expired') => void;
  /** Every recipient's outcome of an attempt, and each expiry, once recorded (classes, suppression, events). */
  onOutcome?: (m: MessageRow, o: OutcomeNote) => void;
  classOf?: (code: number | null, text: string, expired: boolean) => string; // reply classes for the DSNs
  /** The events of these outcomes, to be written in the same transaction (none when no sink wants them). */
  eventsFor?: (m: MessageRow, notes: readonly OutcomeNote[]) => { rcpt: string; body: string }[] | undefined;
}

/** One recipient's outcome as recorded: what happened, with the reply that said so. */
export interface OutcomeNote {
  row: RecipientRow;
  kind: 'delivered' | 'deferred' | 'bounced' | 'expired';
  code: number | null;
  text: string;
  server: string | null;
  perRecipient?: boolean; // the reply was about this recipient (RCPT, its domain), not the message
}


/** Run-time state of one destination: what runs, and why it waits when it waits. */
interface DestState { inflight: number; blockedUntil: number; reason?: string }

/** Rows read per destination per look: enough for its free slots, bounded whatever the backlog. */
const FETCH = 100;
/** Wake-ups within this window share one pass over the queue (deliveries finish in bursts). */
const COALESCE_MS = 10;
const IDLE_POLL = 1000;
/** max_age sweep: how often, and how many rows per sweep (bounded work per pass). */
const EXPIRY_EVERY = 2000;
const EXPIRY_BATCH = 500;
/** DSNs owed (their file could not be written when the outcome was known): retried this often. */
const OWED_EVERY = 5000;
const UNSETTLED_RETRY = 1000;

export class Scheduler {
  private dests = new Map<string, DestState>();
  private running = 0;
  private timer?: NodeJS.Timeout;
  private ticking = false;
  private again = false;
  private stopped = false;
  private idle: (() => void)[] = [];
  private soon = false;
  private lastExpiry = 0;
  private lastOwed = 0;
  /** Outcomes known but not yet committed (the spool refused the write): retried in order. */
  private unsettled: { what: string; retry: () => Promise<void> }[] = [];

  constructor(private ctx: SchedulerContext) {
    ctx.spool.on('queued', () => this.wake());
  }

  start(): void {
    this.wake();
  }

  /** Look at the queue again soon (new mail, a flush), or at once (`now`: a slot freed; the next message goes without a timer between). */
  wake(now = false): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    if (this.soon && (!now || this.immediate)) return;
    this.soon = true;
    clearTimeout(this.timer);
    if (now) {
      this.immediate = setImmediate(() => {
        this.immediate = undefined;
        void this.tick();
      });
    } else this.timer = setTimeout(() => void this.tick(), COALESCE_MS);
  }

  private immediate?: NodeJS.Immediate;

  /** Forget every destination's wait (a suspension or override was lifted): all are looked at again. */
  unblockAll(): void {
    for (const s of this.dests.values()) {
      s.blockedUntil = 0;
      s.reason = undefined;
    }
    // An operator's action, rare: every destination with a due time goes back on the due list.
    for (const d of this.ctx.spool.index.destinationSummaries()) if (d.nextDue !== null) this.ctx.spool.index.markDue(d.pool, d.domain, d.nextDue);
    this.wake();
  }

  /**
   * Why (pool, destination) waits, if it does: for `queue show` and status. The reason stays
   * until a pass has started every due row of the destination (a rate limit blocks it for a
   * moment many times over; between two of them its mail still waits for the same reason).
   */
  waiting(pool: string, domain: string, now = Date.now()): { reason: string; until: number } | undefined {
    const s = this.dests.get(`${pool}|${domain}`);
    return s?.reason ? { reason: s.reason, until: Math.max(s.blockedUntil, now) } : undefined;
  }

  /** Jobs let through, per pool and shaping key, whose delivery has not been admitted yet. */
  private starting = new Map<string, number>();

  private started(j: Job): void {
    if (j.startKey === undefined) return;
    const n = (this.starting.get(j.startKey) ?? 1) - 1;
    if (n > 0) this.starting.set(j.startKey, n);
    else this.starting.delete(j.startKey);
    j.startKey = undefined;
  }

  private state(key: string): DestState {
    let s = this.dests.get(key);
    if (!s) this.dests.set(key, (s = { inflight: 0, blockedUntil: 0 }));
    return s;
  }

  private async tick(): Promise<void> {
    this.soon = false;
    this.ticking = true;
    this.again = false;
    let paused = false;
    try {
      // A spool that cannot write is probed (once per pause); until it can, nothing is tried.
      if (this.ctx.spool.unwritable) await this.ctx.spool.probe();
      if (this.unsettled.length && !this.ctx.spool.unwritable) await this.retryUnsettled();
      // While the spool cannot record outcomes, nothing new starts: each start would be one
      // more outcome held only in memory.
      paused = this.unsettled.length > 0 || !!this.ctx.spool.unwritable;
      if (!paused) {
        const now = Date.now();
        if (now - this.lastExpiry >= EXPIRY_EVERY) {
          this.lastExpiry = now;
          await this.expire(now);
          if (!this.ctx.spool.reserveHeld) this.ctx.spool.makeReserve();
        }
        // An expiry the spool could not record pauses scheduling too (it would expire them again).
        paused = this.unsettled.length > 0 || !!this.ctx.spool.unwritable;
        if (now - this.lastOwed >= OWED_EVERY) {
          this.lastOwed = now;
          await this.payOwedBounces();
        }
        if (!paused) await this.schedule(now);
      }
    } catch (e) {
      // A spool that refused the write has said so once (and is probed); anything else is
      // news, and the next pass waits a moment (a fault that repeats must not spin the loop).
      paused = true;
      if (!this.ctx.spool.unwritable) this.ctx.log.error({ err: e }, 'queue manager: scheduling failed; trying again in 1 s');
    } finally {
      this.ticking = false;
    }
    if (this.stopped) return;
    if (this.again && !paused) return this.wake(true);
    const delay = paused ? UNSETTLED_RETRY : Math.max(5, Math.min(IDLE_POLL, this.nextWake() - Date.now()));
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), delay);
  }

  /** When the next destination may start something: the top of the spool's due list. */
  private nextWake(): number {
    if (this.room() <= 0) return Infinity; // woken by a finishing delivery
    return this.ctx.spool.index.nextDueAt();
  }

  /** Deliveries that may still start now, all destinations together. */
  private room(): number {
    const max = this.ctx.policy().max_deliveries;
    return (max === undefined ? Infinity : this.part(max)) - this.running;
  }

  private part(limit: number): number {
    return this.ctx.share ? this.ctx.share(limit) : limit;
  }

  private async schedule(now: number): Promise<void> {
    // At the global limit nothing can start: no walk over the destinations (a finishing
    // delivery wakes the queue manager).
    if (this.room() <= 0) return;
    // Only the due destinations, earliest first (no walk over the others); what cannot start
    // now is put back on the due list for when it can.
    // As many as deliveries may start (each that starts takes at least one); the rest stay
    // on the list for the next pass.
    const order = this.ctx.spool.index.takeDue(now, this.room());
    if (order.length === 0) return;
    try {
      const started: Job[] = [];
      const exhausted: { pool: string; domain: string }[] = [];
      const moves: { rows: RecipientRow[]; pool: string; route: number }[] = [];
      const expired: { m: MessageRow; rows: RecipientRow[] }[] = [];
      const maxAge = this.ctx.policy().max_age;
      try {
        this.pass(order, now, started, exhausted, moves, expired, maxAge);
      } catch (e) {
        // A read failed mid-pass: jobs counted but not leased give their slots back.
        for (const job of started) this.finished(job, false);
        throw e;
      }
      if (started.length) {
        try {
          await this.ctx.spool.lease(started.flatMap((j) => j.rows));
        } catch (e) {
          for (const j of started) this.finished(j, false);
          throw e;
        }
        for (const j of started) void this.run(j);
      }
      for (const mv of moves) await this.ctx.spool.reroute(mv.rows, mv.pool, mv.route);
      if (moves.length) this.again = true;
      for (const x of expired) await this.settleExpired(x.m, x.rows);
      // Every due row of these was taken: when is their next one due? (after the leases, so the
      // seek does not find the rows just started)
      for (const d of exhausted) this.ctx.spool.refreshDue(d.pool, d.domain);

    } catch (e) {
      // Taken off the due list and not settled: all of them go back on it (a duplicate entry
      // costs one look), or they would wait for mail that will not come.
      for (const d of order) this.ctx.spool.index.markDue(d.pool, d.domain, now);
      throw e;
    }
  }

  /** One walk over the due destinations: what starts, what moves to another pool, what expired. */
  private pass(order: DestSummary[], now: number, started: Job[], exhausted: { pool: string; domain: string }[], moves: { rows: RecipientRow[]; pool: string; route: number }[], expired: { m: MessageRow; rows: RecipientRow[] }[], maxAge: number): void {
    const later = (d: DestSummary, at: number) => this.ctx.spool.index.markDue(d.pool, d.domain, at);
    for (const d of order) {
      // The global limit: the rest is due still, and waits for the next pass.
      if (this.room() <= 0) {
        later(d, now);
        continue;
      }
      const key = `${d.pool}|${d.domain}`;
      const st = this.state(key);
      if (st.blockedUntil > now) {
        later(d, st.blockedUntil);
        continue;
      }
      const pool = this.ctx.pools().get(d.pool);
      let free = this.part(pool?.cfg.destination_concurrency ?? 1) - st.inflight;
      if (free <= 0) continue; // at its concurrency: a finishing delivery puts it back
      // Shaping first: it needs no rows, so a throttled, suspended or capped destination
      // costs no read of the queue however large its backlog.
      // Jobs let through but not yet admitted count against the limits of their key: the domains of one MX site share them.
      const startKey = pool ? `${pool.name}|${this.ctx.shape?.keyOf?.(pool, d.domain) ?? d.domain}` : key;
      const gate = pool && this.ctx.shape?.plan(pool, d.domain, now, this.starting.get(startKey) ?? 0);
      if (gate && !gate.ok) {
        st.blockedUntil = Math.max(gate.at, now + 1);
        st.reason = gate.reason;
        later(d, st.blockedUntil);
        continue;
      }
      // Only as many rows as may start now, and one more message to know whether the look
      // saw them all (a slot that frees costs a read of a few rows, whatever the backlog).
      const limit = Math.min(FETCH, free * 2 + 2);
      const rows = this.ctx.spool.dueFor(d.pool, d.domain, now, limit);
      const jobs = group(rows);
      if (rows.length === limit) {
        // The last message's rows may go on past the limit: it waits for the next look...
        if (jobs.length > 1) jobs.pop();
        // ...unless it is the only one: then all its due rows here go in one transaction.
        else if (jobs.length === 1) jobs[0].rows = this.ctx.spool.dueRowsOf(jobs[0].msg, d.pool, d.domain, now, FETCH);
      }
      let all = true;
      for (const j of jobs) {
        if (free <= 0 || this.room() <= 0) {
          all = false;
          break;
        }
        const m = this.ctx.spool.message(j.msg);
        if (!m) continue;
        if (now - m.created >= maxAge) {
          expired.push({ m, rows: j.rows });
          continue;
        }
        const r = this.ctx.route?.(m, d.domain);
        if (r && r.pool !== d.pool) {
          moves.push({ rows: j.rows, pool: r.pool, route: r.route });
          continue;
        }
        if (!pool) {
          // No pool by that name and no route elsewhere: waits for a config that has one.
          st.blockedUntil = now + (this.ctx.policy().retry[0] ?? 60_000);
          st.reason = `pool ${d.pool} does not exist in the configuration in force and no route sends ${d.domain} elsewhere`;
          all = false;
          break;
        }
        const plan = this.ctx.shape?.plan(pool, d.domain, now, this.starting.get(startKey) ?? 0);
        if (plan && !plan.ok) {
          st.blockedUntil = Math.max(plan.at, now + 1);
          st.reason = plan.reason;
          all = false;
          break;
        }
        st.inflight++;
        this.starting.set((j.startKey = startKey), (this.starting.get(startKey) ?? 0) + 1);
        this.running++;
        free--;
        if (plan?.ok && plan.exclude.size) j.exclude = plan.exclude;
        started.push(j);
      }
      if (all && rows.length < limit) {
        exhausted.push(d);
        st.reason = undefined;
      } else if (st.blockedUntil > now) later(d, st.blockedUntil);
      // More due rows than this pass took, or the global limit came first; at its own
      // concurrency it is put back by a finishing delivery instead.
      else if (free > 0) later(d, now);
    }
  }

  private async run(j: Job): Promise<void> {
    const key = `${j.pool}|${j.domain}`;
    const st = this.state(key);
    let reserved = false;
    const reserve = () => {
      if (reserved) return;
      reserved = true;
      this.started(j);
    };
    const shaped = this.ctx.shape?.gate(j.domain, j.pool);
    const gate: DeliveryGate | undefined = shaped && {
      ...shaped,
      admit: async (pool, server, fresh, parked) => {
        const v = await shaped.admit(pool, server, fresh, parked);
        if (v.ok) reserve();
        return v;
      },
    };
    try {
      const m = this.ctx.spool.message(j.msg);
      if (!m) return;
      // A bulk message whose sender fails the compliance gate waits (not an attempt), not its destination.
      const held = this.ctx.holdFor?.(m, j.pool);
      let result: DeliveryResult;
      try {
        result = held ? { outcomes: j.rows.map((r) => ({ rcpt: r.rcpt, kind: 'deferred', code: null, text: held.reason, server: null })), attempts: [], waitUntil: held.until } : await this.ctx.deliver({ pool: j.pool, domain: j.domain, sender: m.sender, recipients: j.rows.map((r) => r.rcpt), body: this.ctx.spool.bodies.bodyFor(m), exclude: j.exclude, avoid: silentServers(j.rows, this.ctx.pools().get(j.pool)?.cfg.kind), gate, ...passOn(m, j.rows) });
      } catch (e) {
        // A fault of ours before any outcome: nothing is known to have been delivered.
        this.ctx.log.error({ err: e, queue_id: j.msg }, 'delivery failed unexpectedly; will retry');
        result = { outcomes: j.rows.map((r) => ({ rcpt: r.rcpt, kind: 'deferred', code: null, text: `4.3.0 internal error: ${(e as Error).message}`.slice(0, 300), server: null })), attempts: [] };
      }
      for (const a of result.attempts) this.ctx.onAttempt?.(m, j.rows, a);
      if (result.waitUntil !== undefined && !held) {
        st.blockedUntil = result.waitUntil;
        st.reason = `throttle: ${result.outcomes[0]?.text ?? 'limits reached'}`;
      }
      await this.settleJob(m, j.rows, result);
    } finally {
      reserve();
      this.finished(j, true);
    }
  }

  private finished(j: Job, ran: boolean): void {
    const st = this.state(`${j.pool}|${j.domain}`);
    st.inflight = Math.max(0, st.inflight - 1);
    if (!ran) this.started(j);
    // A slot freed: a destination that waited for one is looked at again.
    if (st.blockedUntil && st.reason?.includes('concurrency')) st.blockedUntil = 0;
    if (st.inflight === 0 && st.blockedUntil <= Date.now() && !this.ctx.spool.index.summary(j.pool, j.domain)) this.dests.delete(`${j.pool}|${j.domain}`);
    // A slot freed: the destination is looked at again (it may have been set aside at its limit).
    this.ctx.spool.index.markDue(j.pool, j.domain, Date.now());
    this.running--;
    if (this.running === 0) this.idle.splice(0).forEach((f) => f());
    this.wake(true);
  }

  /**
   * Turn a delivery's outcomes into row updates, events and the DSN they cause, and commit
   * them together. Never throws: when the spool cannot take the write, the outcome is kept in
   * memory and retried (the rows stay leased, so nothing delivers them again meanwhile).
   */
  async settleJob(m: MessageRow, rows: RecipientRow[], r: DeliveryResult, head?: Buffer): Promise<void> {
    const now = Date.now();
    const policy = this.ctx.policy();
    const updates: RecipientRow[] = [];
    const finals: { row: RecipientRow; kind: 'delivered' | 'bounced' | 'expired' }[] = [];
    const bounced: DsnRecipient[] = [];
    const events: Omit<EventRow, 'msg'>[] = [];
    const notes: OutcomeNote[] = [];
    if (r.waitUntil !== undefined) {
      // Shaping turned every server away before anything was sent: not an attempt.
      const t = r.outcomes[0]?.text ?? 'limits reached';
      const wait = (t.startsWith('compliance: ') ? t : `throttle: ${t}`).slice(0, 300);
      for (const row of rows) updates.push({ ...row, next_at: r.waitUntil, wait, updated: now });
    } else {
      for (const a of r.attempts) events.push({ at: a.at, rcpt: a.rcpts.join(', '), kind: 'attempt', server: a.server, code: a.code, text: a.text });
      for (const o of r.outcomes) {
        const row = rows.find((x) => x.rcpt === o.rcpt);
        if (!row) continue;
        const base = { ...row, attempts: row.attempts + 1, last_code: o.code, last_reply: o.text, last_server: o.server, updated: now, wait: null };
        const note = (kind: OutcomeNote['kind']) => notes.push({ row: base, kind, code: o.code, text: o.text, server: o.server, perRecipient: o.perRecipient });
        if (o.kind === 'delivered') {
          note('delivered');
          updates.push({ ...base, state: 'delivered' });
          finals.push({ row: { ...base, state: 'delivered' }, kind: 'delivered' });
          events.push({ at: now, rcpt: o.rcpt, kind: 'delivered', server: o.server, code: o.code, text: o.text });
          // NOTIFY=SUCCESS and a hop that could not be handed it: "relayed" is the last word (RFC 3461 5.2.2).
          if (!o.hopDsn && wantsSuccess(decodeRcptDsn(row.dsn))) bounced.push({ rcpt: o.rcpt, action: 'relayed', code: o.code, text: o.text, server: o.server, dsn: row.dsn, pool: row.pool });
        } else if (o.kind === 'failed') {
          note('bounced');
          updates.push({ ...base, state: 'bounced' });
          finals.push({ row: { ...base, state: 'bounced' }, kind: 'bounced' });
          bounced.push({ rcpt: o.rcpt, action: 'failed', code: o.code, text: o.text, server: o.server, dsn: row.dsn, pool: row.pool });
          events.push({ at: now, rcpt: o.rcpt, kind: 'bounced', server: o.server, code: o.code, text: o.text });
        } else {
          const at = nextAttempt(policy.retry, base.attempts, m.created, policy.max_age, now);
          if (at === null) {
            note('expired');
            updates.push({ ...base, state: 'bounced' });
            finals.push({ row: { ...base, state: 'bounced' }, kind: 'expired' });
            bounced.push({ rcpt: o.rcpt, action: 'failed', code: o.code, text: o.text || 'expired', server: o.server, dsn: row.dsn, pool: row.pool });
            events.push({ at: now, rcpt: o.rcpt, kind: 'expired', server: o.server, code: o.code, text: o.text });
          } else {
            // Waiting past queue.delay_warning: one "delayed" notice per recipient, marked in its row.
            note('deferred');
            const warnAfter = policy.delay_warning ?? 0;
            const dsn = decodeRcptDsn(row.dsn);
            const warn = warnAfter > 0 && now - m.created >= warnAfter && !dsn.warned && wantsDelay(dsn);
            if (warn) bounced.push({ rcpt: o.rcpt, action: 'delayed', code: o.code, text: `${o.text} (still trying until ${new Date(m.created + policy.max_age).toISOString()})`, server: o.server, dsn: row.dsn, pool: row.pool });
            updates.push({ ...base, state: 'queued', next_at: at, wait: `retry schedule: attempt ${base.attempts} got ${o.code ?? 'no answer'} ${o.text}`.slice(0, 300), ...(warn ? { dsn: encodeStored({ ...dsn, warned: true }) } : {}) });
            events.push({ at: now, rcpt: o.rcpt, kind: 'deferred', server: o.server, code: o.code, text: `${o.text} (next attempt ${new Date(at).toISOString()})`.slice(0, 1000) });
          }
        }
      }
    }
    const reason = finals.some((f) => f.kind === 'expired') ? 'expired' : 'rejected';
    if (bounced.length) noteDsn(this.ctx.log, m, bounced);
    await this.commit(`outcomes of ${m.id}`, m, updates, events, bounced, reason, head, finals, notes);
  }

  /** Settle with retries from memory when the spool refuses; finals are reported once committed. */
  private async commit(what: string, m: MessageRow, updates: RecipientRow[], events: Omit<EventRow, 'msg'>[], bounced: DsnRecipient[], reason: 'rejected' | 'expired', head: Buffer | undefined, finals: { row: RecipientRow; kind: 'delivered' | 'bounced' | 'expired' }[], notes: OutcomeNote[]): Promise<void> {
    const attempt = async () => {
      const dsn = bounced.length ? await dsnFor(this.dsnContext(), m, bounced, reason, head) : undefined;
      const outbox = this.ctx.eventsFor?.(m, notes);
      const id = await this.ctx.spool.settle(m.id, updates, events, dsn, outbox ? { outbox } : {});
      for (const f of finals) this.ctx.onFinal?.(m, f.row, f.kind);
      for (const n of notes) this.ctx.onOutcome?.(m, n);
      if (id) this.ctx.log.info({ queue_id: m.id, dsn_id: id, sender: m.sender, recipients: bounced.map((b) => b.rcpt) }, `bounce for ${m.id} queued as ${id}`);
    };
    try {
      await attempt();
    } catch (e) {
      this.ctx.log.error({ err: e, queue_id: m.id }, `spool could not record ${what}; kept in memory and retried, queue paused`);
      this.unsettled.push({ what, retry: attempt });
    }
  }

  private async retryUnsettled(): Promise<void> {
    while (this.unsettled.length) {
      try {
        await this.unsettled[0].retry();
        this.unsettled.shift();
      } catch {
        return;
      }
    }
  }

  private dsnContext(): DsnContext {
    return { ...this.ctx, bodies: this.ctx.spool.bodies };
  }

  /** Mail past max_age, whatever it waits for (retry, throttle, suspension, warm-up): bounced. */
  private async expire(now: number): Promise<void> {
    const rows = this.ctx.spool.expiredRows(now - this.ctx.policy().max_age, EXPIRY_BATCH);
    for (const j of group(rows)) {
      const m = this.ctx.spool.message(j.msg);
      if (m) await this.settleExpired(m, j.rows);
    }
    if (rows.length === EXPIRY_BATCH) this.lastExpiry = 0; // more to do: next pass
  }

  private async settleExpired(m: MessageRow, rows: RecipientRow[]): Promise<void> {
    const now = Date.now();
    const updates: RecipientRow[] = [];
    const bounced: DsnRecipient[] = [];
    const events: Omit<EventRow, 'msg'>[] = [];
    const finals: { row: RecipientRow; kind: 'expired' }[] = [];
    const notes: OutcomeNote[] = [];
    for (const row of rows) {
      const why = this.waiting(row.pool, row.domain, now)?.reason ?? row.wait ?? row.last_reply ?? 'not delivered';
      const text = `4.4.7 Message expired after ${Math.round((now - m.created) / 1000)} s in the queue: ${why}`.slice(0, 600);
      const u = { ...row, state: 'bounced' as const, updated: now, wait: null, last_reply: row.last_reply ?? text };
      updates.push(u);
      finals.push({ row: u, kind: 'expired' });
      notes.push({ row: u, kind: 'expired', code: row.last_code, text, server: row.last_server });
      bounced.push({ rcpt: row.rcpt, action: 'failed', code: row.last_code, text, server: row.last_server, dsn: row.dsn, pool: row.pool });
      events.push({ at: now, rcpt: row.rcpt, kind: 'expired', server: row.last_server, code: row.last_code, text });
    }
    await this.commit(`expiry of ${m.id}`, m, updates, events, bounced, 'expired', undefined, finals, notes);
  }

  /** Failed recipients whose DSN could not be written when their outcome was recorded. */
  private async payOwedBounces(): Promise<void> {
    for (const j of group(this.ctx.spool.owedBounces(EXPIRY_BATCH))) {
      const m = this.ctx.spool.message(j.msg);
      if (!m) continue;
      const now = Date.now();
      const bounced = j.rows.map((r) => ({ rcpt: r.rcpt, action: 'failed' as const, code: r.last_code, text: r.last_reply ?? '5.0.0 failed', server: r.last_server, dsn: r.dsn, pool: r.pool }));
      const dsn = await dsnFor(this.dsnContext(), m, bounced, 'rejected');
      try {
        await this.ctx.spool.settle(m.id, j.rows.map((r) => ({ ...r, state: 'bounced', updated: now })), [], dsn);
      } catch (e) {
        this.ctx.log.warn({ err: e, queue_id: m.id }, 'owed DSN still cannot be queued; will retry');
        return;
      }
    }
  }

  /** The operator's bounce: open, not in-flight recipients of one message, with one DSN. */
  async bounceNow(id: string, text = '5.0.0 Bounced by the operator'): Promise<number> {
    const m = this.ctx.spool.message(id);
    if (!m) return 0;
    const open = (this.ctx.spool.recipients(id) as (RecipientRow & { leased?: number })[]).filter((r) => (r.state === 'queued' || r.state === 'held' || r.state === 'failed') && !r.leased);
    if (!open.length) return 0;
    const now = Date.now();
    const bounced = open.map((r) => ({ rcpt: r.rcpt, action: 'failed' as const, code: 550, text, server: null, dsn: r.dsn, pool: r.pool }));
    const dsn = await dsnFor(this.dsnContext(), m, bounced, 'rejected');
    const outbox = this.ctx.eventsFor?.(m, open.map((r) => ({ row: r, kind: 'bounced' as const, code: 550, text, server: null })));
    await this.ctx.spool.settle(id, open.map((r) => ({ ...r, state: 'bounced', last_code: 550, last_reply: text, updated: now, wait: null })), [{ at: now, rcpt: null, kind: 'bounced by operator', server: null, code: null, text: null }], dsn, { unleasedOnly: true, outbox });
    return open.length;
  }

  /** Stop scheduling; resolves when running deliveries have finished. */
  async stop(deadlineMs = Infinity): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    if (this.running > 0) {
      // Within the drain deadline: what is still in flight then is put back on the next start.
      let t: NodeJS.Timeout | undefined;
      await Promise.race([new Promise<void>((r) => this.idle.push(r)), new Promise<void>((r) => (t = setTimeout(r, deadlineMs)))]);
      clearTimeout(t);
    }
    await this.retryUnsettled().catch(() => {});
  }

  get active(): number {
    return this.running;
  }
}
