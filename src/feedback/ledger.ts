// What a complaint needs to find its message and to be counted (only with `feedback:` set):
// the deliveries of the last days, by queue id and recipient and by Message-ID (the message
// has left the queue by the time a complaint comes), and hourly tallies of deliveries and
// complaints per sender domain, class and tag. A SQLite file of its own, `<spool>/feedback.db`,
// shared by every process of the node (as suppressions.db is): a complaint taken by one worker
// finds a delivery made by another. Deliveries are written in batches off the delivery path
// (every 250 ms, one transaction): losing the last batch in a crash loses the tags of a later
// complaint about those messages, never a message or a suppression.
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { hourOf, tallyKeys, WINDOW_HOURS, type TallyKind, type TallyRow } from './rates.js';

export interface SentRow {
  queue_id: string;
  rcpt: string;
  message_id: string | null;
  sender: string;
  class: string | null;
  tags: Record<string, string>;
  at: number;
}

const FLUSH_MS = 250;
const BATCH_MAX = 5000;

export class FeedbackLedger {
  private db: Database.Database;
  private pending: SentRow[] = [];
  private timer?: NodeJS.Timeout;
  private lastPrune = 0;

  constructor(dir: string, private keepMs: () => number) {
    fs.mkdirSync(dir, { recursive: true });
    this.db = new Database(path.join(dir, 'feedback.db'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS sent (queue_id TEXT NOT NULL, rcpt TEXT NOT NULL, message_id TEXT, sender TEXT NOT NULL, class TEXT, tags TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (queue_id, rcpt)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS sent_message_id ON sent (message_id);
      CREATE INDEX IF NOT EXISTS sent_at ON sent (at);
      CREATE TABLE IF NOT EXISTS tally (hour INTEGER NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, delivered INTEGER NOT NULL DEFAULT 0, complaints INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (hour, kind, key)) WITHOUT ROWID;
    `);
  }

  /** A recipient delivered: kept for complaints, counted in the hour's tallies (written within FLUSH_MS). */
  delivered(row: SentRow): void {
    this.pending.push(row);
    if (this.pending.length >= BATCH_MAX) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.pending.length) return;
    const rows = this.pending;
    this.pending = [];
    const ins = this.db.prepare(`INSERT OR REPLACE INTO sent (queue_id, rcpt, message_id, sender, class, tags, at) VALUES (?, ?, ?, ?, ?, ?, ?)`);
    const count = this.db.prepare(`INSERT INTO tally (hour, kind, key, delivered) VALUES (?, ?, ?, ?) ON CONFLICT (hour, kind, key) DO UPDATE SET delivered = delivered + excluded.delivered`);
    this.db.transaction(() => {
      const sums = new Map<string, number>();
      for (const r of rows) {
        ins.run(r.queue_id, r.rcpt, r.message_id, r.sender, r.class, JSON.stringify(r.tags), r.at);
        for (const k of tallyKeys(r)) {
          const id = `${hourOf(r.at)}\0${k.kind}\0${k.key}`;
          sums.set(id, (sums.get(id) ?? 0) + 1);
        }
      }
      for (const [id, n] of sums) {
        const [hour, kind, key] = id.split('\0');
        count.run(Number(hour), kind, key, n);
      }
    })();
    this.prune(Date.now());
  }

  /** The delivery a complaint is about: by queue id and recipient, else by Message-ID (and recipient when given). */
  find(q: { queueId?: string | null; recipient?: string | null; messageId?: string | null }): SentRow | undefined {
    this.flush();
    let row: (Omit<SentRow, 'tags'> & { tags: string }) | undefined;
    if (q.queueId && q.recipient) row = this.db.prepare(`SELECT * FROM sent WHERE queue_id = ? AND rcpt = ?`).get(q.queueId, q.recipient.toLowerCase()) as typeof row;
    if (!row && q.queueId && !q.recipient) row = this.db.prepare(`SELECT * FROM sent WHERE queue_id = ? LIMIT 1`).get(q.queueId) as typeof row;
    if (!row && q.messageId) {
      row = (q.recipient
        ? this.db.prepare(`SELECT * FROM sent WHERE message_id = ? AND rcpt = ? LIMIT 1`).get(q.messageId, q.recipient.toLowerCase())
        : this.db.prepare(`SELECT * FROM sent WHERE message_id = ? LIMIT 1`).get(q.messageId)) as typeof row;
    }
    if (!row) return undefined;
    let tags: Record<string, string> = {};
    try {
      tags = JSON.parse(row.tags) as Record<string, string>;
    } catch {
      /* a row this code did not write: no tags */
    }
    return { ...row, tags };
  }

  /** A complaint, counted in the hour's tallies under the message's keys. */
  complained(m: { sender: string; class?: string | null; tags?: Record<string, string> }, at: number): void {
    const up = this.db.prepare(`INSERT INTO tally (hour, kind, key, complaints) VALUES (?, ?, ?, 1) ON CONFLICT (hour, kind, key) DO UPDATE SET complaints = complaints + 1`);
    this.db.transaction(() => {
      for (const k of tallyKeys(m)) up.run(hourOf(at), k.kind, k.key);
    })();
  }

  /** Deliveries and complaints over the last 24 hours: the keys with most complaints (then most deliveries), `limit` per kind. */
  tallies(now: number, limit = 50, only?: { kind: TallyKind; key: string }[]): TallyRow[] {
    this.flush();
    const since = hourOf(now) - WINDOW_HOURS;
    if (only) {
      const one = this.db.prepare(`SELECT ? AS kind, ? AS key, coalesce(sum(delivered), 0) AS delivered, coalesce(sum(complaints), 0) AS complaints FROM tally WHERE hour > ? AND kind = ? AND key = ?`);
      return only.map((k) => one.get(k.kind, k.key, since, k.kind, k.key) as TallyRow);
    }
    const q = this.db.prepare(`SELECT kind, key, sum(delivered) AS delivered, sum(complaints) AS complaints FROM tally WHERE hour > ? AND kind = ? GROUP BY key ORDER BY complaints DESC, delivered DESC LIMIT ?`);
    return (['domain', 'class', 'tag'] as const).flatMap((kind) => (q.all(since, kind, limit) as TallyRow[]).map((r) => ({ ...r, kind })));
  }

  /** Deliveries older than `keep` and tallies past the window go, a bounded batch at a time (at most once a minute). */
  private prune(now: number): void {
    if (now - this.lastPrune < 60_000) return;
    this.lastPrune = now;
    this.db.prepare(`DELETE FROM sent WHERE (queue_id, rcpt) IN (SELECT queue_id, rcpt FROM sent WHERE at < ? LIMIT 10000)`).run(now - this.keepMs());
    this.db.prepare(`DELETE FROM tally WHERE hour < ?`).run(hourOf(now) - 2 * WINDOW_HOURS);
  }

  close(): void {
    this.flush();
    this.db.close();
  }
}
