// The queue index: what the queue holds per (pool, destination) — counts of queued, held and
// failed recipients and when the next queued one is due — kept in memory as rows change state,
// and the due list (a heap of destinations by due time). The store reports each move of a row
// (from one state to another, inside its transaction); the moves count once the transaction
// commits. So status, metrics and the queue manager never scan the queue: one GROUP BY at
// start-up, then O(log n) per move. No I/O here.
import { DueHeap } from './due-heap.js';
import { OPEN, type DestSummary } from './records.js';

/** A row of (pool, domain) moved from one state to another (null: it did not exist / is gone). */
export type Move = [pool: string, domain: string, from: string | null, to: string | null, nextAt?: number];

/** The start-up count of one (pool, domain, state), with the earliest due time of its unleased queued rows. */
export interface CountRow { pool: string; domain: string; state: 'queued' | 'held' | 'failed'; n: number; due: number | null }

export class QueueIndex {
  private dests = new Map<string, DestSummary>();
  private totals = { queued: 0, held: 0, failed: 0 };
  /** Destinations by the time their next row is due: the queue manager takes the due ones without a walk. */
  private dueHeap = new DueHeap();
  /** Moves made inside the open transaction: applied only once it commits. */
  private journal: Move[] | null = null;

  /** Start again from the store's counts (start-up). */
  load(rows: CountRow[]): void {
    this.dests.clear();
    this.totals = { queued: 0, held: 0, failed: 0 };
    for (const r of rows) {
      const d = this.dest(r.pool, r.domain);
      d[r.state] += r.n;
      this.totals[r.state] += r.n;
      if (r.state === 'queued' && r.due !== null) d.nextDue = d.nextDue === null ? r.due : Math.min(d.nextDue, r.due);
    }
    this.rebuildDue();
  }

  /** Moves from now on are held until end(): a transaction is open. */
  begin(): void {
    this.journal = [];
  }

  /** The moves held since begin() (to apply() once committed, or drop when rolled back). */
  end(): Move[] {
    const j = this.journal ?? [];
    this.journal = null;
    return j;
  }

  apply(moves: Move[]): void {
    for (const m of moves) this.move(...m);
  }

  /** A row moved: counted now, or at commit when a transaction is open. */
  count(pool: string, domain: string, from: string | null, to: string | null, nextAt?: number): void {
    if (this.journal) this.journal.push([pool, domain, from, to, nextAt]);
    else this.move(pool, domain, from, to, nextAt);
  }

  private dest(pool: string, domain: string): DestSummary {
    const key = `${pool}|${domain}`;
    let d = this.dests.get(key);
    if (!d) this.dests.set(key, (d = { pool, domain, queued: 0, held: 0, failed: 0, nextDue: null }));
    return d;
  }

  private move(pool: string, domain: string, from: string | null, to: string | null, nextAt?: number): void {
    const d = this.dest(pool, domain);
    if (from && OPEN.has(from)) {
      d[from as 'queued']--;
      this.totals[from as 'queued']--;
    }
    if (to && OPEN.has(to)) {
      d[to as 'queued']++;
      this.totals[to as 'queued']++;
    }
    // No queued row left (held, owed, gone): no due time, so the next row that comes back to
    // the queue puts the destination on the due list again, whatever time it brings.
    if (d.queued <= 0) d.nextDue = null;
    if (to === 'queued' && nextAt !== undefined && (d.nextDue === null || nextAt < d.nextDue)) {
      d.nextDue = nextAt;
      this.markDue(pool, domain, nextAt);
    }
    if (d.queued + d.held + d.failed <= 0) this.dests.delete(`${pool}|${domain}`);
  }

  /** The store looked up when (pool, domain)'s next row is due (null: none). */
  setNextDue(pool: string, domain: string, at: number | null): void {
    const d = this.dests.get(`${pool}|${domain}`);
    if (d) d.nextDue = at;
    if (at !== null) this.markDue(pool, domain, at);
  }

  /** Look at (pool, domain) again at `at` (it waits for a limit, or has more due rows than a pass took). */
  markDue(pool: string, domain: string, at: number): void {
    const key = `${pool}|${domain}`;
    if (!this.dests.get(key)?.queued) return;
    this.dueHeap.push(at, key);
    // Entries are never removed in place: when stale ones pile up, start again from the counters.
    if (this.dueHeap.size > 4 * this.dests.size + 1024) this.rebuildDue();
  }

  private rebuildDue(): void {
    this.dueHeap.clear();
    for (const [key, d] of this.dests) if (d.queued > 0 && d.nextDue !== null) this.dueHeap.push(d.nextDue, key);
  }

  /**
   * The destinations with a row due by `now`, earliest first, each once, at most `limit`;
   * taken off the due list (the queue manager puts back what it cannot start now). Cost: the
   * ones taken, not all.
   */
  takeDue(now: number, limit = Infinity): DestSummary[] {
    const out: DestSummary[] = [];
    const seen = new Set<string>();
    for (let top = this.dueHeap.peek(); top && top.at <= now && out.length < limit; top = this.dueHeap.peek()) {
      this.dueHeap.pop();
      const d = this.dests.get(top.key);
      if (!d || seen.has(top.key) || d.queued === 0 || d.nextDue === null || d.nextDue > now) continue;
      seen.add(top.key);
      out.push(d);
    }
    return out;
  }

  /** When the earliest destination on the due list is due (Infinity: none). */
  nextDueAt(): number {
    for (let top = this.dueHeap.peek(); top; top = this.dueHeap.peek()) {
      const d = this.dests.get(top.key);
      if (d && d.queued > 0 && d.nextDue !== null) return top.at;
      this.dueHeap.pop();
    }
    return Infinity;
  }

  /** Destinations with something in the queue (the live summary, not a copy: do not change it). */
  destinationSummaries(): IterableIterator<DestSummary> {
    return this.dests.values();
  }

  summary(pool: string, domain: string): DestSummary | undefined {
    return this.dests.get(`${pool}|${domain}`);
  }

  /** How many destinations have mail queued. */
  get destinationCount(): number {
    return this.dests.size;
  }

  /** Open recipients by state (no scan). */
  counts(): { state: string; n: number }[] {
    return Object.entries(this.totals).map(([state, n]) => ({ state, n }));
  }
}
