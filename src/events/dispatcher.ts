// Events from the outbox (spool/outbox-table.ts) to their sinks: webhooks (JSON arrays by HTTP
// POST, signed with the sink's secret) and a file of JSON lines. Each sink reads in outbox
// order from its own cursor with one batch in flight, so a message's events arrive in the order
// they happened; a batch is sent again, with the same ids and delivery id, until the receiver
// answers 2xx (at least once), waiting longer after each failure (1 s doubling to 5 min). Mail
// never waits for a sink: the outbox is bounded, and what a dead receiver cannot take past the
// bound is dropped, counted and logged.
import fs from 'node:fs';
import type { Logger } from 'pino';
import type { Counter, Gauge, Labelled } from '../core/metric-shapes.js';
import type { OutboxTable } from '../spool/outbox-table.js';
import { signBody, type EventType } from './event.js';

export interface SinkConfig {
  /** The cursor's name: `webhook:URL` or `file:PATH`. */
  name: string;
  url?: string;
  secret?: string;
  file?: string;
  /** Only these types (all when absent). */
  types?: readonly EventType[];
  batch: number;
  timeoutMs: number;
}

export interface DispatcherContext {
  outbox: OutboxTable;
  sinks: () => SinkConfig[];
  maxOutbox: () => number;
  log: Logger;
  metrics: { eventsSent: Labelled<Counter>; webhookFailures: Labelled<Counter>; eventsDropped: Labelled<Counter>; outboxDepth: Labelled<Gauge> };
}

const POLL_MS = 250;
/** Wakes within this are one. */
const WAKE_MS = 20;
const BACKOFF_MIN = 1000;
const BACKOFF_MAX = 300_000;
/** Depths at which a warning is logged once on the way up. */
const ALERTS = [10_000, 100_000, 1_000_000];

export class EventDispatcher {
  private running = new Map<string, Promise<void>>();
  private failures = new Map<string, number>();
  private retryAt = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private alerted = 0;
  private stopped = false;
  private pending?: NodeJS.Timeout;

  constructor(private ctx: DispatcherContext) {}

  start(): void {
    // No sink any more: nothing will ever read what an earlier configuration left.
    if (!this.ctx.sinks().length) void this.ctx.outbox.clear().catch(() => {});
    // Also without sinks: a reload may add one.
    this.timer = setInterval(() => {
      this.wake();
      this.depth();
    }, POLL_MS);
    this.timer.unref();
  }

  /**
   * Something was written to the outbox: every idle sink looks for work soon. Wakes in the same
   * few milliseconds are one (a busy relay writes events for every message).
   */
  soon(): void {
    if (this.pending || this.stopped) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.wake();
    }, WAKE_MS);
  }

  private wake(): void {
    if (this.stopped) return;
    const sinks = this.ctx.sinks();
    if (!sinks.length) return;
    for (const s of sinks) {
      if (this.running.has(s.name) || (this.retryAt.get(s.name) ?? 0) > Date.now()) continue;
      const p = this.pump(s, sinks.map((x) => x.name))
        .catch((e: Error) => this.failed(s, e, 0))
        .finally(() => this.running.delete(s.name));
      this.running.set(s.name, p);
    }
  }

  /** The depth metric and the bound, on the poll (not on every wake). */
  private depth(): void {
    const sinks = this.ctx.sinks();
    if (!sinks.length || this.stopped) return;
    try {
      this.watchDepth(sinks.map((x) => x.name));
    } catch (e) {
      this.ctx.log.warn({ err: (e as Error).message }, 'events: the outbox could not be read');
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.pending);
    await Promise.allSettled([...this.running.values()]);
  }

  private async pump(sink: SinkConfig, all: string[]): Promise<void> {
    for (let rounds = 0; rounds < 100 && !this.stopped; rounds++) {
      const from = this.ctx.outbox.cursor(sink.name);
      const rows = this.ctx.outbox.read(from, sink.batch);
      if (!rows.length) return;
      const last = rows[rows.length - 1].seq;
      const bodies = rows.map((r) => r.body).filter((b) => !sink.types || sink.types.includes(typeOf(b)));
      if (bodies.length) {
        try {
          await this.send(sink, bodies, `${rows[0].seq}-${last}`);
        } catch (e) {
          this.failed(sink, e as Error, bodies.length);
          return;
        }
        this.ctx.metrics.eventsSent.labels(sink.name).inc(bodies.length);
      }
      if (this.failures.delete(sink.name)) this.ctx.log.info({ sink: sink.name }, `events: ${sink.name} takes events again`);
      this.retryAt.delete(sink.name);
      await this.ctx.outbox.advance(sink.name, last, all);
    }
  }

  /** A batch not taken (or the outbox not readable or writable): the sink waits longer each time. */
  private failed(sink: SinkConfig, e: Error, events: number): void {
    const n = (this.failures.get(sink.name) ?? 0) + 1;
    this.failures.set(sink.name, n);
    const wait = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** Math.min(n - 1, 20));
    this.retryAt.set(sink.name, Date.now() + wait);
    this.ctx.metrics.webhookFailures.labels(sink.name).inc();
    this.ctx.log.warn({ sink: sink.name, err: e.message, events, retry_in_ms: wait }, `events: ${sink.name} did not take ${events} events (${e.message}); again in ${Math.round(wait / 1000)} s`);
  }

  private async send(sink: SinkConfig, bodies: string[], delivery: string): Promise<void> {
    if (sink.file) {
      await fs.promises.appendFile(sink.file, bodies.map((b) => `${b}\n`).join(''), { mode: 0o640 });
      return;
    }
    const body = `[${bodies.join(',')}]`;
    const res = await fetch(sink.url!, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'smtplb-events',
        'x-smtplb-delivery': delivery,
        ...(sink.secret ? { 'x-smtplb-signature': signBody(sink.secret, body) } : {}),
      },
      body,
      signal: AbortSignal.timeout(sink.timeoutMs),
      redirect: 'error',
    });
    await res.arrayBuffer().catch(() => undefined);
    if (res.status < 200 || res.status > 299) throw new Error(`HTTP ${res.status}`);
  }

  /** The outbox's depth as a metric, a warning as it passes each alert level, and the bound kept. */
  private watchDepth(names: string[]): void {
    const depth = this.ctx.outbox.depth(names);
    this.ctx.metrics.outboxDepth.labels().set(depth);
    const level = ALERTS.filter((a) => depth >= a).length;
    if (level > this.alerted) this.ctx.log.warn({ outbox: depth }, `events: ${depth} events wait for a sink that does not take them (see smtplb_event_webhook_failures_total)`);
    this.alerted = level;
    const max = this.ctx.maxOutbox();
    if (depth > max) {
      void this.ctx.outbox.bound(max).then((n) => {
        if (!n) return;
        this.ctx.metrics.eventsDropped.labels().inc(n);
        this.ctx.log.error({ dropped: n, max_outbox: max }, `events: the outbox reached events.max_outbox (${max}); the ${n} oldest events were dropped`);
      }).catch(() => {});
    }
  }
}

function typeOf(body: string): EventType {
  return (/"type":"([a-z]+)"/.exec(body)?.[1] ?? 'received') as EventType;
}
