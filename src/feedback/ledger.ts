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

  constructor(dir: string, private keepMs: () => number, private onError: (e: Error) => void = () => {}) {
    fs.mkdirSync(dir, { recursive: true });
    this.db = new Database(path.join(dir, 'feedback.db'));
    try {
      this.init();
    } catch (e) {
      this.db.close();
      throw e;
    }
  }

  private init(): void {
    // The wait for a busy file first: switching to WAL takes a lock another process may hold.
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS sent (queue_id TEXT NOT NULL, rcpt TEXT NOT NULL, message_id TEXT, sender TEXT NOT NULL, class TEXT, tags TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (queue_id, rcpt)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS sent_message_id ON sent (message_id);
      CREATE INDEX IF NOT EXISTS sent_at ON sent (at);
      CREATE TABLE IF NOT EXISTS complaint (key TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS complaint_at ON complaint (at);
      CREATE TABLE IF NOT EXISTS tally (hour INTEGER NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, delivered INTEGER NOT NULL DEFAULT 0, complaints INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (hour, kind, key)) WITHOUT ROWID;
    `);
  }

  /** A recipient delivered: kept for complaints, counted in the hour's tallies (written within FLUSH_MS). */
  delivered(row: SentRow): void {
    this.pending.push(row);
    if (this.pending.length >= BATCH_MAX) this.flushQuietly();
    else this.timer ??= setTimeout(() => this.flushQuietly(), FLUSH_MS);
  }

  /**
   * A batch that cannot be written (disk full, the file locked past busy_timeout) is dropped
   * and said, never thrown: this runs from a timer and from the delivery path, where a throw
   * would end the process or undo a settled delivery. What is lost is bookkeeping for later
   * complaints, never mail.
   */
  private flushQuietly(): void {
    try {
      this.flush();
    } catch (e) {
      this.onError(e as Error);
    }
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

  /**
   * The deliveries a complaint may be about: the recipients of smtplb's queue id, else those of
   * the Message-ID (an application may reuse one across messages). At most `limit`; the caller
   * decides which recipient, and acts only on a unique answer.
   */
  candidates(q: { queueId?: string | null; messageId?: string | null }, limit = 100): SentRow[] {
    this.flushQuietly();
    type Raw = Omit<SentRow, 'tags'> & { tags: string };
    let rows: Raw[] = [];
    if (q.queueId) rows = this.db.prepare(`SELECT * FROM sent WHERE queue_id = ? LIMIT ?`).all(q.queueId, limit) as Raw[];
    if (!rows.length && q.messageId) rows = this.db.prepare(`SELECT * FROM sent WHERE message_id = ? LIMIT ?`).all(q.messageId, limit) as Raw[];
    return rows.map((row) => {
      let tags: Record<string, string> = {};
      try {
        tags = JSON.parse(row.tags) as Record<string, string>;
      } catch {
        /* a row this code did not write: no tags */
      }
      return { ...row, tags };
    });
  }

  /** Was a complaint with this key (message and recipient) recorded within `keep`? */
  complaintSeen(key: string): boolean {
    return !!this.db.prepare(`SELECT 1 FROM complaint WHERE key = ?`).get(key.slice(0, 1024));
  }

  /**
   * A complaint, recorded under its key and counted in the hour's tallies under the message's
   * keys, in one transaction; counted once per key (a provider that sends its report twice, or a
   * user who clicks twice, is one complaint toward the rates that pause a class).
   */
  complained(key: string, m: { sender: string; class?: string | null; tags?: Record<string, string> }, at: number): void {
    const once = this.db.prepare(`INSERT OR IGNORE INTO complaint (key, at) VALUES (?, ?)`);
    const up = this.db.prepare(`INSERT INTO tally (hour, kind, key, complaints) VALUES (?, ?, ?, 1) ON CONFLICT (hour, kind, key) DO UPDATE SET complaints = complaints + 1`);
    this.db.transaction(() => {
      if (once.run(key.slice(0, 1024), at).changes === 0) return;
      for (const k of tallyKeys(m)) up.run(hourOf(at), k.kind, k.key);
    })();
  }

  /** Deliveries and complaints over the last 24 hours: the keys with most complaints (then most deliveries), `limit` per kind. */
  tallies(now: number, limit = 50, only?: { kind: TallyKind; key: string }[]): TallyRow[] {
    this.flushQuietly();
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
    this.db.prepare(`DELETE FROM complaint WHERE key IN (SELECT key FROM complaint WHERE at < ? LIMIT 10000)`).run(now - this.keepMs());
  }

  close(): void {
    this.flushQuietly();
    this.db.close();
  }
}
