// The operator's control tables in the node's spool: suspensions, overrides and the warm-up
// counts per server and day. Written through the spool's group commit (durable like any
// outcome); read when the shaper starts. The same records live in the primary's store under
// `workers:` and in Redis in a cluster (src/control/types.ts).
import type Database from 'better-sqlite3';
import type { ControlStore, Override, Suspension } from '../control/types.js';

export class ControlTables implements ControlStore {
  private warmupGet: Database.Statement;
  private warmupSet: Database.Statement;

  constructor(
    private db: Database.Database,
    /** The spool's group commit. */
    private write: (apply: () => void) => Promise<void>,
  ) {
    this.warmupGet = db.prepare(`SELECT sent FROM warmup WHERE server = ? AND day = ?`);
    this.warmupSet = db.prepare(`INSERT INTO warmup (server, day, sent) VALUES (?, ?, ?) ON CONFLICT (server, day) DO UPDATE SET sent = excluded.sent`);
  }

  suspensions(): Suspension[] {
    return this.db.prepare(`SELECT * FROM suspensions ORDER BY created`).all() as Suspension[];
  }

  async putSuspension(s: Suspension): Promise<void> {
    await this.write(() => this.db.prepare(`INSERT INTO suspensions VALUES (@id, @pool, @destination, @until, @reason, @who, @created)`).run(s));
  }

  async removeSuspension(id: string): Promise<boolean> {
    let n = 0;
    await this.write(() => (n = this.db.prepare(`DELETE FROM suspensions WHERE id = ?`).run(id).changes));
    return n > 0;
  }

  /**
   * A single node keeps its drains and weights in its pools, in memory, as HAProxy's runtime
   * API does (a restart forgets them): there is no one else here to tell, and nothing to write.
   */
  putServer(): void {}

  overrides(): Override[] {
    return this.db.prepare(`SELECT * FROM overrides ORDER BY created`).all() as Override[];
  }

  async putOverride(o: Override): Promise<void> {
    await this.write(() => this.db.prepare(`INSERT INTO overrides VALUES (@id, @pool, @destination, @until, @reason, @who, @created, @concurrency, @rate)`).run(o));
  }

  async removeOverride(id: string): Promise<boolean> {
    let n = 0;
    await this.write(() => (n = this.db.prepare(`DELETE FROM overrides WHERE id = ?`).run(id).changes));
    return n > 0;
  }

  warmupSent(server: string, day: number): number {
    return (this.warmupGet.get(server, day) as { sent: number } | undefined)?.sent ?? 0;
  }

  /** Warm-up counters are advisory: written with the next commit, not waited for. */
  setWarmupSent(server: string, day: number, sent: number): void {
    void this.write(() => this.warmupSet.run(server, day, sent)).catch(() => {});
  }
}
