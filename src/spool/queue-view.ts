// The queue as the queue tools and the admin see it (Postfix's showq): destinations by size
// with their oldest message, one destination's open recipients, a filtered listing, a
// message's history. Reads only, each bounded however large the queue: from the queue
// index's counters plus index seeks, never a scan of the recipients.
import type Database from 'better-sqlite3';
import type { QueueIndex } from './queue-index.js';
import { idTime, type DestSummary, type EventRow, type MessageRow, type RecipientRow } from './records.js';

/** How long a destination's oldest-message time is remembered for status and metrics. */
const OLDEST_TTL = 5000;

export class QueueView {
  private oldestCache = new Map<string, { at: number; oldest: number }>();
  private oldestStmt: Database.Statement;
  private eventsStmt: Database.Statement;

  constructor(
    private db: Database.Database,
    private index: QueueIndex,
    private store: { message(id: string): MessageRow | undefined; recipients(id: string): RecipientRow[] },
  ) {
    this.oldestStmt = db.prepare(`SELECT msg FROM recipients WHERE pool = ? AND domain = ? AND state IN ('queued', 'held', 'failed') ORDER BY msg LIMIT 1`);
    this.eventsStmt = db.prepare(`SELECT * FROM events WHERE msg = ? ORDER BY at, rowid`);
  }

  /** Oldest open message and count per (pool, destination), largest first: from the counters plus one index seek each. */
  destinations(limit: number): { pool: string; domain: string; queued: number; oldest: number }[] {
    return this.byDestination(limit).top;
  }

  /**
   * The `limit` largest destinations with their oldest message, and the rest summed. The rest's
   * oldest is looked up among its 200 largest only: the work per call stays bounded however
   * many destinations there are.
   */
  byDestination(limit: number): { top: { pool: string; domain: string; queued: number; oldest: number }[]; rest: { destinations: number; queued: number; oldest: number | null } } {
    const size = (d: DestSummary) => d.queued + d.held + d.failed;
    const all = [...this.index.destinationSummaries()].sort((a, b) => size(b) - size(a));
    const now = Date.now();
    // An index seek each, remembered for a few seconds: dashboards poll every second, and on
    // a large spool a seek can wait for the disk (SQLite runs on the event loop).
    const oldest = (d: DestSummary) => {
      const key = `${d.pool}|${d.domain}`;
      const hit = this.oldestCache.get(key);
      if (hit && now - hit.at < OLDEST_TTL) return hit.oldest;
      const o = this.oldestStmt.get(d.pool, d.domain) as { msg: string } | undefined;
      const v = o ? idTime(o.msg) : now;
      if (this.oldestCache.size > 10_000) this.oldestCache.clear();
      this.oldestCache.set(key, { at: now, oldest: v });
      return v;
    };
    const top = all.slice(0, limit).map((d) => ({ pool: d.pool, domain: d.domain, queued: size(d), oldest: oldest(d) }));
    const others = all.slice(limit);
    return {
      top,
      rest: { destinations: others.length, queued: others.reduce((n, d) => n + size(d), 0), oldest: others.length ? Math.min(...others.slice(0, 200).map(oldest)) : null },
    };
  }

  /**
   * One destination's open recipients (queued, held, failed), oldest message first, with their
   * message's time and sender: one seek on recipients_age (pool, domain, msg) that stops after
   * `limit` rows, however large the queue.
   */
  openFor(pool: string, domain: string, limit: number): (RecipientRow & { created: number; sender: string })[] {
    this.openForStmt ??= this.db.prepare(
      `SELECT r.*, m.created AS created, m.sender AS sender FROM recipients r INDEXED BY recipients_age JOIN messages m ON m.id = r.msg
       WHERE r.pool = ? AND r.domain = ? AND r.state IN ('queued', 'held', 'failed') ORDER BY r.msg LIMIT ?`,
    );
    return this.openForStmt.all(pool, domain, limit) as (RecipientRow & { created: number; sender: string })[];
  }

  private openForStmt?: Database.Statement;

  /** When one destination's oldest open message was accepted (an index seek), or null when it has none. */
  oldest(pool: string, domain: string): number | null {
    const o = this.oldestStmt.get(pool, domain) as { msg: string } | undefined;
    return o ? idTime(o.msg) : null;
  }

  /** Queue listing with filters, for the queue tools. */
  list(f: { domain?: string; pool?: string; state?: string; olderThanMs?: number; limit?: number } = {}): (MessageRow & { recipients: RecipientRow[] })[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (f.domain) {
      where.push('r.domain = ?');
      args.push(f.domain.toLowerCase());
    }
    if (f.pool) {
      where.push('r.pool = ?');
      args.push(f.pool);
    }
    if (f.state) {
      where.push('r.state = ?');
      args.push(f.state);
    }
    if (f.olderThanMs) {
      where.push('m.created <= ?');
      args.push(Date.now() - f.olderThanMs);
    }
    const ids = this.db
      .prepare(`SELECT DISTINCT m.id FROM messages m JOIN recipients r ON r.msg = m.id ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY m.id LIMIT ?`)
      .all(...args, f.limit ?? 1000) as { id: string }[];
    return ids.map(({ id }) => ({ ...this.store.message(id)!, recipients: this.store.recipients(id) }));
  }

  /** A message's history: acceptance, attempts, operator changes. */
  events(id: string): EventRow[] {
    const rows = this.eventsStmt.all(id) as EventRow[];
    const m = this.store.message(id);
    // Spools written before this version have the row; newer ones show it from the message.
    if (!m || rows.some((e) => e.kind === 'accepted')) return rows;
    const n = this.store.recipients(id).length;
    return [{ msg: id, at: m.created, rcpt: null, kind: 'accepted', server: null, code: 250, text: `from ${m.client} via ${m.listener}, ${n} recipient(s), ${m.size} bytes` }, ...rows];
  }
}
