// Cut-through (`delivery: cutthrough`): the message is relayed before DATA is answered, so the
// client's 250 follows an upstream's 250; what no upstream took is queued (or refused with
// 451 under `cutthrough_fallback: reject`). The queue's delivery agent does the relaying and,
// for several recipients, the queue manager settles the outcomes as it settles any delivery.
import type { Logger } from 'pino';
import type { Pool } from '../balancing/pool.js';
import type { DeliveryGate, DeliveryRequest, DeliveryResult } from '../delivery/deliver.js';
import { enhancedCode, type DeliveryLog } from '../delivery/delivery-log.js';
import { wantsSuccess } from '../message/dsn-params.js';
import type { InboundInSpool as Received, Reply } from '../message/inbound.js';
import type { Plan } from '../scheduler/shaper.js';
import type { Envelope, MessageRow, RecipientRow } from '../spool/records.js';
import type { Spool } from '../spool/spool.js';

export interface CutThroughContext {
  spool: Spool;
  log: Logger;
  deliveryLog: DeliveryLog;
  pools: () => Map<string, Pool>;
  plan: (pool: Pool, domain: string) => Plan;
  gate: (domain: string, pool: string) => DeliveryGate;
  deliver: (req: DeliveryRequest) => Promise<DeliveryResult>;
  /** The queue manager's settle: outcomes, DSNs, the delivery log's finals. */
  settle: (m: MessageRow, rows: RecipientRow[], r: Pick<DeliveryResult, 'outcomes' | 'attempts'>) => Promise<void>;
  enqueue: (m: Received, recipients: Received['recipients'], note?: string) => Promise<Reply>;
  envelope: (m: Received, recipients: Received['recipients']) => Envelope;
  spoolRefused: (m: { listener: string }, e: unknown) => Reply | null;
  /** Every message is made durable before it is relayed (events are on: each outcome is written with its event). */
  spoolFirst: () => boolean;
}

export class CutThrough {
  constructor(private ctx: CutThroughContext) {}

  /**
   * Relay before answering DATA: the client's 250 follows an upstream's 250. What no upstream
   * took is queued (or, with `fallback: reject`, refused with 451 when nothing went through).
   * A client never hears 4xx once any upstream accepted any recipient: a message with several
   * recipients is made durable first (recipients in flight), so whatever the upstreams answer
   * the rest is ours, and its outcomes and DSN are settled as the queue manager settles any
   * delivery. A single recipient has one outcome, so it needs no durable copy first.
   */
  async relay(m: Received, fallback: 'queue' | 'reject'): Promise<Reply> {
    // Several recipients, or one who asked to hear of success (a "relayed" DSN may be owed):
    // made durable first, and settled as the queue settles.
    if (m.recipients.length > 1 || m.recipients.some((r) => r.dsn && wantsSuccess(r.dsn)) || this.ctx.spoolFirst()) return this.cutThroughOwned(m, fallback);
    await m.incoming.close();
    const result = await this.relayNow(m, m.recipients);
    const o = result.outcomes[0];
    this.logCutThrough(m, result.attempts, m.incoming.id, o.kind === 'delivered' ? o : undefined);
    if (o.kind === 'deferred' && fallback === 'queue') return this.ctx.enqueue(m, m.recipients, ' (upstreams busy, queued)');
    await m.incoming.discard();
    if (o.kind === 'delivered') return { code: 250, text: `2.0.0 Ok: queued as ${m.incoming.id} (relayed via ${o.server})` };
    if (o.kind === 'failed') return { code: o.code ?? 550, text: stripCode(o.text) || '5.0.0 Rejected by the upstream' };
    return { code: 451, text: `4.4.1 No upstream accepted the message: ${stripCode(o.text)}` };
  }

  private async cutThroughOwned(m: Received, fallback: 'queue' | 'reject'): Promise<Reply> {
    let id: string;
    try {
      id = await this.ctx.spool.commitIncoming(m.incoming, this.ctx.envelope(m, m.recipients), m.prefix, { leased: true });
    } catch (e) {
      const r = this.ctx.spoolRefused(m, e);
      if (r) return r;
      throw e;
    }
    const result = await this.relayNow(m, m.recipients);
    this.logCutThrough(m, result.attempts, id);
    const delivered = result.outcomes.filter((o) => o.kind === 'delivered');
    const failed = result.outcomes.filter((o) => o.kind === 'failed');
    // Nothing went through: the client may keep the message (no DSN, no copy here).
    if (delivered.length === 0 && (failed.length === result.outcomes.length || fallback === 'reject')) {
      await this.ctx.spool.remove(id);
      if (failed.length === result.outcomes.length) return { code: failed[0].code ?? 550, text: stripCode(failed[0].text) || '5.0.0 Rejected by the upstream' };
      const why = result.outcomes.find((o) => o.kind === 'deferred') ?? result.outcomes[0];
      return { code: 451, text: `4.4.1 No upstream accepted the message: ${stripCode(why.text)}` };
    }
    // Deleted by an operator while it was being relayed: what went through went through, and
    // the client, which must never hear 4xx after an upstream accepted, gets its 250.
    const row = this.ctx.spool.message(id);
    if (row) await this.ctx.settle(row, this.ctx.spool.recipients(id), { outcomes: result.outcomes, attempts: result.attempts });
    else this.ctx.log.warn({ queue_id: id }, 'message deleted from the queue during its cut-through relay; outcomes not recorded');
    const deferred = result.outcomes.length - delivered.length - failed.length;
    const note = deferred ? `, ${deferred} queued` : '';
    return { code: 250, text: `2.0.0 Ok: queued as ${id} (${delivered.length} relayed at once${note})` };
  }

  /** Deliver now, per (pool, destination) group, within shaping. */
  private async relayNow(m: Received, recipients: Received['recipients']) {
    const body = m.incoming.body(m.prefix);
    const groups = new Map<string, { pool: string; domain: string; rs: Received['recipients'] }>();
    for (const r of recipients) {
      const g = groups.get(`${r.pool}|${r.domain}`) ?? { pool: r.pool, domain: r.domain, rs: [] };
      g.rs.push(r);
      groups.set(`${r.pool}|${r.domain}`, g);
    }
    const results = await Promise.all(
      [...groups.values()].map(async ({ pool, domain, rs }) => {
        const p = this.ctx.pools().get(pool);
        const plan = p ? this.ctx.plan(p, domain) : { ok: true as const, exclude: new Set<string>() };
        if (!plan.ok) return { outcomes: rs.map((r) => ({ rcpt: r.address, kind: 'deferred' as const, code: null, text: plan.reason, server: null })), attempts: [] };
        try {
          const rcptDsn = new Map(rs.filter((r) => r.dsn).map((r) => [r.address, r.dsn!]));
          return await this.ctx.deliver({ pool, domain, sender: m.sender, recipients: rs.map((r) => r.address), body, exclude: plan.exclude, gate: this.ctx.gate(domain, pool), params: m.params, rcptDsn });
        } catch (e) {
          this.ctx.log.error({ err: e, listener: m.listener }, 'cut-through delivery failed unexpectedly');
          return { outcomes: rs.map((r) => ({ rcpt: r.address, kind: 'deferred' as const, code: null, text: '4.3.0 internal error', server: null })), attempts: [] };
        }
      }),
    );
    return { outcomes: results.flatMap((r) => r.outcomes), attempts: results.flatMap((r) => r.attempts) };
  }

  /**
   * Cut-through attempts go to the delivery log like the queue's (the record operators grep),
   * not to the process log: nothing per message there at `info`. A single recipient relayed at
   * once gets one line when its first attempt delivers it: its `delivered` record, with that
   * attempt's server, reply and time (`queue_id` is its spool id, kept in no queue); each
   * attempt that did not deliver gets its `attempt` line first. With several recipients, the
   * queue manager's settle writes the finals.
   */
  private logCutThrough(m: Received, attempts: { server: string; code: number | null; text: string; ms: number }[], queueId: string, delivered?: { rcpt: string; server: string | null; code: number | null; text: string }): void {
    const r0 = m.recipients[0];
    const common = { queue_id: queueId, message_id: m.messageId ?? null, sender: m.sender, recipient_domain: r0.domain, route: r0.route, pool: r0.pool, queue_delay_ms: 0 };
    const last = delivered ? attempts[attempts.length - 1] : undefined;
    attempts.forEach((a, i) => {
      if (a !== last) this.ctx.deliveryLog.write({ ...common, event: 'attempt', recipients: m.recipients.length, server: a.server, code: a.code, enhanced_code: enhancedCode(a.text), reply: a.text, delivery_ms: a.ms, attempt: i + 1 });
    });
    if (delivered) this.ctx.deliveryLog.write({ ...common, event: 'delivered', recipient: delivered.rcpt, server: delivered.server, code: delivered.code, enhanced_code: enhancedCode(delivered.text), reply: delivered.text, delivery_ms: last?.ms ?? null, attempt: attempts.length });
  }
}

function stripCode(text: string): string {
  return text.replace(/^\d{3}[ -]/, '');
}
