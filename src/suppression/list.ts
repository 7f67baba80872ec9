// The suppression list's store: one SQLite file beside the spool (`suppressions.db`), opened by
// every process of the node (the worker processes and their primary share the file: SQLite's WAL
// lets them read at once and takes their writes in turn, so a suppression added anywhere is seen
// everywhere without a message between processes). A lookup is one seek on the primary key
// (address, scope); writes are synced (`synchronous = FULL`) before they are acknowledged.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { SuppressionEntry, SuppressionScope } from './rules.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS suppressions (
  address TEXT NOT NULL, scope TEXT NOT NULL, reason TEXT NOT NULL, class TEXT, source TEXT NOT NULL,
  created INTEGER NOT NULL, expires INTEGER, PRIMARY KEY (address, scope)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS suppressions_scope ON suppressions (scope, address);
CREATE INDEX IF NOT EXISTS suppressions_expires ON suppressions (expires) WHERE expires IS NOT NULL;
`;

export interface SuppressionQuery {
  scope?: string;
  /** Entries whose reason contains this text. */
  reason?: string;
  class?: string;
  source?: string;
  /** The page after this one: the `next` of the previous answer. */
  after?: string;
  limit?: number;
}

export interface SuppressionPage {
  entries: SuppressionEntry[];
  /** Pass as `after` for the next page; absent on the last. */
  next?: string;
}

export const MAX_PAGE = 1000;

export class SuppressionList {
  readonly file: string;
  private db: Database.Database;
  private findStmt: Database.Statement;
  private upsert: Database.Statement;

  constructor(dir: string) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o750 });
    this.file = path.join(dir, 'suppressions.db');
    this.db = new Database(this.file);
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(SCHEMA);
    this.findStmt = this.db.prepare(`SELECT * FROM suppressions WHERE address = ? AND scope IN (?, ?)`);
    this.upsert = this.db.prepare(`INSERT INTO suppressions (address, scope, reason, class, source, created, expires)
      VALUES (@address, @scope, @reason, @class, @source, @created, @expires)
      ON CONFLICT (address, scope) DO UPDATE SET reason = excluded.reason, class = excluded.class, source = excluded.source, created = excluded.created, expires = excluded.expires`);
  }

  /** The entry that suppresses `address` under the first of `scopes` that has one in force. */
  find(address: string, scopes: readonly SuppressionScope[], now = Date.now()): SuppressionEntry | undefined {
    const rows = this.findStmt.all(address, scopes[0], scopes[1] ?? scopes[0]) as SuppressionEntry[];
    const live = rows.filter((r) => r.expires === null || r.expires > now);
    for (const s of scopes) {
      const hit = live.find((r) => r.scope === s);
      if (hit) return hit;
    }
    return undefined;
  }

  /** An address's entries in force, in every scope. */
  forAddress(address: string, now = Date.now()): SuppressionEntry[] {
    return (this.db.prepare(`SELECT * FROM suppressions WHERE address = ? ORDER BY scope`).all(address) as SuppressionEntry[]).filter((r) => r.expires === null || r.expires > now);
  }

  /** Add or replace entries, synced before it returns; the number written. */
  add(entries: readonly SuppressionEntry[]): number {
    if (!entries.length) return 0;
    this.db.transaction(() => {
      for (const e of entries) this.upsert.run(e);
    })();
    return entries.length;
  }

  /** Remove an address from one scope, or from every scope; the number removed. */
  remove(address: string, scope?: SuppressionScope): number {
    return scope === undefined
      ? this.db.prepare(`DELETE FROM suppressions WHERE address = ?`).run(address).changes
      : this.db.prepare(`DELETE FROM suppressions WHERE address = ? AND scope = ?`).run(address, scope).changes;
  }

  /** A page of entries in force, in (address, scope) order. */
  list(q: SuppressionQuery, now = Date.now()): SuppressionPage {
    const where: string[] = ['(expires IS NULL OR expires > @now)'];
    const args: Record<string, unknown> = { now, limit: Math.min(Math.max(1, q.limit ?? 100), MAX_PAGE) + 1 };
    if (q.scope) (where.push('scope = @scope'), (args.scope = q.scope));
    if (q.class) (where.push('class = @class'), (args.class = q.class));
    if (q.source) (where.push('source = @source'), (args.source = q.source));
    if (q.reason) (where.push(`reason LIKE @reason ESCAPE '\\'`), (args.reason = `%${q.reason.replace(/[\\%_]/g, (c) => `\\${c}`)}%`));
    const cursor = q.after ? decodeCursor(q.after) : undefined;
    if (cursor) (where.push('(address, scope) > (@afterAddress, @afterScope)'), (args.afterAddress = cursor.address), (args.afterScope = cursor.scope));
    const rows = this.db.prepare(`SELECT * FROM suppressions WHERE ${where.join(' AND ')} ORDER BY address, scope LIMIT @limit`).all(args) as SuppressionEntry[];
    const limit = (args.limit as number) - 1;
    if (rows.length <= limit) return { entries: rows };
    const entries = rows.slice(0, limit);
    const last = entries[entries.length - 1];
    return { entries, next: encodeCursor(last) };
  }

  /** Delete up to `max` expired entries (bounded work per call); the number deleted. */
  purgeExpired(now = Date.now(), max = 1000): number {
    return this.db.prepare(`DELETE FROM suppressions WHERE (address, scope) IN (SELECT address, scope FROM suppressions WHERE expires IS NOT NULL AND expires <= ? LIMIT ?)`).run(now, max).changes;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function encodeCursor(e: Pick<SuppressionEntry, 'address' | 'scope'>): string {
  return Buffer.from(JSON.stringify([e.address, e.scope])).toString('base64url');
}

function decodeCursor(text: string): { address: string; scope: string } | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
    return Array.isArray(v) && typeof v[0] === 'string' && typeof v[1] === 'string' ? { address: v[0], scope: v[1] } : undefined;
  } catch {
    return undefined;
  }
}
