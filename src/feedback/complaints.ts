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

const RATES_CACHE_MS = 5000;

interface Found {
  recipient: string | null;
  /** Why no recipient, when none. */
  why: string;
  sender: string;
  senderDomain: string;
  class: string | null;
  tags: Record<string, string>;
  queueId: string | null;
  messageId: string | null;
}

export class ComplaintDesk {
  private ledger?: FeedbackLedger;

  constructor(private ctx: ComplaintContext) {}

  /** The ledger, opened on first use; a file that cannot be opened is tried again a minute later, not on every delivery. */
  private store(): FeedbackLedger | undefined {
    if (!this.ctx.settings()) return undefined;
    if (this.ledger) return this.ledger;
    if (Date.now() < this.retryOpenAt) throw new Error('feedback.db could not be opened a moment ago');
    try {
      return (this.ledger = new FeedbackLedger(this.ctx.dir, () => this.ctx.settings()?.keep ?? 30 * 86_400_000, (e) => this.quiet(e, 'deliveries for complaints could not be written (dropped)')));
    } catch (e) {
      this.retryOpenAt = Date.now() + 60_000;
      throw e;
    }
  }

  private retryOpenAt = 0;
  private warned = new Map<string, number>();

  /** Bookkeeping that failed: each kind said at most once a minute, never thrown into delivery. */
  private quiet(e: unknown, what: string): void {
    const now = Date.now();
    if (now - (this.warned.get(what) ?? 0) < 60_000) return;
    this.warned.set(what, now);
    this.ctx.log.warn({ err: (e as Error)?.message ?? String(e) }, `feedback: ${what}`);
  }

  isAddress(address: string): boolean {
    const s = this.ctx.settings();
    return !!s && s.addresses.some((a) => a.toLowerCase() === normalAddress(address));
  }

  /** A recipient delivered: remembered for complaints about it, counted for the rates. */
  delivered(m: { id: string; message_id: string | null; sender: string; class: string | null; tags: Record<string, string> }, rcpt: string): void {
    try {
      this.store()?.delivered({ queue_id: m.id, rcpt: normalAddress(rcpt), message_id: m.message_id, sender: m.sender, class: m.class, tags: m.tags, at: Date.now() });
    } catch (e) {
      // Called as a delivery settles: a feedback.db that cannot be opened must not undo that.
      this.quiet(e, 'feedback.db could not be opened; this delivery is not remembered for complaints');
    }
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
      if (!found.recipient) {
        this.ctx.counted(c.feedbackType, false);
        this.ctx.log.warn({ client, queue_id: c.queueId, message_id: c.messageId, why: found.why }, `complaint: ${found.why}; nothing suppressed`);
        return { code: 250, text: `2.0.0 Report taken; ${found.why}` };
      }
      // A report whose sender's domain is unknown suppresses nothing under per-domain scope:
      // a global entry would stop the recipient's mail from every sender for one complaint.
      const global = this.ctx.scope() === 'global';
      if (!global && !found.senderDomain) {
        this.ctx.log.warn({ client, recipient: found.recipient, queue_id: found.queueId }, 'complaint: the sending domain of the original is not known; nothing suppressed');
        return { code: 250, text: '2.0.0 Report taken; the sender of the original is not known' };
      }
      const scope = global ? 'global' : found.senderDomain;
      const store = this.store();
      const now = Date.now();
      // The suppression first (an upsert: a report taken again after a failure repeats it harmlessly).
      this.ctx.suppress([{ scope, address: found.recipient, reason: `complaint (${c.feedbackType}${c.userAgent ? `, ${c.userAgent.slice(0, 60)}` : ''})`, class: null, source: 'complaint', created: now, expires: null }]);
      // One complaint per message and recipient: a second report of it is taken and not counted
      // again. The key is recorded, with the count, only once the event is out: a report answered
      // 451 (the event not written) is taken again in full when the provider retries.
      const key = `${found.queueId ?? found.messageId ?? `domain:${found.senderDomain}`}|${found.recipient}`;
      if (store?.complaintSeen(key)) return { code: 250, text: '2.0.0 Report taken (this complaint was already recorded)' };
      await this.ctx.event({ recipient: found.recipient, sender: found.sender, senderDomain: found.senderDomain, tags: found.tags, queueId: found.queueId, messageId: found.messageId, via: `complaint: ${c.feedbackType}`, key: found.queueId ?? found.messageId ?? found.recipient });
      store?.complained(key, { sender: found.sender || `postmaster@${found.senderDomain}`, class: found.class, tags: found.tags }, now);
      this.rateCache = undefined;
      this.ctx.counted(c.feedbackType, true);
      this.ctx.log.info({ recipient: found.recipient, scope, queue_id: found.queueId, feedback_type: c.feedbackType }, `complaint: ${found.recipient} suppressed for ${scope}`);
      // What is recorded is recorded: a pause that cannot be made now is said, and tried again with the next complaint.
      await this.checkPause(found).catch((e: unknown) => this.ctx.log.error({ err: (e as Error)?.message }, 'complaints: a pause could not be made'));
      return { code: 250, text: `2.0.0 Report taken: ${found.recipient} suppressed` };
    } catch (e) {
      this.ctx.log.error({ err: (e as Error).message }, 'complaint: could not be recorded');
      return { code: 451, text: '4.3.0 The report could not be recorded now; please try again later' };
    }
  }

  /**
   * Who complained about which message. The recipient is the one the provider names
   * (Original-Rcpt-To), else the one the original's unsubscribe token names, else the only
   * recipient smtplb delivered that message to; the original's To decides only between several
   * deliveries when it matches exactly one, or when smtplb has no record of the message. Anything
   * less than one answer suppresses nobody: a complaint must not cost another recipient.
   */
  private find(c: Complaint): Found {
    const rows = this.store()?.candidates({ queueId: c.queueId, messageId: c.messageId }) ?? [];
    const claim = this.tokenClaim(c.listUnsubscribe);
    const named = c.recipient ? normalAddress(c.recipient) : claim?.recipient ? normalAddress(claim.recipient) : null;
    let recipient: string | null = null;
    let sent: SentRow | undefined;
    let why = 'its recipient was not found';
    const ambiguous = `the original went to ${rows.length} recipients and the report does not say which one complained`;
    if (named) {
      recipient = named;
      sent = rows.find((r) => r.rcpt === named);
    } else if (rows.length === 1) {
      sent = rows[0];
      recipient = sent.rcpt;
    } else if (c.to) {
      const to = normalAddress(c.to);
      const match = rows.filter((r) => r.rcpt === to);
      if (match.length === 1) [sent, recipient] = [match[0], to];
      else if (!rows.length) recipient = to;
      else why = ambiguous;
    } else if (rows.length > 1) why = ambiguous;
    // The message's own attributes (sender, class, tags) when every candidate is one message.
    const one = sent ?? (rows.length && rows.every((r) => r.queue_id === rows[0].queue_id) ? rows[0] : undefined);
    const sender = one?.sender ?? c.sender ?? '';
    const senderDomain = (sender.includes('@') ? sender.slice(sender.lastIndexOf('@') + 1) : claim?.senderDomain ?? '').toLowerCase();
    return { recipient, why, sender, senderDomain, class: one?.class ?? null, tags: one?.tags ?? claim?.tags ?? {}, queueId: one?.queue_id ?? c.queueId, messageId: one?.message_id ?? c.messageId };
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
    // Read at most every few seconds: every scrape and status call asks, the tallies move hourly.
    const now = Date.now();
    if (this.rateCache && this.rateCache.limit === limit && now - this.rateCache.at < RATES_CACHE_MS) return this.rateCache.rows;
    try {
      const store = this.store();
      const rows = store ? withRates(store.tallies(now, limit)) : [];
      this.rateCache = { at: now, limit, rows };
      return rows;
    } catch (e) {
      // A scrape or status call must not fail for it.
      this.quiet(e, 'complaint rates could not be read from feedback.db');
      return this.rateCache?.rows ?? [];
    }
  }

  private rateCache?: { at: number; limit: number; rows: RateRow[] };

  close(): void {
    this.ledger?.close();
  }
}
