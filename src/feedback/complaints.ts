// Complaints (issue 25): a feedback-loop report taken at a feedback address is parsed (arf.ts),
// its original found (ledger.ts: by smtplb's queue id from its Received line, else by
// Message-ID; or from the original's List-Unsubscribe token), the recipient suppressed for the
// sender's domain, a `complained` event told with the original's tags, and the complaint
// counted. When a class's or a tag's complaint rate over 24 hours reaches `pause_at`, that
// class or tag is paused: a named suspension (`class:bulk`, `tag:campaign=spring`) that says
// why, under which new mail of it gets 451 at DATA until it lapses or an operator lifts it.
import type { Logger } from 'pino';
import type { Reply } from '../message/inbound.js';
import { normalAddress, type SuppressionEntry } from '../suppression/rules.js';
import { readToken, type UnsubscribeClaim } from '../unsubscribe/token.js';
import { parseArf, type Complaint } from './arf.js';
import { FeedbackLedger, type SentRow } from './ledger.js';
import { pausedBy, tallyKeys, toPause, withRates, type RateRow } from './rates.js';

export interface FeedbackSettings {
  addresses: string[];
  keep: number;
  pause_at?: number;
  min_delivered: number;
  pause_for: number;
}

interface Pause { id: string; destination: string; until: number; reason: string; who: string; pool: string; created: number }

export interface ComplaintContext {
  settings: () => FeedbackSettings | undefined;
  /** The spool directory whose feedback.db the node's processes share. */
  dir: string;
  scope: () => 'sender_domain' | 'global';
  suppress: (entries: SuppressionEntry[]) => void;
  event: (e: { recipient: string; sender: string; senderDomain: string; tags: Record<string, string>; queueId: string | null; messageId: string | null; via: string; key: string }) => Promise<void>;
  /** The unsubscribe secret and token lifetime, to read a token in the original's List-Unsubscribe. */
  unsubscribe: () => { secret: string; max_age: number } | undefined;
  pauses: () => Pause[];
  pause: (p: { pool: string; destination: string; until: number; reason: string; who: string }) => Promise<unknown>;
  counted: (feedbackType: string, matched: boolean) => void;
  log: Logger;
}

export class ComplaintDesk {
  private ledger?: FeedbackLedger;

  constructor(private ctx: ComplaintContext) {}

  private store(): FeedbackLedger | undefined {
    if (!this.ctx.settings()) return undefined;
    return (this.ledger ??= new FeedbackLedger(this.ctx.dir, () => this.ctx.settings()?.keep ?? 30 * 86_400_000));
  }

  isAddress(address: string): boolean {
    const s = this.ctx.settings();
    return !!s && s.addresses.some((a) => a.toLowerCase() === normalAddress(address));
  }

  /** A recipient delivered: remembered for complaints about it, counted for the rates. */
  delivered(m: { id: string; message_id: string | null; sender: string; class: string | null; tags: Record<string, string> }, rcpt: string): void {
    this.store()?.delivered({ queue_id: m.id, rcpt: normalAddress(rcpt), message_id: m.message_id, sender: m.sender, class: m.class, tags: m.tags, at: Date.now() });
  }

  /** The reply to a report's DATA: 250 once what it says is recorded (synced), 451 when that failed, 550 for what is no report. */
  async take(raw: Buffer, client: string): Promise<Reply> {
    let c: Complaint | null;
    try {
      c = await parseArf(raw);
    } catch (e) {
      return { code: 550, text: `5.6.0 Not a feedback report that can be read: ${(e as Error).message.slice(0, 100)}` };
    }
    if (!c) return { code: 550, text: '5.6.0 Not a feedback report (no message/feedback-report part, RFC 5965)' };
    if (c.feedbackType === 'not-spam') return { code: 250, text: '2.0.0 Report taken (not-spam: nothing to do)' };
    try {
      const found = this.find(c);
      this.ctx.counted(c.feedbackType, !!found.recipient);
      if (!found.recipient) {
        this.ctx.log.warn({ client, queue_id: c.queueId, message_id: c.messageId }, 'complaint: the report names no recipient smtplb can find; nothing suppressed');
        return { code: 250, text: '2.0.0 Report taken; its recipient was not found' };
      }
      const scope = this.ctx.scope() === 'global' || !found.senderDomain ? 'global' : found.senderDomain;
      this.ctx.suppress([{ scope, address: found.recipient, reason: `complaint (${c.feedbackType}${c.userAgent ? `, ${c.userAgent.slice(0, 60)}` : ''})`, class: null, source: 'complaint', created: Date.now(), expires: null }]);
      this.store()?.complained({ sender: found.sender || `postmaster@${found.senderDomain}`, class: found.class, tags: found.tags }, Date.now());
      await this.ctx.event({ recipient: found.recipient, sender: found.sender, senderDomain: found.senderDomain, tags: found.tags, queueId: found.queueId, messageId: found.messageId, via: `complaint: ${c.feedbackType}`, key: found.queueId ?? found.messageId ?? found.recipient });
      this.ctx.log.info({ recipient: found.recipient, scope, queue_id: found.queueId, feedback_type: c.feedbackType }, `complaint: ${found.recipient} suppressed for ${scope}`);
      await this.checkPause(found);
      return { code: 250, text: `2.0.0 Report taken: ${found.recipient} suppressed` };
    } catch (e) {
      this.ctx.log.error({ err: (e as Error).message }, 'complaint: could not be recorded');
      return { code: 451, text: '4.3.0 The report could not be recorded now; please try again later' };
    }
  }

  /** Who complained about which message, from the report, the deliveries kept, and the original's unsubscribe token. */
  private find(c: Complaint): { recipient: string | null; sender: string; senderDomain: string; class: string | null; tags: Record<string, string>; queueId: string | null; messageId: string | null } {
    const sent: SentRow | undefined = this.store()?.find({ queueId: c.queueId, recipient: c.recipient, messageId: c.messageId });
    const claim = this.tokenClaim(c.listUnsubscribe);
    const recipient = c.recipient ? normalAddress(c.recipient) : sent?.rcpt ?? claim?.recipient ?? null;
    const sender = sent?.sender ?? c.sender ?? '';
    const senderDomain = (sender.includes('@') ? sender.slice(sender.lastIndexOf('@') + 1) : claim?.senderDomain ?? '').toLowerCase();
    return { recipient, sender, senderDomain, class: sent?.class ?? null, tags: sent?.tags ?? claim?.tags ?? {}, queueId: sent?.queue_id ?? c.queueId, messageId: sent?.message_id ?? c.messageId };
  }

  private tokenClaim(listUnsubscribe: string | null): UnsubscribeClaim | undefined {
    const u = this.ctx.unsubscribe();
    const token = listUnsubscribe && /\/u\/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)>/.exec(listUnsubscribe)?.[1];
    if (!u || !token) return undefined;
    // A complaint may come long after the message: the token's signature matters, not its age.
    const r = readToken(u.secret, token, Date.now(), Number.MAX_SAFE_INTEGER);
    return r.ok ? r.claim : undefined;
  }

  /** Pause the class and tags of a complained-about message whose rate reached the line. */
  private async checkPause(m: { sender: string; class: string | null; tags: Record<string, string> }): Promise<void> {
    const s = this.ctx.settings();
    const store = this.store();
    if (!s?.pause_at || !store) return;
    const keys = tallyKeys({ sender: m.sender || '@', class: m.class, tags: m.tags }).filter((k) => k.kind !== 'domain');
    const rows = withRates(store.tallies(Date.now(), 0, keys));
    const now = Date.now();
    for (const p of toPause(rows, { pause_at: s.pause_at, min_delivered: s.min_delivered })) {
      if (this.ctx.pauses().some((x) => x.destination === p.destination && x.until > now)) continue;
      await this.ctx.pause({ pool: '*', destination: p.destination, until: now + s.pause_for, reason: p.reason, who: 'smtplb (complaints)' });
      this.ctx.log.warn({ destination: p.destination }, `complaints: ${p.destination} paused: ${p.reason}`);
    }
  }

  /** The pause that holds new mail of this class or with these tags, if any: the reply for its DATA. */
  paused(cls: string | undefined, tags: Record<string, string>, now = Date.now()): Reply | undefined {
    const p = pausedBy(this.ctx.pauses().filter((x) => x.until > now), cls, tags);
    return p ? { code: 451, text: `4.7.1 Sending of ${p.destination} is paused until ${new Date(p.until).toISOString()}: ${p.reason.slice(0, 200)}` } : undefined;
  }

  /** Complaint rates over 24 hours (most complaints first), for status, metrics and the dashboard. */
  rates(limit = 20): RateRow[] {
    return this.store() ? withRates(this.store()!.tallies(Date.now(), limit)) : [];
  }

  close(): void {
    this.ledger?.close();
  }
}
