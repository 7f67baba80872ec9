// The events outbox (issue 24): event bodies written in the same transaction as the outcome
// they report (settle) or the message they report taken (commitIncoming), so that across a
// crash there is no outcome without its event and no event without its outcome. Each sink
// (a webhook, the events file) reads in order from its own cursor; rows every sink has passed
// are deleted. Bounded: past `max` rows the oldest are dropped (counted), so a receiver that
// stays down can never fill the disk or hold mail.
import type Database from 'better-sqlite3';

export interface OutboxRow {
  seq: number;
  body: string;
}

export class OutboxTable {
  private ins: Database.Statement;
  private readStmt: Database.Statement;
  private getCursor: Database.Statement;
  private putCursor: Database.Statement;
  private range: Database.Statement;
  /**
   * Rows up to here are on disk (their transaction synced): sinks read no further, so no event
   * leaves before the outcome it reports is durable. Rows there at start were committed before.
   */
  private durable: number;

  constructor(private db: Database.Database, private write: (apply: () => void, opts?: { durable?: boolean }) => Promise<void>) {
    this.ins = db.prepare(`INSERT INTO outbox (msg, at, body) VALUES (?, ?, ?)`);
    this.readStmt = db.prepare(`SELECT seq, body FROM outbox WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?`);
    this.range = db.prepare(`SELECT min(seq) AS lo, max(seq) AS hi FROM outbox`);
    this.durable = (this.range.get() as { hi: number | null }).hi ?? 0;
    this.getCursor = db.prepare(`SELECT seq FROM outbox_cursors WHERE sink = ?`);
    this.putCursor = db.prepare(`INSERT INTO outbox_cursors (sink, seq) VALUES (?, ?) ON CONFLICT (sink) DO UPDATE SET seq = max(seq, excluded.seq)`);
  }

  /** Inside the caller's transaction: the events of one commit; the last row's seq (for `synced`). */
  insertAll(msg: string, bodies: readonly string[], at = Date.now()): number {
    let seq = 0;
    for (const b of bodies) seq = Number(this.ins.run(msg, at, b).lastInsertRowid);
    return seq;
  }

  /** Events of no queue change (a recipient refused at RCPT), written on their own. */
  async record(msg: string, bodies: readonly string[]): Promise<void> {
    let seq = 0;
    await this.write(() => (seq = this.insertAll(msg, bodies)));
    this.synced(seq);
  }

  /** The transaction that wrote rows up to `seq` is synced. */
  synced(seq: number): void {
    if (seq > this.durable) this.durable = seq;
  }

  read(after: number, limit: number): OutboxRow[] {
    return this.readStmt.all(after, this.durable, limit) as OutboxRow[];
  }

  cursor(sink: string): number {
    return (this.getCursor.get(sink) as { seq: number } | undefined)?.seq ?? 0;
  }

  /**
   * A sink passed `seq`: its cursor moves (not synced on its own: after a crash a sink may be
   * sent a batch again, which its ids make harmless), and rows every live sink passed go.
   */
  async advance(sink: string, seq: number, sinks: readonly string[]): Promise<void> {
    await this.write(() => {
      this.putCursor.run(sink, seq);
      const floor = Math.min(...sinks.map((s) => (s === sink ? seq : this.cursor(s))));
      if (floor > 0) this.db.prepare(`DELETE FROM outbox WHERE seq <= ?`).run(floor);
    }, { durable: false });
  }

  /**
   * Rows waiting beyond the slowest live sink. Rows only ever go from the low end (passed by
   * every sink, or dropped by `bound`), so those left are contiguous: two index reads, not a count.
   */
  depth(sinks: readonly string[]): number {
    if (!sinks.length) return 0;
    const r = this.range.get() as { lo: number | null; hi: number | null };
    if (r.hi === null || r.lo === null) return 0;
    const floor = Math.max(r.lo - 1, Math.min(...sinks.map((s) => this.cursor(s))));
    return Math.max(0, r.hi - floor);
  }

  /** Keep at most `max` rows: the oldest beyond it are dropped; the number dropped. */
  async bound(max: number): Promise<number> {
    const top = (this.db.prepare(`SELECT max(seq) AS s FROM outbox`).get() as { s: number | null }).s;
    if (top === null) return 0;
    let n = 0;
    await this.write(() => {
      n = this.db.prepare(`DELETE FROM outbox WHERE seq <= ?`).run(top - max).changes;
    }, { durable: false });
    return n;
  }

  /** With no sink configured any more, nothing waits for the rows. */
  async clear(): Promise<void> {
    await this.write(() => this.db.prepare(`DELETE FROM outbox`).run(), { durable: false });
  }
}
