// The queue manager (Postfix's qmgr): takes due recipients from the spool, groups them into
// deliveries per (message, pool, destination domain), keeps each destination within its
// concurrency, hands deliveries to the delivery agent, and records what happened: delivered,
// deferred to the next retry, or bounced with a DSN on 5xx or expiry.
import type { Logger } from 'pino';
import type { Pool } from '../balancing/pool.js';
import type { DeliveryGate, DeliveryRequest, DeliveryResult } from '../delivery/deliver.js';
import { buildDsn, type DsnRecipient } from '../delivery/dsn.js';
import type { Envelope, EventRow, MessageRow, RecipientRow, Spool } from '../spool/spool.js';
import { nextAttempt } from './retry.js';
import type { Plan } from './shaper.js';

export interface QueuePolicy { retry: number[]; max_age: number }

export interface SchedulerContext {
  spool: Spool;
  pools: () => Map<string, Pool>;
  policy: () => QueuePolicy;
  hostname: () => string;
  deliver: (req: DeliveryRequest) => Promise<DeliveryResult>;
  /** Shaping: may (pool, destination) go now, and through which servers. */
  shape?: { plan: (pool: Pool, domain: string, now: number, starting: number) => Plan; gate: (domain: string) => DeliveryGate };
  /** Route a DSN's recipient (the original sender). */
  routeBounce: (address: string) => Envelope['recipients'][number] | null;
  log: Logger;
  /** One structured line per attempt and per final outcome. */
  onAttempt?: (m: MessageRow, rows: RecipientRow[], a: DeliveryResult['attempts'][number]) => void;
  /** One structured line per final outcome of a recipient (delivered, bounced, expired). */
  onFinal?: (m: MessageRow, row: RecipientRow, kind: 'delivered' | 'bounced' | 'expired') => void;
}

interface Job { msg: string; pool: string; domain: string; rows: RecipientRow[]; exclude?: ReadonlySet<string> }

// Rows looked at per pass. Deliveries in flight are leased and skipped by the index, so a
// pass sees only mail that could start now.
const BATCH = 200;
/** Wake-ups within this window share one pass over the queue (deliveries finish in bursts). */
const COALESCE_MS = 10;
const IDLE_POLL = 1000;

export class Scheduler {
  private inflight = new Map<string, number>(); // pool|domain → deliveries running
  /** pool|domain → deliveries let through that have not yet reserved their shaping slot. */
  private starting = new Map<string, number>();
  private running = 0;
  private timer?: NodeJS.Timeout;
  private ticking = false;
  private again = false;
  private stopped = false;
  private idle: (() => void)[] = [];
  private soon = false;

  constructor(private ctx: SchedulerContext) {
    ctx.spool.on('queued', () => this.wake());
  }

  start(): void {
    this.wake();
  }

  /** Look at the queue again soon (new mail, a finished delivery, an operator's flush). */
  wake(): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    if (this.soon) return;
    this.soon = true;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), COALESCE_MS);
  }

  private async tick(): Promise<void> {
    this.soon = false;
    this.ticking = true;
    this.again = false;
    try {
      const now = Date.now();
      const jobs = this.plan(this.ctx.spool.due(now, BATCH));
      const started: Job[] = [];
      const postponed: { row: RecipientRow; at: number; wait: string }[] = [];
      const behind = new Map<string, number>(); // jobs already waiting per (pool, destination) this pass
      for (const j of jobs) {
        const key = `${j.pool}|${j.domain}`;
        const pool = this.ctx.pools().get(j.pool);
        const plan = pool && this.ctx.shape ? this.ctx.shape.plan(pool, j.domain, now, this.starting.get(key) ?? 0) : undefined;
        if (plan && !plan.ok) {
          const k = behind.get(key) ?? 0;
          behind.set(key, k + 1);
          const at = Math.round(plan.at + k * plan.spacing);
          for (const row of j.rows) postponed.push({ row, at, wait: plan.reason });
          continue;
        }
        if (!this.admit(j)) continue;
        this.starting.set(key, (this.starting.get(key) ?? 0) + 1);
        if (plan?.ok && plan.exclude.size) j.exclude = plan.exclude;
        started.push(j);
      }
      if (started.length || postponed.length) {
        await this.ctx.spool.plan(started.flatMap((j) => j.rows), postponed);
        for (const j of started) void this.run(j);
      }
    } catch (e) {
      this.ctx.log.error({ err: e }, 'queue manager: scheduling failed');
    } finally {
      this.ticking = false;
    }
    if (this.stopped) return;
    if (this.again) return this.wake();
    const next = this.ctx.spool.nextDueAt();
    const delay = next === null ? IDLE_POLL : Math.max(5, Math.min(IDLE_POLL, next - Date.now()));
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), delay);
  }

  /** Group recipient rows into one delivery per (message, pool, domain). */
  private plan(rows: RecipientRow[]): Job[] {
    const jobs = new Map<string, Job>();
    for (const r of rows) {
      const key = `${r.msg}|${r.pool}|${r.domain}`;
      let j = jobs.get(key);
      if (!j) jobs.set(key, (j = { msg: r.msg, pool: r.pool, domain: r.domain, rows: [] }));
      j.rows.push(r);
    }
    return [...jobs.values()];
  }

  /** Reserve a slot for the job's destination, within the pool's destination_concurrency. */
  private admit(j: Job): boolean {
    const pool = this.ctx.pools().get(j.pool);
    const limit = pool?.cfg.destination_concurrency ?? 1;
    const key = `${j.pool}|${j.domain}`;
    const n = this.inflight.get(key) ?? 0;
    if (n >= limit) return false;
    this.inflight.set(key, n + 1);
    this.running++;
    return true;
  }

  private async run(j: Job): Promise<void> {
    const key = `${j.pool}|${j.domain}`;
    let reserved = false;
    const reserve = () => {
      if (reserved) return;
      reserved = true;
      const n = (this.starting.get(key) ?? 1) - 1;
      if (n <= 0) this.starting.delete(key);
      else this.starting.set(key, n);
    };
    const shaped = this.ctx.shape?.gate(j.domain);
    const gate: DeliveryGate | undefined = shaped && {
      ...shaped,
      begin: (pool, server, fresh) => {
        reserve();
        shaped.begin(pool, server, fresh);
      },
    };
    try {
      const m = this.ctx.spool.message(j.msg);
      if (!m) return;
      const body = await this.ctx.spool.readBody(j.msg);
      let result: DeliveryResult;
      if (!this.ctx.pools().has(j.pool)) {
        result = { outcomes: j.rows.map((r) => ({ rcpt: r.rcpt, kind: 'deferred', code: null, text: `pool ${j.pool} no longer exists`, server: null })), attempts: [] };
      } else {
        result = await this.ctx.deliver({ pool: j.pool, domain: j.domain, sender: m.sender, recipients: j.rows.map((r) => r.rcpt), body, exclude: j.exclude, gate });
      }
      for (const a of result.attempts) this.ctx.onAttempt?.(m, j.rows, a);
      await this.record(m, j, result, body);
    } catch (e) {
      this.ctx.log.error({ err: e, queue_id: j.msg }, 'delivery failed unexpectedly; will retry');
      const now = Date.now();
      await this.ctx.spool
        .record(j.msg, j.rows.map((r) => ({ ...r, attempts: r.attempts + 1, next_at: now + (this.ctx.policy().retry[0] ?? 60_000), updated: now })), [])
        .catch(() => {});
    } finally {
      reserve();
      const n = (this.inflight.get(key) ?? 1) - 1;
      if (n <= 0) this.inflight.delete(key);
      else this.inflight.set(key, n);
      this.running--;
      if (this.running === 0) this.idle.splice(0).forEach((f) => f());
      this.wake();
    }
  }

  private async record(m: MessageRow, j: Job, r: DeliveryResult, body: Buffer): Promise<void> {
    const now = Date.now();
    const policy = this.ctx.policy();
    if (r.waitUntil !== undefined) {
      // Shaping turned every server away before anything was sent: not an attempt.
      const wait = `throttle: ${r.outcomes[0]?.text ?? 'limits reached'}`;
      await this.ctx.spool.record(m.id, j.rows.map((row) => ({ ...row, next_at: r.waitUntil!, wait, updated: now })), []);
      return;
    }
    const updates: RecipientRow[] = [];
    const bounced: DsnRecipient[] = [];
    const events: Omit<EventRow, 'msg'>[] = r.attempts.map((a) => ({ at: a.at, rcpt: a.rcpts.join(', '), kind: 'attempt', server: a.server, code: a.code, text: a.text }));
    for (const o of r.outcomes) {
      const row = j.rows.find((x) => x.rcpt === o.rcpt)!;
      const base = { ...row, attempts: row.attempts + 1, last_code: o.code, last_reply: o.text, last_server: o.server, updated: now, wait: null };
      if (o.kind === 'delivered') {
        updates.push({ ...base, state: 'delivered' });
        this.ctx.onFinal?.(m, { ...base, state: 'delivered' }, 'delivered');
        events.push({ at: now, rcpt: o.rcpt, kind: 'delivered', server: o.server, code: o.code, text: o.text });
      } else if (o.kind === 'failed') {
        updates.push({ ...base, state: 'bounced' });
        this.ctx.onFinal?.(m, { ...base, state: 'bounced' }, 'bounced');
        bounced.push({ rcpt: o.rcpt, action: 'failed', code: o.code, text: o.text, server: o.server });
        events.push({ at: now, rcpt: o.rcpt, kind: 'bounced', server: o.server, code: o.code, text: o.text });
      } else {
        const at = nextAttempt(policy.retry, base.attempts, m.created, policy.max_age, now);
        if (at === null) {
          updates.push({ ...base, state: 'bounced' });
          this.ctx.onFinal?.(m, { ...base, state: 'bounced' }, 'expired');
          bounced.push({ rcpt: o.rcpt, action: 'failed', code: o.code, text: o.text || 'expired', server: o.server });
          events.push({ at: now, rcpt: o.rcpt, kind: 'expired', server: o.server, code: o.code, text: o.text });
        } else {
          updates.push({ ...base, state: 'queued', next_at: at, wait: `retry schedule: attempt ${base.attempts} got ${o.code ?? 'no answer'} ${o.text}`.slice(0, 300) });
          events.push({ at: now, rcpt: o.rcpt, kind: 'deferred', server: o.server, code: o.code, text: `${o.text} (next attempt ${new Date(at).toISOString()})` });
        }
      }
    }
    // The DSN is queued before the bounce is recorded: a crash in between repeats the
    // bounce rather than losing it.
    if (bounced.length) await this.bounce(m, bounced, body, events.some((e) => e.kind === 'expired') ? 'expired' : 'rejected');
    await this.ctx.spool.record(m.id, updates, events);
  }

  async bounce(m: MessageRow, rcpts: DsnRecipient[], body: Buffer, reason: 'rejected' | 'expired'): Promise<void> {
    // Never bounce a bounce, never to the null sender.
    if (!m.sender || m.dsn_of) return;
    const route = this.ctx.routeBounce(m.sender);
    if (!route) {
      this.ctx.log.error({ queue_id: m.id, sender: m.sender }, 'no route for the DSN to the sender; bounce dropped');
      return;
    }
    const dsn = buildDsn({ hostname: this.ctx.hostname(), queueId: m.id, sender: m.sender, arrival: new Date(m.created), recipients: rcpts, reason, original: body });
    const id = await this.ctx.spool.accept({ sender: '', recipients: [route], listener: 'dsn', client: 'smtplb', dsnOf: m.id }, dsn);
    this.ctx.log.info({ queue_id: m.id, dsn_id: id, sender: m.sender, recipients: rcpts.map((r) => r.rcpt) }, `bounce for ${m.id} queued as ${id}`);
  }

  /** Stop scheduling; resolves when running deliveries have finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.running > 0) await new Promise<void>((r) => this.idle.push(r));
  }

  get active(): number {
    return this.running;
  }
}
