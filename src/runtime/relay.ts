// The relay's moving parts for one process: spool, queue manager, delivery agent, routing.
// Listeners hand accepted messages to `accept`; the queue manager takes it from there.
import type { Logger } from 'pino';
import type { Pool, PoolSet } from '../balancing/pool.js';
import type { Config } from '../config/schema.js';
import { deliver, type DeliveryRequest, type RcptOutcome } from '../delivery/deliver.js';
import { UpstreamCache } from '../delivery/upstream.js';
import type { InboundMessage, Reply } from '../listeners/smtp-listener.js';
import { chooseRoute, domainOf, type RouteQuery } from '../routing/route.js';
import { Scheduler } from '../scheduler/scheduler.js';
import { Spool, SpoolFullError } from '../spool/spool.js';

export class Relay {
  readonly spool: Spool;
  readonly scheduler: Scheduler;
  private cache = new UpstreamCache();

  constructor(private config: () => Config, private pools: () => Map<string, Pool>, private poolSet: PoolSet, private log: Logger) {
    const c = config();
    this.spool = new Spool(c.spool, c.queue.min_free);
    this.scheduler = new Scheduler({
      spool: this.spool,
      pools,
      policy: () => this.config().queue,
      hostname: () => this.config().hostname,
      deliver: (req) => this.deliverNow(req),
      routeBounce: (address) => this.routeOne(address, { listener: 'dsn' }),
      log,
      onAttempt: (m, pool, domain, a) =>
        log.info(
          { queue_id: m.id, message_id: m.message_id, sender: m.sender, domain, pool, server: a.server, code: a.code, reply: a.text, recipients: a.rcpts.length, delivery_ms: a.ms, queue_delay_ms: a.at - m.created },
          `delivery attempt ${m.id} to ${domain} via ${pool}/${a.server}: ${a.code ?? '-'} ${a.text}`,
        ),
    });
  }

  start(): void {
    this.scheduler.start();
  }

  route(q: RouteQuery) {
    return chooseRoute(this.config().routes, q);
  }

  private routeOne(address: string, q: Partial<RouteQuery>) {
    const domain = domainOf(address);
    const choice = this.route({ domain, ...q });
    return choice ? { address, domain, pool: choice.rule.pool, route: choice.index } : null;
  }

  deliverNow(req: DeliveryRequest) {
    return deliver(req, { pools: this.poolSet, cache: this.cache, helo: (p) => this.pools().get(p)?.cfg.helo ?? this.config().hostname });
  }

  async accept(m: InboundMessage, mode: 'queue' | 'cutthrough', fallback: 'queue' | 'reject'): Promise<Reply> {
    if (mode === 'cutthrough') return this.cutThrough(m, fallback);
    return this.enqueue(m, m.recipients);
  }

  private async enqueue(m: InboundMessage, recipients: InboundMessage['recipients'], note = ''): Promise<Reply> {
    try {
      const id = await this.spool.accept({ sender: m.sender, recipients, listener: m.listener, user: m.user, class: m.class, client: m.client, messageId: m.messageId }, m.body);
      return { code: 250, text: `2.0.0 Ok: queued as ${id}${note}` };
    } catch (e) {
      if (e instanceof SpoolFullError) {
        this.log.error({ listener: m.listener, error: e.message }, 'spool full: refusing mail with 452 4.3.1');
        return { code: 452, text: '4.3.1 Insufficient system storage, try again later' };
      }
      throw e;
    }
  }

  /**
   * Relay before answering DATA: the client's 250 follows an upstream's 250. Recipients no
   * upstream took are queued (or the message refused with 451 when fallback is reject and
   * nothing was delivered); recipients refused permanently get the upstream's refusal, or a
   * DSN when others of the same message went through.
   */
  private async cutThrough(m: InboundMessage, fallback: 'queue' | 'reject'): Promise<Reply> {
    const byPool = new Map<string, InboundMessage['recipients']>();
    for (const r of m.recipients) byPool.set(r.pool, [...(byPool.get(r.pool) ?? []), r]);
    const results = await Promise.all([...byPool].map(([pool, rs]) => this.deliverNow({ pool, sender: m.sender, recipients: rs.map((r) => r.address), body: m.body })));
    const outcomes: RcptOutcome[] = results.flatMap((r) => r.outcomes);
    const delivered = outcomes.filter((o) => o.kind === 'delivered');
    const failed = outcomes.filter((o) => o.kind === 'failed');
    const deferred = outcomes.filter((o) => o.kind === 'deferred');
    for (const r of results) for (const a of r.attempts) this.log.info({ listener: m.listener, message_id: m.messageId, server: a.server, code: a.code, reply: a.text, delivery_ms: a.ms }, `cut-through attempt via ${a.server}: ${a.code ?? '-'} ${a.text}`);
    if (failed.length === outcomes.length) return { code: failed[0].code ?? 550, text: stripCode(failed[0].text) || '5.0.0 Rejected by the upstream' };
    if (failed.length) {
      // Some recipients refused while others went on: they get a DSN, as a queued message would.
      const row = { id: `C${Date.now().toString(36).toUpperCase()}`, created: Date.now(), sender: m.sender, size: m.body.length, message_id: m.messageId ?? null, listener: m.listener, user: m.user ?? null, class: m.class ?? null, client: m.client, file: '', dsn_of: null };
      await this.scheduler.bounce(row, failed.map((f) => ({ rcpt: f.rcpt, action: 'failed', code: f.code, text: f.text, server: f.server })), m.body, 'rejected');
    }
    if (deferred.length === 0) return { code: 250, text: `2.0.0 Ok: relayed via ${[...new Set(delivered.map((d) => d.server))].join(', ')}` };
    if (delivered.length === 0 && fallback === 'reject') return { code: 451, text: `4.4.1 No upstream accepted the message: ${deferred[0].text}` };
    const rest = m.recipients.filter((r) => deferred.some((d) => d.rcpt === r.address));
    return this.enqueue(m, rest, delivered.length ? ` (${delivered.length} relayed at once)` : ' (upstreams busy, queued)');
  }

  async shutdown(): Promise<void> {
    await this.scheduler.stop();
    this.cache.closeAll();
    await this.spool.flush();
    this.spool.close();
  }
}

function stripCode(text: string): string {
  return text.replace(/^\d{3}[ -]/, '');
}
