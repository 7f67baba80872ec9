// After a crash: message files the index never learned of (written before their commit) are
// removed, in slices so the event loop stays free however many files there are.
import type Database from 'better-sqlite3';
import fsp from 'node:fs/promises';
import path from 'node:path';

/**
 * Remove message files the index never learned of: written before a crash, before their
 * commit. Files made by this process are left alone (they may be arriving now). Works in
 * slices so the event loop stays free however many files there are.
 */
export async function sweepOrphans(db: Database.Database, msgDir: string, startedAt: number): Promise<number> {
  let removed = 0;
  const has = db.prepare(`SELECT 1 FROM messages WHERE id = ?`);
  const subs = await fsp.readdir(msgDir).catch(() => [] as string[]);
  for (const sub of subs) {
    const dir = path.join(msgDir, sub);
    const names = await fsp.readdir(dir).catch(() => [] as string[]);
    for (let i = 0; i < names.length; i++) {
      // Slices of 200 lookups with a pause between: a background job, not a stall.
      if (i % 200 === 199) await new Promise((r) => setTimeout(r, 5));
      if (has.get(names[i])) continue;
      const file = path.join(dir, names[i]);
      const st = await fsp.stat(file).catch(() => null);
      if (!st?.isFile() || st.mtimeMs >= startedAt) continue;
      if (has.get(names[i])) continue; // committed meanwhile
      await fsp.unlink(file).catch(() => {});
      removed++;
    }
  }
  return removed;
}
