// The relay's events (issue 24): the outbox rows that go into the spool's transactions with
// what they report (a message taken, each recipient's outcome), the `suppressed` events of the
// RCPT check, and the dispatcher that sends the outbox to the configured sinks. Nothing is
// built when no sink is configured: events cost nothing to a node that does not use them.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Metrics } from '../admin/metrics.js';
import { EventDispatcher, type SinkConfig } from '../events/dispatcher.js';
import { listEvent, outcomeEvent, receivedEvents, storedTags, suppressedEvent } from '../events/event.js';
import type { OutcomeNote } from '../scheduler/scheduler.js';
import type { Envelope, MessageRow } from '../spool/records.js';
import type { Spool } from '../spool/spool.js';

export interface EventFeedContext {
  config: () => Config;
  spool: Spool;
  log: Logger;
  metrics: Metrics;
  classOf: (code: number | null, text: string, expired: boolean) => string;
}

export class EventFeed {
  private dispatcher: EventDispatcher;

  constructor(private ctx: EventFeedContext) {
    this.dispatcher = new EventDispatcher({
      outbox: ctx.spool.outbox,
      sinks: () => this.sinks(),
      maxOutbox: () => ctx.config().events?.max_outbox ?? 1_000_000,
      log: ctx.log,
      metrics: ctx.metrics,
    });
  }

  /** Sinks as the config has them now (a reload may add or remove them). */
  sinks(): SinkConfig[] {
    const e = this.ctx.config().events;
    // Asked for every message: built again only when a reload brought another config.
    if (this.built && this.built.from === e) return this.built.sinks;
    const out: SinkConfig[] = (e?.webhooks ?? []).map((w) => ({ name: `webhook:${w.url}`, url: w.url, secret: w.secret, types: w.types, batch: w.batch, timeoutMs: w.timeout }));
    if (e?.file) out.push({ name: `file:${e.file}`, file: e.file, batch: 1000, timeoutMs: 0 });
    this.built = { from: e, sinks: out };
    return out;
  }
  private built?: { from: Config['events']; sinks: SinkConfig[] };

  get on(): boolean {
    return this.sinks().length > 0;
  }

  start(): void {
    this.dispatcher.start();
  }

  stop(): Promise<void> {
    return this.dispatcher.stop();
  }

  /** `received` rows for a message being committed to the queue. */
  forIncoming(id: string, env: Envelope): { rcpt: string; body: string }[] | undefined {
    if (!this.on) return undefined;
    this.dispatcher.soon();
    return receivedEvents({ id, message_id: env.messageId ?? null, sender: env.sender, created: Date.now(), tags: env.tags ?? {} }, env.recipients.map((r) => r.address), env.listener);
  }

  /** The rows of recorded outcomes, for the same transaction. */
  forOutcomes(m: MessageRow, notes: readonly OutcomeNote[]): { rcpt: string; body: string }[] | undefined {
    if (!this.on || !notes.length) return undefined;
    this.dispatcher.soon();
    const msg = { id: m.id, message_id: m.message_id, sender: m.sender, created: m.created, tags: storedTags(m.tags) };
    const now = Date.now();
    return notes.map((n) =>
      outcomeEvent(msg, { rcpt: n.row.rcpt, type: n.kind, code: n.code, text: n.text, server: n.server, attempt: n.row.attempts, class: n.kind === 'delivered' ? null : this.ctx.classOf(n.code, n.text, n.kind === 'expired') }, now),
    );
  }

  /** An `unsubscribed` or `complained` event, written on its own (synced before it resolves). */
  async listEvent(type: 'unsubscribed' | 'complained', e: Parameters<typeof listEvent>[1]): Promise<void> {
    if (!this.on) return;
    await this.ctx.spool.outbox.record(e.queueId ?? '', [listEvent(type, e, Date.now())]);
    this.dispatcher.soon();
  }

  /** A recipient the suppression list refused or dropped: its event, written on its own. */
  suppressed(queueId: string | null, sender: string, rcpt: string, reply: string, listener: string): void {
    if (!this.on) return;
    const body = suppressedEvent({ id: queueId, sender }, rcpt, reply, listener, Date.now());
    void this.ctx.spool.outbox.record(queueId ?? '', [body]).then(
      () => this.dispatcher.soon(),
      (e: Error) => this.ctx.log.warn({ err: e.message, recipient: rcpt }, 'events: a suppressed event was not written'),
    );
  }
}
