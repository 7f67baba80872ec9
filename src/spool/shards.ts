// The spool of a node whose mode: smtp listeners run in several worker processes: one shard per
// worker, each a complete spool (index and message files) that only its worker writes. Shard 0
// is the spool directory itself, so `workers: 1` and a single process use the same layout and a
// node can go from one to several workers and back without moving anything but the extra shards.
//
// Fewer workers after a restart: the primary merges each shard that has no worker any more into
// a shard that has one, before any worker starts (so nothing delivers from either meanwhile).
// The merge is one SQLite transaction on the receiving shard, synced before the old shard is
// renamed away; a crash at any point leaves either the old shard (merged again at the next
// start: rows already there are recognised and skipped) or only the new one, never a message in
// neither and never one in both with its own delivery.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { Spool } from './spool.js';

const SHARD = /^shard-(\d+)$/;

export function shardDir(spool: string, shard: number): string {
  return shard === 0 ? spool : path.join(spool, `shard-${shard}`);
}

/** Shards present under the spool directory (besides shard 0), by number. */
export function existingShards(spool: string): number[] {
  let names: string[];
  try {
    names = fs.readdirSync(spool);
  } catch {
    return [];
  }
  return names
    .map((n) => SHARD.exec(n))
    .filter((m): m is RegExpExecArray => !!m && fs.existsSync(path.join(spool, m[0], 'queue.db')))
    .map((m) => Number(m[1]))
    .filter((n) => n > 0)
    .sort((a, b) => a - b);
}

/** Merge every shard numbered `workers` or above into shard (its number mod workers). Returns the messages moved. */
export function adoptShards(spool: string, workers: number, log: Logger): number {
  // Leftovers of a merge that ended after its commit but before the old shard was removed.
  for (const n of safeReaddir(spool)) if (/^shard-\d+\.adopted$/.test(n)) fs.rmSync(path.join(spool, n), { recursive: true, force: true });
  let moved = 0;
  for (const from of existingShards(spool)) {
    if (from < workers) continue;
    const to = from % workers;
    const n = mergeShard(shardDir(spool, from), shardDir(spool, to));
    moved += n;
    log.warn({ from: shardDir(spool, from), to: shardDir(spool, to), messages: n }, `spool shard ${from} has no worker (workers: ${workers}): its ${n} messages were moved to shard ${to}`);
  }
  return moved;
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** Move every message of spool `from` into spool `to`, then remove `from`. */
export function mergeShard(from: string, to: string): number {
  const wasClean = fs.existsSync(path.join(to, 'clean-shutdown'));
  // Both opened as spools: an old layout is brought up to date first, and leases are reset.
  const src = new Spool(from);
  // Each spool holds its file locked while open: the old layout brought up to date, `src` is
  // closed before the receiving spool attaches it.
  src.close();
  const dst = new Spool(to);
  let n = 0;
  try {
    const db = dst.db;
    db.pragma('synchronous = FULL');
    db.prepare('ATTACH DATABASE ? AS src').run(path.join(from, 'queue.db'));
    const cols = (t: string) => (db.prepare(`PRAGMA main.table_info(${t})`).all() as { name: string }[]).map((c) => c.name).join(', ');
    db.transaction(() => {
      // Ids are unique per process (time, a random salt, a sequence); the same id on both sides
      // is this message merged before (an earlier merge that did not finish), unless its
      // envelope differs: then it is another message, and it gets a new id here.
      const clashes = db.prepare(`SELECT s.id FROM src.messages s JOIN main.messages m ON m.id = s.id WHERE NOT (m.created = s.created AND m.sender = s.sender AND m.size = s.size AND m.client = s.client)`).pluck().all() as string[];
      for (const id of clashes) {
        const fresh = `${id}M${Date.now().toString(36).toUpperCase()}`;
        db.prepare('UPDATE src.messages SET id = ? WHERE id = ?').run(fresh, id);
        db.prepare('UPDATE src.recipients SET msg = ? WHERE msg = ?').run(fresh, id);
        db.prepare('UPDATE src.events SET msg = ? WHERE msg = ?').run(fresh, id);
      }
      // Bodies kept in files (large messages) move to the receiving shard's message directory.
      for (const { id, file } of db.prepare(`SELECT id, file FROM src.messages WHERE file != ''`).all() as { id: string; file: string }[]) {
        const target = dst.fileFor(id);
        fs.mkdirSync(path.dirname(target), { recursive: true });
        if (fs.existsSync(file)) fs.renameSync(file, target);
        else if (!fs.existsSync(target)) continue; // the row's body was lost before; the queue manager reports it
        fsyncPath(path.dirname(target));
        db.prepare('UPDATE src.messages SET file = ? WHERE id = ?').run(target, id);
      }
      const mc = cols('messages');
      const rc = cols('recipients');
      n = db.prepare(`INSERT OR IGNORE INTO main.messages (${mc}) SELECT ${mc} FROM src.messages`).run().changes;
      db.prepare(`INSERT OR IGNORE INTO main.recipients (${rc}) SELECT ${rc} FROM src.recipients`).run();
      db.prepare(`INSERT INTO main.events SELECT * FROM src.events WHERE msg NOT IN (SELECT msg FROM main.events)`).run();
      db.prepare(`INSERT INTO main.warmup SELECT * FROM src.warmup WHERE true ON CONFLICT (server, day) DO UPDATE SET sent = max(sent, excluded.sent)`).run();
      db.prepare(`INSERT OR IGNORE INTO main.suspensions SELECT * FROM src.suspensions`).run();
      db.prepare(`INSERT OR IGNORE INTO main.overrides (${cols('overrides')}) SELECT ${cols('overrides')} FROM src.overrides`).run();
      // Events still in the outbox go with their messages (rows every sink passed are gone; one a
      // sink took already may go to it again: the receiver knows it by its id).
      db.prepare(`INSERT INTO main.outbox (msg, at, body) SELECT msg, at, body FROM src.outbox ORDER BY seq`).run();
    })();
    db.prepare('DETACH DATABASE src').run();
  } finally {
    dst.close();
  }
  // Committed and synced: the old shard goes, first out of sight in one rename.
  const gone = `${from}.adopted`;
  fs.renameSync(from, gone);
  fsyncPath(path.dirname(from));
  fs.rmSync(gone, { recursive: true, force: true });
  // Opening the receiving shard here must not make its own worker think it shut down cleanly.
  if (!wasClean) fs.rmSync(path.join(to, 'clean-shutdown'), { force: true });
  return n;
}

function fsyncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
