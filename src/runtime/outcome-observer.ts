// What the relay does with each recorded outcome beyond the queue: its reply class (counted by
// pool in smtplb_outcomes_total), and, for a permanent failure that says the address is bad,
// an entry on the suppression list. List writes are gathered and made in one synced
// transaction per turn of the event loop, not one fsync per bounce.
import type { Logger } from 'pino';
import type { Counter, Labelled } from '../core/metric-shapes.js';
import { classifyOutcome, type ClassRule, type OutcomeClass } from '../outcomes/reply-class.js';
import { outcomeFacts } from '../outcomes/facts.js';
import type { OutcomeNote } from '../scheduler/scheduler.js';
import type { MessageRow } from '../spool/spool.js';
import type { SuppressionList } from '../suppression/list.js';
import { bounceEntry, feedsList, type SuppressionEntry, type SuppressionPolicy } from '../suppression/rules.js';

export interface OutcomeObserverContext {
  policy: () => SuppressionPolicy;
  rules: () => readonly ClassRule[];
  list: () => SuppressionList | undefined;
  metrics: { outcomes: Labelled<Counter>; suppressionsAdded: Labelled<Counter> };
  log: Logger;
}

/** Destinations whose failures are counted by class for the status's top list (the most recent kept). */
const DESTINATIONS_KEPT = 10_000;

export class OutcomeObserver {
  private pending: SuppressionEntry[] = [];
  /** Failures by class per `pool|destination` since start, for the top list of `smtplb status`. */
  private byDestination = new Map<string, Record<string, number>>();

  constructor(private ctx: OutcomeObserverContext) {}

  /** The class of a failed outcome (null for a delivery). */
  classOf(code: number | null, text: string, expired = false): OutcomeClass {
    return classifyOutcome(outcomeFacts(code, text, expired), this.ctx.rules());
  }

  observe(m: MessageRow, o: OutcomeNote): OutcomeClass | null {
    if (o.kind === 'delivered') return null;
    const cls = this.classOf(o.code, o.text, o.kind === 'expired');
    this.ctx.metrics.outcomes.labels(o.row.pool, cls).inc();
    const key = `${o.row.pool}|${o.row.domain}`;
    let counts = this.byDestination.get(key);
    if (counts) this.byDestination.delete(key); // most recent last
    else if (this.byDestination.size >= DESTINATIONS_KEPT) this.byDestination.delete(this.byDestination.keys().next().value!);
    this.byDestination.set(key, (counts ??= {}));
    counts[cls] = (counts[cls] ?? 0) + 1;
    // Only a reply about this recipient (its RCPT, or its domain taking no mail) says the address
    // is bad: a refusal at MAIL FROM or DATA is about the sender or the message, whatever its
    // wording. A DSN that bounced (null sender) has no sending domain to file the address under,
    // and suppressing it for everyone on the word of one bounce is more than it says: not fed.
    if (o.kind === 'bounced' && o.perRecipient && m.sender !== '' && feedsList(this.ctx.policy(), o.code, cls)) this.suppress(bounceEntry(this.ctx.policy(), m.sender, o.row.rcpt, cls, o.text, Date.now()));
    return cls;
  }

  /** A destination's failures by class since start (undefined: none counted). */
  classesFor(pool: string, domain: string): Record<string, number> | undefined {
    return this.byDestination.get(`${pool}|${domain}`);
  }

  private suppress(e: SuppressionEntry): void {
    if (this.pending.push(e) === 1) setImmediate(() => this.flush());
  }

  private flush(): void {
    const batch = this.pending.splice(0);
    const list = this.ctx.list();
    if (!list || !batch.length) return;
    try {
      list.add(batch);
      this.ctx.metrics.suppressionsAdded.labels('bounce').inc(batch.length);
      for (const e of batch) this.ctx.log.info({ suppression: e }, `suppressed ${e.address} for ${e.scope}: ${e.reason}`);
    } catch (e) {
      // The list is advisory for the mail in flight: a failed write loses no message.
      this.ctx.log.warn({ err: (e as Error).message, entries: batch.length }, 'suppression list: entries from bounces not written');
    }
  }
}
