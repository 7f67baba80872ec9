// The durable queue. A message is acknowledged only after its body file is fdatasync'd, its
// directory entry fsync'd, and its envelope committed to the index (SQLite in WAL mode) and
// the WAL fdatasync'd. SQLite runs with synchronous=NORMAL and we sync the WAL ourselves after
// each commit, on libuv's thread pool: the same guarantee as synchronous=FULL (the WAL is on
// disk before anyone hears "committed"), without blocking the event loop on the fsync. Commits are grouped: sessions that finish DATA at the same moment share
// one index transaction and one directory fsync — that, not skipping fsyncs, is what makes
// it fast. State changes after acceptance (attempts, results) go through the same index.
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

export type RcptState = 'queued' | 'held' | 'delivered' | 'bounced' | 'deleted';

export interface Envelope {
  sender: string; // '' for the null sender
  recipients: { address: string; domain: string; pool: string; route: number }[];
  listener: string;
  user?: string;
  class?: string;
  client: string;
  messageId?: string;
  /** For DSNs: the queue id of the message this reports on. */
  dsnOf?: string;
}

export interface MessageRow {
  id: string;
  created: number;
  sender: string;
  size: number;
  message_id: string | null;
  listener: string;
  user: string | null;
  class: string | null;
  client: string;
  file: string;
  dsn_of: string | null;
}

export interface RecipientRow {
  msg: string;
  rcpt: string;
  domain: string;
  pool: string;
  route: number;
  state: RcptState;
  attempts: number;
  next_at: number;
  last_code: number | null;
  last_reply: string | null;
  last_server: string | null;
  updated: number;
  /** Why a queued recipient is waiting (retry schedule, throttle, suspension, warm-up cap). */
  wait?: string | null;
}

export interface Suspension { id: string; pool: string; destination: string; until: number; reason: string; who: string; created: number }

/** An operator's temporary shaping limits for (pool, destination), replacing the configured ones. */
export interface Override extends Suspension { concurrency: number | null; rate: string | null }

export interface EventRow { msg: string; at: number; rcpt: string | null; kind: string; server: string | null; code: number | null; text: string | null }

export class SpoolFullError extends Error {}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS messages (
  id TEXT PRIMARY KEY, created INTEGER NOT NULL, sender TEXT NOT NULL, size INTEGER NOT NULL,
  message_id TEXT, listener TEXT NOT NULL, user TEXT, class TEXT, client TEXT NOT NULL,
  file TEXT NOT NULL, dsn_of TEXT);
CREATE TABLE IF NOT EXISTS recipients (
  msg TEXT NOT NULL, rcpt TEXT NOT NULL, domain TEXT NOT NULL, pool TEXT NOT NULL, route INTEGER NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, leased INTEGER NOT NULL DEFAULT 0,
  last_code INTEGER, last_reply TEXT, last_server TEXT, updated INTEGER NOT NULL,
  PRIMARY KEY (msg, rcpt));
DROP INDEX IF EXISTS recipients_due;
CREATE INDEX IF NOT EXISTS recipients_ready ON recipients (state, leased, next_at);
CREATE TABLE IF NOT EXISTS events (
  msg TEXT NOT NULL, at INTEGER NOT NULL, rcpt TEXT, kind TEXT NOT NULL, server TEXT, code INTEGER, text TEXT);
CREATE INDEX IF NOT EXISTS events_msg ON events (msg);
CREATE TABLE IF NOT EXISTS suspensions (
  id TEXT PRIMARY KEY, pool TEXT NOT NULL, destination TEXT NOT NULL, until INTEGER NOT NULL,
  reason TEXT NOT NULL, who TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS overrides (
  id TEXT PRIMARY KEY, pool TEXT NOT NULL, destination TEXT NOT NULL, until INTEGER NOT NULL,
  reason TEXT NOT NULL, who TEXT NOT NULL, created INTEGER NOT NULL, concurrency INTEGER, rate TEXT);
CREATE TABLE IF NOT EXISTS warmup (
  server TEXT NOT NULL, day INTEGER NOT NULL, sent INTEGER NOT NULL, PRIMARY KEY (server, day));
`;

interface PendingWrite {
  /** Runs inside the batch's transaction. */
  apply: () => void;
  /** Directory whose new entry must be fsync'd before the transaction. */
  dir?: string;
  resolve: () => void;
  reject: (e: Error) => void;
}

/** Emits 'queued' (id) after each commit of new messages. */
export class Spool extends EventEmitter {
  readonly db: Database.Database;
  private msgDir: string;
  private pending: PendingWrite[] = [];
  private committing = false;
  private seq = 0;
  private stmts;
  private dbFile: string;
  private wal?: fsp.FileHandle;
  private madeDirs = new Set<string>();
  private freeChecked = { at: 0, bytes: Infinity };
  /** Per process, so ids stay unique across restarts without a random draw per message. */
  private idSalt = randomBytes(3).toString('hex').toUpperCase();

  constructor(readonly dir: string, private minFreeBytes = 0) {
    super();
    this.msgDir = path.join(dir, 'messages');
    fs.mkdirSync(this.msgDir, { recursive: true });
    this.dbFile = path.join(dir, 'queue.db');
    this.db = new Database(this.dbFile);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    const cols = (this.db.prepare(`PRAGMA table_info(recipients)`).all() as { name: string }[]).map((c) => c.name);
    if (!cols.includes('wait')) this.db.exec(`ALTER TABLE recipients ADD COLUMN wait TEXT`);
    this.stmts = {
      insMsg: this.db.prepare(`INSERT INTO messages VALUES (@id, @created, @sender, @size, @message_id, @listener, @user, @class, @client, @file, @dsn_of)`),
      insRcpt: this.db.prepare(`INSERT INTO recipients (msg, rcpt, domain, pool, route, state, attempts, next_at, updated) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?)`),
      insEvent: this.db.prepare(`INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)`),
      due: this.db.prepare(`SELECT * FROM recipients WHERE state = 'queued' AND next_at <= ? AND leased = 0 ORDER BY next_at LIMIT ?`),
      lease: this.db.prepare(`UPDATE recipients SET leased = ? WHERE msg = ? AND rcpt = ?`),
      nextDue: this.db.prepare(`SELECT MIN(next_at) AS at FROM recipients WHERE state = 'queued' AND leased = 0`),
      msg: this.db.prepare(`SELECT * FROM messages WHERE id = ?`),
      rcpts: this.db.prepare(`SELECT * FROM recipients WHERE msg = ?`),
      events: this.db.prepare(`SELECT * FROM events WHERE msg = ? ORDER BY at, rowid`),
      update: this.db.prepare(`UPDATE recipients SET state = @state, attempts = @attempts, next_at = @next_at, last_code = @last_code, last_reply = @last_reply, last_server = @last_server, updated = @updated, wait = @wait, leased = 0 WHERE msg = @msg AND rcpt = @rcpt`),
      postpone: this.db.prepare(`UPDATE recipients SET next_at = ?, wait = ? WHERE msg = ? AND rcpt = ? AND state = 'queued'`),
      warmupGet: this.db.prepare(`SELECT sent FROM warmup WHERE server = ? AND day = ?`),
      warmupSet: this.db.prepare(`INSERT INTO warmup (server, day, sent) VALUES (?, ?, ?) ON CONFLICT (server, day) DO UPDATE SET sent = excluded.sent`),
      open: this.db.prepare(`SELECT COUNT(*) AS n FROM recipients WHERE msg = ? AND state IN ('queued', 'held')`),
      delMsg: this.db.prepare(`DELETE FROM messages WHERE id = ?`),
      delRcpts: this.db.prepare(`DELETE FROM recipients WHERE msg = ?`),
      delEvents: this.db.prepare(`DELETE FROM events WHERE msg = ?`),
    };
    // Deliveries in flight when the process died are due again now (Postfix's active queue
    // is likewise put back on start).
    this.db.prepare(`UPDATE recipients SET leased = 0 WHERE leased = 1`).run();
  }

  private newId(): string {
    // Sortable by time, unique within and across restarts; the last two characters (the
    // sequence) spread message files over subdirectories.
    return `${Date.now().toString(36).toUpperCase().padStart(9, '0')}${this.idSalt}${(this.seq++ & 0xfff).toString(36).toUpperCase().padStart(3, '0')}`;
  }

  fileFor(id: string): string {
    return path.join(this.msgDir, id.slice(-2), id);
  }

  /** Store a message durably; resolves with its queue id once it is safe to answer 250. */
  async accept(env: Envelope, body: Buffer): Promise<string> {
    if (this.minFreeBytes > 0) {
      // Asked of the kernel at most every 250 ms; in between, what we wrote is taken off.
      const now = Date.now();
      if (now - this.freeChecked.at > 250) {
        const st = await fsp.statfs(this.dir);
        this.freeChecked = { at: now, bytes: st.bavail * st.bsize };
      }
      this.freeChecked.bytes -= body.length;
      if (this.freeChecked.bytes < this.minFreeBytes) throw new SpoolFullError('spool below its minimum free space');
    }
    const id = this.newId();
    const file = this.fileFor(id);
    const sub = path.dirname(file);
    if (!this.madeDirs.has(sub)) {
      await fsp.mkdir(sub, { recursive: true });
      this.madeDirs.add(sub);
    }
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await fsp.open(file, 'wx', 0o600);
      await fh.writeFile(body);
      await fh.datasync();
    } catch (e) {
      await fh?.close().catch(() => {});
      await fsp.rm(file, { force: true });
      if ((e as NodeJS.ErrnoException).code === 'ENOSPC' || (e as NodeJS.ErrnoException).code === 'EDQUOT') throw new SpoolFullError('disk full');
      throw e;
    }
    await fh.close();
    const row: MessageRow = {
      id,
      created: Date.now(),
      sender: env.sender,
      size: body.length,
      message_id: env.messageId ?? null,
      listener: env.listener,
      user: env.user ?? null,
      class: env.class ?? null,
      client: env.client,
      file,
      dsn_of: env.dsnOf ?? null,
    };
    try {
      await this.write(() => {
        const now = Date.now();
        this.stmts.insMsg.run(row);
        for (const r of env.recipients) this.stmts.insRcpt.run(id, r.address, r.domain, r.pool, r.route, now, now);
        this.stmts.insEvent.run(id, now, null, 'accepted', null, 250, `from ${env.client} via ${env.listener}, ${env.recipients.length} recipient(s), ${row.size} bytes`);
      }, path.dirname(file));
    } catch (e) {
      await fsp.rm(file, { force: true }).catch(() => {});
      throw (e as NodeJS.ErrnoException).code === 'SQLITE_FULL' ? new SpoolFullError('disk full') : e;
    }
    this.emit('queued', id);
    return id;
  }

  /** Group commit: writes queued in the same turn of the event loop share one transaction. */
  private write(apply: () => void, dir?: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ apply, dir, resolve, reject });
      if (!this.committing) {
        this.committing = true;
        setImmediate(() => void this.commit());
      }
    });
  }

  private async commit(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    try {
      // New directory entries must be on disk before the index says the files exist.
      const dirs = new Set(batch.flatMap((p) => (p.dir ? [p.dir] : [])));
      await Promise.all([...dirs].map(fsyncDir));
      this.db.transaction(() => {
        for (const p of batch) p.apply();
      })();
      this.wal ??= await fsp.open(`${this.dbFile}-wal`, 'r');
      await this.wal.datasync();
      for (const p of batch) p.resolve();
    } catch (e) {
      for (const p of batch) p.reject(e as Error);
    }
    if (this.pending.length) setImmediate(() => void this.commit());
    else this.committing = false;
  }

  /**
   * One queue-manager pass in one transaction: lease what starts now (in flight, not picked
   * twice, cleared on start), and move what must wait to when it may go, with the reason.
   */
  plan(lease: RecipientRow[], postpone: { row: RecipientRow; at: number; wait: string }[] = []): Promise<void> {
    return this.write(() => {
      for (const r of lease) this.stmts.lease.run(1, r.msg, r.rcpt);
      for (const p of postpone) this.stmts.postpone.run(p.at, p.wait, p.row.msg, p.row.rcpt);
    });
  }

  /** Oldest queued message and count per (pool, destination), largest first. */
  destinations(limit: number): { pool: string; domain: string; queued: number; oldest: number }[] {
    return this.db
      .prepare(`SELECT r.pool, r.domain, COUNT(*) AS queued, MIN(m.created) AS oldest FROM recipients r JOIN messages m ON m.id = r.msg WHERE r.state IN ('queued', 'held') GROUP BY r.pool, r.domain ORDER BY queued DESC LIMIT ?`)
      .all(limit) as { pool: string; domain: string; queued: number; oldest: number }[];
  }

  /** Mail postponed for a reason that no longer holds (a cancelled suspension) is due now. */
  async releaseWaiting(reasonPrefix: string): Promise<void> {
    await this.write(() => this.db.prepare(`UPDATE recipients SET next_at = ?, wait = NULL WHERE state = 'queued' AND leased = 0 AND wait LIKE ?`).run(Date.now(), `${reasonPrefix}%`));
  }

  suspensions(): Suspension[] {
    return this.db.prepare(`SELECT * FROM suspensions ORDER BY created`).all() as Suspension[];
  }

  async addSuspension(s: Suspension): Promise<void> {
    await this.write(() => this.db.prepare(`INSERT INTO suspensions VALUES (@id, @pool, @destination, @until, @reason, @who, @created)`).run(s));
  }

  async removeSuspension(id: string): Promise<boolean> {
    let n = 0;
    await this.write(() => (n = this.db.prepare(`DELETE FROM suspensions WHERE id = ?`).run(id).changes));
    return n > 0;
  }

  overrides(): Override[] {
    return this.db.prepare(`SELECT * FROM overrides ORDER BY created`).all() as Override[];
  }

  async addOverride(o: Override): Promise<void> {
    await this.write(() => this.db.prepare(`INSERT INTO overrides VALUES (@id, @pool, @destination, @until, @reason, @who, @created, @concurrency, @rate)`).run(o));
  }

  async removeOverride(id: string): Promise<boolean> {
    let n = 0;
    await this.write(() => (n = this.db.prepare(`DELETE FROM overrides WHERE id = ?`).run(id).changes));
    return n > 0;
  }

  warmupSent(server: string, day: number): number {
    return (this.stmts.warmupGet.get(server, day) as { sent: number } | undefined)?.sent ?? 0;
  }

  /** Warm-up counters are advisory: written with the next commit, not waited for. */
  setWarmupSent(server: string, day: number, sent: number): void {
    void this.write(() => this.stmts.warmupSet.run(server, day, sent)).catch(() => {});
  }

  due(now: number, limit: number): RecipientRow[] {
    return this.stmts.due.all(now, limit) as RecipientRow[];
  }

  nextDueAt(): number | null {
    return (this.stmts.nextDue.get() as { at: number | null }).at;
  }

  message(id: string): MessageRow | undefined {
    return this.stmts.msg.get(id) as MessageRow | undefined;
  }

  recipients(id: string): RecipientRow[] {
    return this.stmts.rcpts.all(id) as RecipientRow[];
  }

  events(id: string): EventRow[] {
    return this.stmts.events.all(id) as EventRow[];
  }

  readBody(id: string): Promise<Buffer> {
    return fsp.readFile(this.fileFor(id));
  }

  /**
   * Record attempt results for some recipients of one message, with their history events;
   * a message with no open recipient left is removed with its file.
   */
  async record(msg: string, updates: RecipientRow[], events: Omit<EventRow, 'msg'>[]): Promise<void> {
    let done = false;
    await this.write(() => {
      for (const u of updates) this.stmts.update.run(u);
      for (const e of events) this.stmts.insEvent.run(msg, e.at, e.rcpt, e.kind, e.server, e.code, e.text);
      done = (this.stmts.open.get(msg) as { n: number }).n === 0;
      if (done) this.removeRows(msg);
    });
    if (done) await unlinkIfThere(this.fileFor(msg));
  }

  private removeRows(id: string): void {
    this.stmts.delRcpts.run(id);
    this.stmts.delEvents.run(id);
    this.stmts.delMsg.run(id);
  }

  async remove(id: string): Promise<void> {
    await this.write(() => this.removeRows(id));
    await unlinkIfThere(this.fileFor(id));
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
      .prepare(`SELECT DISTINCT m.id FROM messages m JOIN recipients r ON r.msg = m.id ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY m.created LIMIT ?`)
      .all(...args, f.limit ?? 1000) as { id: string }[];
    return ids.map(({ id }) => ({ ...this.message(id)!, recipients: this.recipients(id) }));
  }

  counts(): { state: string; n: number }[] {
    return this.db.prepare(`SELECT state, COUNT(*) AS n FROM recipients GROUP BY state`).all() as { state: string; n: number }[];
  }

  /** Change the state of a message's open recipients (hold, release, flush). */
  async setState(id: string, from: RcptState[], to: RcptState, nextAt: number, kind: string): Promise<number> {
    let n = 0;
    await this.write(() => {
      const now = Date.now();
      n = this.db.prepare(`UPDATE recipients SET state = ?, next_at = ?, updated = ? WHERE msg = ? AND state IN (${from.map(() => '?').join(',')})`).run(to, nextAt, now, id, ...from).changes;
      if (n) this.stmts.insEvent.run(id, now, null, kind, null, null, null);
    });
    return n;
  }

  /** Wait for every write queued so far (shutdown). */
  async flush(): Promise<void> {
    if (this.committing) await this.write(() => {});
  }

  close(): void {
    this.db.close();
    void this.wal?.close().catch(() => {});
  }
}

async function unlinkIfThere(file: string): Promise<void> {
  await fsp.unlink(file).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
