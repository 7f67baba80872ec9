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
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
`;

/** A change made at one node, as the others apply it (sync.ts). */
export interface SuppressionChange {
  node?: string;
  add?: SuppressionEntry[];
  remove?: { address: string; scope?: SuppressionScope };
}

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

/** An entry from another node as this store keeps it, or null when it is not one. */
function remoteEntry(e: unknown): SuppressionEntry | null {
  if (!e || typeof e !== 'object') return null;
  const o = e as Record<string, unknown>;
  const str = (v: unknown, max: number) => (typeof v === 'string' && v.length <= max ? v : null);
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const address = str(o.address, 320);
  const scope = str(o.scope, 253);
  if (!address || !scope) return null;
  return { address, scope, reason: str(o.reason, 200) ?? '', class: (str(o.class, 40) as SuppressionEntry['class']) ?? null, source: str(o.source, 20) ?? 'operator', created: num(o.created) ?? Date.now(), expires: num(o.expires) };
}

export class SuppressionList {
  readonly file: string;
  private db: Database.Database;
  private findStmt: Database.Statement;
  private upsert: Database.Statement;
  /** Told of each change made here (not of those applied from other nodes): the cluster's sync. */
  onChange?: (c: SuppressionChange) => void;

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
      ON CONFLICT (address, scope) DO UPDATE SET
        reason = CASE WHEN excluded.source = 'bounce' AND source != 'bounce' THEN reason ELSE excluded.reason END,
        class = CASE WHEN excluded.source = 'bounce' AND source != 'bounce' THEN class ELSE excluded.class END,
        source = CASE WHEN excluded.source = 'bounce' AND source != 'bounce' THEN source ELSE excluded.source END,
        created = excluded.created,
        expires = CASE WHEN expires IS NULL OR excluded.expires IS NULL THEN NULL ELSE max(expires, excluded.expires) END`);
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
    this.onChange?.({ add: [...entries] });
    return entries.length;
  }

  /** Remove an address from one scope, or from every scope; the number removed. */
  remove(address: string, scope?: SuppressionScope): number {
    const n = this.removeHere(address, scope);
    if (n) this.onChange?.({ remove: { address, scope } });
    return n;
  }

  private removeHere(address: string, scope?: SuppressionScope): number {
    return scope === undefined
      ? this.db.prepare(`DELETE FROM suppressions WHERE address = ?`).run(address).changes
      : this.db.prepare(`DELETE FROM suppressions WHERE address = ? AND scope = ?`).run(address, scope).changes;
  }

  /** Changes made at other nodes, with the stream position they bring this node to, in one transaction. */
  applyRemote(changes: readonly unknown[], position: string): number {
    let skipped = 0;
    this.db.transaction(() => {
      for (const c of changes as SuppressionChange[]) {
        // Whatever another writer put in the stream: each entry checked, a bad one skipped (never
        // a reason to stop following the others).
        if (!c || typeof c !== 'object') {
          skipped++;
          continue;
        }
        for (const e of Array.isArray(c.add) ? c.add : []) {
          const entry = remoteEntry(e);
          if (entry) this.upsert.run(entry);
          else skipped++;
        }
        if (c.remove && typeof c.remove.address === 'string' && (c.remove.scope === undefined || typeof c.remove.scope === 'string')) this.removeHere(c.remove.address, c.remove.scope);
      }
      this.db.prepare(`INSERT INTO meta (key, value) VALUES ('stream', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(position);
    })();
    return skipped;
  }

  meta(key: string): string | undefined {
    return (this.db.prepare(`SELECT value FROM meta WHERE key = ?`).get(key) as { value: string } | undefined)?.value;
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
