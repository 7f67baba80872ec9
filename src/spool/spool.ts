// The durable queue. A message is acknowledged only after its body and its envelope are on
// disk. Envelopes live in an index (SQLite in WAL mode). Bodies live in one of two places:
// - Up to INLINE_MAX (nearly all mail), in the index itself: a BLOB in the message's row,
//   written in the same transaction as its envelope. Such a message costs no file at all (no
//   open, fsync, close or unlink): the one WAL fdatasync of its group commit covers body and
//   envelope together, and deleting the row frees the body (no orphan to sweep).
// - Larger ones, in a file of their own under messages/, written as the client sends it (a
//   message starts in memory and moves to its file once it passes the limit, so memory per
//   session stays bounded whatever the size). The file is fdatasync'd and its directory entry
//   fsync'd before the transaction that names it commits.
// A row's `file` says which: '' for a body in the index, else the path of its file (spools
// written before bodies moved into the index have only files, and are read as such).
// SQLite runs with synchronous=NORMAL and we sync the WAL ourselves after each commit, on
// libuv's thread pool: the same guarantee as synchronous=FULL (the WAL is on disk before anyone
// hears "committed"), without blocking the event loop on the fsync. Commits are grouped:
// sessions that finish DATA at the same moment share one transaction and one WAL sync — that,
// not skipping fsyncs, is what makes it fast. State changes after acceptance (attempts,
// results) go through the same index, synced the same way: an outcome left in the page cache
// would be lost with it when the kernel forces the filesystem read-only after an I/O error,
// and that message delivered again (test/spool-readonly.test.ts catches it).
// The index is opened with locking_mode=EXCLUSIVE: one process owns a spool (a second smtplb
// on it is refused at start), and no transaction pays for file locks and a shared-memory index.
//
// Exactly-once invariants (each has a test in test/queue-manager.test.ts):
// 1. A recipient's known outcome (delivered, permanently failed, deferred) is committed by
//    settle() in one transaction, together with the DSN it causes (its body in the index, or
//    for a large one its file, written first). When the DSN cannot be stored (disk full even
//    with the reserve), the failed recipients are committed as `failed` (outcome known, DSN
//    owed) and the DSN is made later from those rows: a delivered recipient is never put back
//    in the queue because a bounce could not be written.
// 2. Bounces are never refused for `min_free`: like Postfix's queue_minfree, that limit gates
//    only new mail from SMTP clients (accept()), never what the queue already owes. New mail
//    is also the first thing dropped from a group commit that hits a full disk.
// 3. A recipient in flight is leased; nothing else starts it until its outcome is settled or
//    the process restarts (then it is due again: the in-flight window is the only source of
//    duplicates, as in every MTA).
// 4. A message's body (row or file) is removed only in the commit that leaves it no open
//    recipient (queued, held, or failed awaiting its DSN).
//
// 5. The spool keeps a reserve file (RESERVE bytes). When the disk is full and the index
//    cannot grow to record an outcome, the reserve is given up so the outcome is committed
//    (and files freed) rather than held: new mail is refused with 452 meanwhile, and the
//    reserve is made again once there is room.
//
// Counters per (pool, destination) are kept up to date as rows change state, so status,
// metrics and the queue manager never scan the queue (one GROUP BY at start-up).
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { DueHeap } from '../scheduler/due-heap.js';
import { encodeStored, type MessageParams, type RcptDsn } from '../delivery/dsn-params.js';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/** `failed`: permanently failed, its DSN not yet queued (see invariant 1). */
export type RcptState = 'queued' | 'held' | 'failed' | 'delivered' | 'bounced' | 'deleted';

/** Recipients still owed something: a delivery attempt, an operator's release, or a DSN. */
const OPEN: ReadonlySet<string> = new Set(['queued', 'held', 'failed']);

/** What the queue holds for one (pool, destination), kept as rows move. */
export interface DestSummary {
  pool: string;
  domain: string;
  queued: number;
  held: number;
  failed: number;
  /** Earliest next_at of a queued, unleased row; may be early (then a look finds nothing due and corrects it). */
  nextDue: number | null;
}

/** The creation time encoded in a queue id (ids start with the time in base 36). */
export function idTime(id: string): number {
  return parseInt(id.slice(0, 9), 36);
}

/** The smallest id made at or after `ms`: ids sort by creation time. */
export function idAt(ms: number): string {
  return Math.max(0, Math.floor(ms)).toString(36).toUpperCase().padStart(9, '0');
}

export interface Envelope {
  sender: string; // '' for the null sender
  /** `dsn`: the RCPT's NOTIFY and ORCPT (RFC 3461). */
  recipients: { address: string; domain: string; pool: string; route: number; dsn?: RcptDsn }[];
  listener: string;
  user?: string;
  class?: string;
  client: string;
  messageId?: string;
  /** For DSNs: the queue id of the message this reports on. */
  dsnOf?: string;
  /** MAIL FROM's RET, ENVID, BODY and SMTPUTF8, kept for the next hop and for DSNs. */
  params?: MessageParams;
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
  /** The body's file; '' when the body is in the index (then the stored body holds the prefix too). */
  file: string;
  dsn_of: string | null;
  /** MAIL FROM's parameters as stored (JSON; dsn-params.ts), null for none. */
  params?: string | null;
  /** Header lines added at acceptance (Received, DKIM-Signature), sent before the file's bytes. */
  prefix?: Buffer | null;
}

/** A message's bytes: in memory, or a file with the header lines to send before it (the shape of delivery's Body). */
export type StoredBody = Buffer | { file: string; size: number; prefix?: Buffer | null };

/** The columns of a message row but its body (read only when it is sent). */
const MESSAGE_COLS = 'id, created, sender, size, message_id, listener, user, class, client, file, dsn_of, prefix, params';

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
  /** The RCPT's NOTIFY and ORCPT as stored (JSON; dsn-params.ts), null for none. */
  dsn?: string | null;
}

export interface Suspension { id: string; pool: string; destination: string; until: number; reason: string; who: string; created: number }

/** An operator's temporary shaping limits for (pool, destination), replacing the configured ones. */
export interface Override extends Suspension { concurrency: number | null; rate: string | null }

export interface EventRow { msg: string; at: number; rcpt: string | null; kind: string; server: string | null; code: number | null; text: string | null }

export class SpoolFullError extends Error {}

/** The spool cannot write (read-only or failing filesystem): new mail is refused until it can again. */
export class SpoolUnavailableError extends Error {}

/** The spool's state on disk is no longer known (a sync failed after a commit): only a restart is safe. */
export class SpoolFatalError extends Error {
  readonly code = 'SPOOL_FATAL';
}

/** How long a destination's oldest-message time is remembered for status and metrics. */
const OLDEST_TTL = 5000;

/** Room kept aside for recording outcomes when the disk fills (invariant 5). */
export const RESERVE = 1024 * 1024;

/**
 * The largest body kept in the index (as stored: the lines added at acceptance included).
 * 256 KiB holds nearly all mail (a typical message is a few KB to a few tens of KB), keeps a
 * session's memory before it moves to a file small (200 sessions: 50 MB at most), and stays
 * where SQLite reads a BLOB about as fast as a file (its own measurements put the crossover
 * near 100 KB with 4 KiB pages, and we spare the open/fsync/unlink on the write side). Past
 * it a body costs the WAL and the checkpoint twice its size for nothing a file would not do.
 */
export const INLINE_MAX = 256 * 1024;

/** Kept free under INLINE_MAX while receiving, for the lines added after DATA (a Received and a DKIM-Signature: under 2 KB). */
const PREFIX_ROOM = 4 * 1024;

/** Bytes a message may reach in memory before it moves to its file. */
export const INLINE_BODY_MAX = INLINE_MAX - PREFIX_ROOM;

/** The WAL is cut back to this after a checkpoint: one group commit of large bodies would otherwise leave it that size for good. */
const WAL_KEEP = 16 * 1024 * 1024;
/** The recently queued messages kept in memory for delivery: at most this many bytes (bodies, and a rough size per row). */
export const HOT_MAX = 32 * 1024 * 1024;
const HOT_ENTRY = 512;
/** How long a successful check that the message directory is writable holds. */
const WRITABLE_TTL = 100;

function diskFull(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * A write the filesystem refused as a whole (remounted read-only, failing device): nothing
 * half-done is left (SQLite rolled back; our files are unlinked or never committed), so the
 * spool stops taking writes and probes until it can again.
 */
function writeRefused(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && /^(EROFS|EIO|EACCES|EPERM|SQLITE_READONLY|SQLITE_IOERR|SQLITE_CANTOPEN)/.test(code) && code !== 'SQLITE_IOERR_FSYNC';
}

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
DROP INDEX IF EXISTS recipients_ready;
CREATE INDEX IF NOT EXISTS recipients_dest ON recipients (pool, domain, state, leased, next_at);
CREATE INDEX IF NOT EXISTS recipients_age ON recipients (pool, domain, msg);
CREATE INDEX IF NOT EXISTS recipients_failed ON recipients (msg) WHERE state = 'failed';
CREATE TABLE IF NOT EXISTS probe (at INTEGER NOT NULL);
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

interface WriteOpts {
  /** Directory whose new entry must be fsync'd before the transaction. */
  dir?: string;
  /** The probe's write, tried while the spool refuses writes. */
  probing?: boolean;
  /** False for state a restart resets anyway (leases): committed without waiting for the disk. */
  durable?: boolean;
  /** A message from a client: the first to go when the disk is full (invariant 2). */
  newMail?: boolean;
}

interface PendingWrite extends WriteOpts {
  /** Runs inside the batch's transaction. */
  apply: () => void;
  resolve: () => void;
  reject: (e: Error) => void;
}

/** A DSN to queue in the same transaction as the outcomes that cause it. */
export interface DsnToQueue { env: Envelope; body: Buffer }

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
  private dests = new Map<string, DestSummary>();
  private oldestCache = new Map<string, { at: number; oldest: number }>();
  private totals = { queued: 0, held: 0, failed: 0 };
  /** Destinations by the time their next row is due: the queue manager takes the due ones without a walk. */
  private dueHeap = new DueHeap();
  /** Counter moves made inside the open transaction: applied only once it commits. */
  private journal: Parameters<Spool['move']>[] | null = null;
  /** Why the spool cannot write now (null: it can). */
  private refused: { since: number; error: string } | null = null;

  constructor(readonly dir: string, private minFree: () => number = () => 0) {
    super();
    this.msgDir = path.join(dir, 'messages');
    fs.mkdirSync(this.msgDir, { recursive: true });
    this.dbFile = path.join(dir, 'queue.db');
    this.db = new Database(this.dbFile);
    // One process owns a spool: the lock is taken at the first read and held until close, so
    // a second smtplb on the same directory is refused here (it would deliver the same mail
    // again), and no transaction pays for POSIX locks and a shared-memory WAL index.
    this.db.pragma('locking_mode = EXCLUSIVE');
    try {
      this.db.pragma('journal_mode = WAL');
    } catch (e) {
      this.db.close();
      if ((e as { code?: string }).code === 'SQLITE_BUSY') throw new Error(`${dir} is in use by another process (another smtplb on the same spool directory?)`);
      throw e;
    }
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    const cols = (this.db.prepare(`PRAGMA table_info(recipients)`).all() as { name: string }[]).map((c) => c.name);
    if (!cols.includes('wait')) this.db.exec(`ALTER TABLE recipients ADD COLUMN wait TEXT`);
    const mcols = (this.db.prepare(`PRAGMA table_info(messages)`).all() as { name: string }[]).map((c) => c.name);
    if (!mcols.includes('prefix')) this.db.exec(`ALTER TABLE messages ADD COLUMN prefix BLOB`);
    // Spools from before bodies moved into the index: their rows keep body NULL and their files.
    if (!mcols.includes('body')) this.db.exec(`ALTER TABLE messages ADD COLUMN body BLOB`);
    // MAIL and RCPT parameters (DSN, BODY, SMTPUTF8): spools from before them have none.
    if (!mcols.includes('params')) this.db.exec(`ALTER TABLE messages ADD COLUMN params TEXT`);
    if (!cols.includes('dsn')) this.db.exec(`ALTER TABLE recipients ADD COLUMN dsn TEXT`);
    this.db.pragma(`journal_size_limit = ${WAL_KEEP}`);
    this.stmts = {
      insMsg: this.db.prepare(`INSERT INTO messages (id, created, sender, size, message_id, listener, user, class, client, file, dsn_of, prefix, body, params) VALUES (@id, @created, @sender, @size, @message_id, @listener, @user, @class, @client, @file, @dsn_of, @prefix, @body, @params)`),
      insRcpt: this.db.prepare(`INSERT INTO recipients (msg, rcpt, domain, pool, route, state, attempts, next_at, updated, leased, dsn) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?)`),
      insEvent: this.db.prepare(`INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)`),
      dueFor: this.db.prepare(`SELECT * FROM recipients WHERE pool = ? AND domain = ? AND state = 'queued' AND leased = 0 AND next_at <= ? ORDER BY next_at LIMIT ?`),
      dueRowsOf: this.db.prepare(`SELECT * FROM recipients WHERE msg = ? AND pool = ? AND domain = ? AND state = 'queued' AND leased = 0 AND next_at <= ? LIMIT ?`),
      minDue: this.db.prepare(`SELECT MIN(next_at) AS at FROM recipients WHERE pool = ? AND domain = ? AND state = 'queued' AND leased = 0`),
      oldest: this.db.prepare(`SELECT msg FROM recipients WHERE pool = ? AND domain = ? AND state IN ('queued', 'held', 'failed') ORDER BY msg LIMIT 1`),
      expired: this.db.prepare(`SELECT * FROM recipients WHERE msg < ? AND state = 'queued' AND leased = 0 LIMIT ?`),
      failedRows: this.db.prepare(`SELECT * FROM recipients WHERE state = 'failed' AND leased = 0 LIMIT ?`),
      lease: this.db.prepare(`UPDATE recipients SET leased = ? WHERE msg = ? AND rcpt = ?`),
      msg: this.db.prepare(`SELECT ${MESSAGE_COLS} FROM messages WHERE id = ?`),
      body: this.db.prepare(`SELECT body FROM messages WHERE id = ?`).pluck(),
      head: this.db.prepare(`SELECT prefix, file, substr(body, 1, ?) AS head FROM messages WHERE id = ?`),
      rcpt: this.db.prepare(`SELECT * FROM recipients WHERE msg = ? AND rcpt = ?`),
      rcpts: this.db.prepare(`SELECT * FROM recipients WHERE msg = ?`),
      events: this.db.prepare(`SELECT * FROM events WHERE msg = ? ORDER BY at, rowid`),
      update: this.db.prepare(`UPDATE recipients SET state = @state, attempts = @attempts, next_at = @next_at, last_code = @last_code, last_reply = @last_reply, last_server = @last_server, updated = @updated, wait = @wait, dsn = @dsn, leased = 0 WHERE msg = @msg AND rcpt = @rcpt`),
      reroute: this.db.prepare(`UPDATE recipients SET pool = ?, route = ?, next_at = ?, wait = NULL, leased = 0 WHERE msg = ? AND rcpt = ?`),
      warmupGet: this.db.prepare(`SELECT sent FROM warmup WHERE server = ? AND day = ?`),
      warmupSet: this.db.prepare(`INSERT INTO warmup (server, day, sent) VALUES (?, ?, ?) ON CONFLICT (server, day) DO UPDATE SET sent = excluded.sent`),
      delMsg: this.db.prepare(`DELETE FROM messages WHERE id = ? RETURNING file`),
      delRcpts: this.db.prepare(`DELETE FROM recipients WHERE msg = ?`),
      delEvents: this.db.prepare(`DELETE FROM events WHERE msg = ?`),
      probe: this.db.prepare(`INSERT OR REPLACE INTO probe (rowid, at) VALUES (1, ?)`),
    };
    // Deliveries in flight when the process died are due again now (Postfix's active queue
    // is likewise put back on start).
    this.db.prepare(`UPDATE recipients SET leased = 0 WHERE leased = 1`).run();
    this.summarize();
    this.reservePath = path.join(dir, 'reserve');
    this.makeReserve();
    // A clean shutdown leaves this marker: no crash, so no half-written files to sweep.
    this.cleanPath = path.join(dir, 'clean-shutdown');
    this.cleanStart = fs.existsSync(this.cleanPath);
    fs.rmSync(this.cleanPath, { force: true });
  }

  private cleanPath: string;
  /** Incoming messages with a file not yet committed or discarded: a shutdown with any is not clean. */
  private openIncoming = 0;
  /** The previous process shut down cleanly (its marker was there). */
  readonly cleanStart: boolean;

  private reservePath: string;
  private reserved = false;

  /** Keep RESERVE bytes aside on the spool's disk (see invariant 5); quietly not when there is no room. */
  makeReserve(): void {
    try {
      if (fs.statSync(this.reservePath, { throwIfNoEntry: false })?.size === RESERVE) {
        this.reserved = true;
        return;
      }
      const st = fs.statfsSync(this.dir);
      if (st.bavail * st.bsize < 2 * RESERVE) return; // not yet: the room is needed more elsewhere
      const fd = fs.openSync(this.reservePath, 'w', 0o600);
      try {
        fs.writeSync(fd, Buffer.alloc(RESERVE));
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      this.reserved = true;
    } catch {
      fs.rmSync(this.reservePath, { force: true });
    }
  }

  /** Give the reserve up (the disk is full and an outcome must be recorded); true if there was one. */
  private releaseReserve(): boolean {
    if (!this.reserved) return false;
    this.reserved = false;
    fs.rmSync(this.reservePath, { force: true });
    this.emit('reserve-released');
    return true;
  }

  get reserveHeld(): boolean {
    return this.reserved;
  }

  /** Why the spool cannot write, since when; null while it can. */
  get unwritable(): { since: number; error: string } | null {
    return this.refused;
  }

  /** A write was refused by the filesystem: say so once, refuse new mail until probe() succeeds. */
  private noteRefused(e: unknown): void {
    if (this.refused || !writeRefused(e)) return;
    this.writableAt = 0;
    const { code, message } = e as NodeJS.ErrnoException;
    this.refused = { since: Date.now(), error: message.startsWith(`${code}`) ? message : `${code}: ${message}` };
    this.emit('unwritable', e);
  }

  /** The error to pass on for a failed write: SpoolUnavailableError when the filesystem refused it. */
  private refusal(e: unknown): unknown {
    this.noteRefused(e);
    const r = this.refused as { error: string } | null;
    return r ? new SpoolUnavailableError(`spool cannot write (${r.error})`) : e;
  }

  /** Try one small file and one small transaction; the spool takes writes again if both work. */
  async probe(): Promise<boolean> {
    if (!this.refused) return true;
    const file = path.join(this.msgDir, 'probe');
    try {
      const fh = await fsp.open(file, 'w', 0o600);
      try {
        await fh.write('probe\n');
        await fh.datasync();
      } finally {
        await fh.close();
      }
      await fsp.unlink(file);
      await this.write(() => void this.stmts.probe.run(Date.now()), { probing: true });
    } catch {
      return false;
    }
    this.refused = null;
    this.freeChecked.at = 0;
    this.emit('writable');
    return true;
  }

  /** Counters from the index, once at start-up (afterwards they move with each commit). */
  private summarize(): void {
    this.dests.clear();
    this.totals = { queued: 0, held: 0, failed: 0 };
    const rows = this.db
      .prepare(`SELECT pool, domain, state, COUNT(*) AS n, MIN(CASE WHEN leased = 0 THEN next_at END) AS due FROM recipients WHERE state IN ('queued', 'held', 'failed') GROUP BY pool, domain, state`)
      .all() as { pool: string; domain: string; state: 'queued' | 'held' | 'failed'; n: number; due: number | null }[];
    for (const r of rows) {
      const d = this.dest(r.pool, r.domain);
      d[r.state] += r.n;
      this.totals[r.state] += r.n;
      if (r.state === 'queued' && r.due !== null) d.nextDue = d.nextDue === null ? r.due : Math.min(d.nextDue, r.due);
    }
    this.rebuildDue();
  }

  private dest(pool: string, domain: string): DestSummary {
    const key = `${pool}|${domain}`;
    let d = this.dests.get(key);
    if (!d) this.dests.set(key, (d = { pool, domain, queued: 0, held: 0, failed: 0, nextDue: null }));
    return d;
  }

  /** A row of (pool, domain) moved from one state to another (null: it did not exist / is gone). */
  private count(pool: string, domain: string, from: string | null, to: string | null, nextAt?: number): void {
    if (this.journal) this.journal.push([pool, domain, from, to, nextAt]);
    else this.move(pool, domain, from, to, nextAt);
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

  private newId(): string {
    // Sortable by time, unique within and across restarts; the last two characters (the
    // sequence) spread message files over subdirectories.
    return `${idAt(Date.now())}${this.idSalt}${(this.seq++ & 0xfff).toString(36).toUpperCase().padStart(3, '0')}`;
  }

  fileFor(id: string): string {
    return path.join(this.msgDir, id.slice(-2), id);
  }

  /** Refuse new mail from clients when the spool's disk is below min_free (never what is already owed). */
  private async checkFree(bytes: number): Promise<void> {
    const min = this.minFree();
    if (min <= 0) return;
    // Asked of the kernel at most every 250 ms; in between, what we wrote is taken off.
    const now = Date.now();
    if (now - this.freeChecked.at > 250) {
      const st = await fsp.statfs(this.dir);
      this.freeChecked = { at: now, bytes: st.bavail * st.bsize };
    }
    this.freeChecked.bytes -= bytes;
    if (this.freeChecked.bytes < min) throw new SpoolFullError('spool below its minimum free space');
  }

  /** `id`'s file's path, its subdirectory made (and its entry synced) once. */
  private async newFile(id: string): Promise<{ file: string; sub: string }> {
    const file = this.fileFor(id);
    const sub = path.dirname(file);
    if (!this.madeDirs.has(sub)) {
      // One level, not recursive: a recursive mkdir reports a read-only disk as ENOENT.
      await fsp.mkdir(sub).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e;
      });
      await fsyncDir(this.msgDir);
      this.madeDirs.add(sub);
    }
    return { file, sub };
  }

  /** The row for a new message (`file` '' when its body goes into the index). */
  private rowFor(id: string, env: Envelope, size: number, file: string, prefix: Buffer | null): MessageRow {
    return {
      id,
      created: Date.now(),
      sender: env.sender,
      size,
      message_id: env.messageId ?? null,
      listener: env.listener,
      user: env.user ?? null,
      class: env.class ?? null,
      client: env.client,
      file,
      dsn_of: env.dsnOf ?? null,
      prefix,
      params: encodeStored(env.params),
    };
  }

  /** A whole message made here (a DSN) ready to insert: its body for the index, or for a large one its file written and synced. */
  private async store(env: Envelope, body: Buffer): Promise<Stored> {
    const id = this.newId();
    if (body.length <= INLINE_MAX) return { row: this.rowFor(id, env, body.length, '', null), body };
    const { file, sub } = await this.newFile(id);
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await fsp.open(file, 'wx', 0o600);
      await fh.writeFile(body);
      await fh.datasync();
    } catch (e) {
      await fh?.close().catch(() => {});
      await fsp.rm(file, { force: true }).catch(() => {});
      if (diskFull(e)) throw new SpoolFullError('disk full');
      this.noteRefused(e);
      throw e;
    }
    await fh.close();
    return { row: this.rowFor(id, env, body.length, file, null), body: null, dir: sub };
  }

  /** Inside a transaction: the index learns of a message (with its body, or whose file is on disk). */
  private insert(row: MessageRow, env: Envelope, body: Buffer | null, leased = false): void {
    const now = Date.now();
    this.stmts.insMsg.run({ ...row, body });
    for (const r of env.recipients) {
      this.stmts.insRcpt.run(row.id, r.address, r.domain, r.pool, r.route, now, now, leased ? 1 : 0, encodeStored(r.dsn));
      this.count(r.pool, r.domain, null, 'queued', now);
    }
    // No 'accepted' event row: the message row says all of it, and events() shows it from there
    // (one insert and one delete fewer per message).
  }

  /**
   * A message arriving: kept in memory while it is small, moved to its file as the client
   * sends more (never held whole in memory past INLINE_BODY_MAX); part of the queue only
   * through commitIncoming(). `expected` is the size the client declared (SIZE=), checked
   * against min_free up front.
   */
  async incoming(expected = 0): Promise<Incoming> {
    // Without its reserve the spool's disk is full: what room there is belongs to the queue.
    if (this.refused) throw new SpoolUnavailableError(`spool cannot write (${this.refused.error})`);
    if (!this.reserved) throw new SpoolFullError('spool disk full (its reserve is in use)');
    this.checkWritable();
    await this.checkFree(expected);
    const id = this.newId();
    return new Incoming(id, this.fileFor(id), {
      open: () => this.openFile(id),
      done: (hadFile) => {
        if (hadFile) this.openIncoming--;
      },
      refused: (e) => this.noteRefused(e),
    });
  }

  /**
   * Most mail never touches the message directory now, so a read-only one (a remount, a
   * failing disk) is looked for here: access(2) is one syscall on the event loop, no file made
   * and no thread-pool trip, and new mail is refused before the client sends its body.
   */
  private checkWritable(): void {
    // Asked at most every 100 ms under load: mail that arrives in between is still refused
    // if the index cannot be written, and is durable if it can.
    const now = Date.now();
    if (now - this.writableAt < WRITABLE_TTL) return;
    try {
      fs.accessSync(this.msgDir, fs.constants.W_OK);
    } catch (e) {
      this.writableAt = 0;
      throw this.refusal(e);
    }
    this.writableAt = now;
  }

  private writableAt = 0;

  /** An arriving message's file, when it outgrows memory. */
  private async openFile(id: string): Promise<fsp.FileHandle> {
    try {
      const { file } = await this.newFile(id);
      const fh = await fsp.open(file, 'wx', 0o600);
      this.openIncoming++;
      return fh;
    } catch (e) {
      if (diskFull(e)) throw new SpoolFullError('disk full');
      throw this.refusal(e);
    }
  }

  /** Make an incoming message durable and queued; resolves with its id once it is safe to answer 250. */
  async commitIncoming(inc: Incoming, env: Envelope, prefix: Buffer | null, opts: { leased?: boolean } = {}): Promise<string> {
    try {
      await this.checkFree(0);
      const size = inc.size + (prefix?.length ?? 0);
      if (inc.inMemory) {
        // Body and envelope in one transaction: the group commit's WAL sync covers both.
        const row = this.rowFor(inc.id, env, size, '', null);
        const body = inc.bytes(prefix);
        await this.write(() => this.insert(row, env, body, opts.leased), { newMail: true });
        this.keepHot(row, body);
      } else {
        await inc.seal();
        const row = this.rowFor(inc.id, env, size, inc.file, prefix);
        await this.write(() => this.insert(row, env, null, opts.leased), { dir: path.dirname(inc.file), newMail: true });
        this.keepHot(row, null);
      }
      inc.done();
    } catch (e) {
      await inc.discard();
      if (e instanceof SpoolFullError) throw e;
      if (diskFull(e)) throw new SpoolFullError('disk full');
      throw this.refusal(e);
    }
    this.emit('queued', inc.id);
    return inc.id;
  }

  /**
   * Commit attempt outcomes for some recipients of one message, with their history events and
   * the DSN they cause, in one transaction (invariant 1). Rows set to `bounced` become
   * `failed` (DSN owed) when the DSN cannot be stored. A message left with no open recipient
   * is removed with its body. Returns the DSN's queue id, if one was queued.
   */
  async settle(msg: string, updates: RecipientRow[], events: Omit<EventRow, 'msg'>[], dsn?: DsnToQueue, opts: { unleasedOnly?: boolean } = {}): Promise<string | undefined> {
    let stored: Stored | undefined;
    if (dsn) {
      try {
        stored = await this.store(dsn.env, dsn.body);
      } catch (e) {
        this.emit('dsn-deferred', msg, e);
        updates = owed(updates);
      }
    }
    try {
      return await this.settleRows(msg, updates, events, stored && dsn && { ...stored, env: dsn.env }, opts);
    } catch (e) {
      if (stored?.row.file) await fsp.rm(stored.row.file, { force: true }).catch(() => {});
      // A DSN in the index makes the transaction larger: when even the reserve could not make
      // room for it, the outcomes are recorded without it and the DSN is owed.
      if (!stored || !diskFull(e)) throw e;
      this.emit('dsn-deferred', msg, e);
      return await this.settleRows(msg, owed(updates), events, undefined, opts);
    }
  }

  private async settleRows(msg: string, updates: RecipientRow[], events: Omit<EventRow, 'msg'>[], dsn: (Stored & { env: Envelope }) | undefined, opts: { unleasedOnly?: boolean }): Promise<string | undefined> {
    let removed: string | null = null;
    await this.write(
      () => {
        // One read of the message's rows: what each was, and whether any stays open after this.
        const rows = this.stmts.rcpts.all(msg) as (RecipientRow & { leased: number })[];
        const applied: { u: RecipientRow; prev: RecipientRow; was: RcptState }[] = [];
        for (const u of updates) {
          const prev = rows.find((r) => r.rcpt === u.rcpt);
          // An outcome is recorded once: a row that already has its final state keeps it.
          if (!prev || !OPEN.has(prev.state)) continue;
          if (opts.unleasedOnly && prev.leased) continue;
          applied.push({ u, prev, was: prev.state });
          prev.state = u.state;
        }
        if (dsn) this.insert(dsn.row, dsn.env, dsn.body);
        removed = null;
        if (!rows.some((r) => OPEN.has(r.state))) {
          // A message that leaves the queue goes with its rows and history, which are not
          // updated or written first only to be deleted.
          for (const a of applied) a.prev.state = a.was;
          removed = this.removeRows(msg, rows);
          return;
        }
        for (const { u, prev, was } of applied) {
          this.stmts.update.run({ ...u, dsn: u.dsn ?? prev.dsn ?? null });
          this.count(prev.pool, prev.domain, was, u.state, u.next_at);
        }
        for (const e of events) this.stmts.insEvent.run(msg, e.at, e.rcpt, e.kind, e.server, e.code, e.text);
      },
      { dir: dsn?.dir },
    );
    if (dsn) this.emit('queued', dsn.row.id);
    // Committed: a file left behind is only disk space, never a reason to report failure.
    if (removed) await unlinkIfThere(this.fileFor(msg)).catch((e: Error) => this.emit('unlink-failed', msg, e));
    return dsn?.row.id;
  }

  /** Group commit: writes queued in the same turn of the event loop share one transaction. */
  private write(apply: () => void, opts: WriteOpts = {}): Promise<void> {
    // While the filesystem refuses writes, none is tried but the probe's.
    if (this.refused && !opts.probing) return Promise.reject(new SpoolUnavailableError(`spool cannot write (${this.refused.error})`));
    return new Promise((resolve, reject) => {
      this.pending.push({ apply, ...opts, durable: opts.durable ?? true, resolve, reject });
      if (!this.committing) {
        this.committing = true;
        setImmediate(() => void this.commit());
      }
    });
  }

  /** Apply a batch in one transaction; its counter moves once it has committed. */
  private runBatch(batch: PendingWrite[]): Parameters<Spool['move']>[] {
    this.journal = [];
    try {
      this.db.transaction(() => {
        for (const p of batch) p.apply();
      })();
      return this.journal;
    } finally {
      // Rolled back: its counter moves are dropped with it.
      this.journal = null;
    }
  }

  private async commit(): Promise<void> {
    let batch = this.pending;
    this.pending = [];
    try {
      // New directory entries must be on disk before the index says the files exist.
      const dirs = new Set(batch.flatMap((p) => (p.dir ? [p.dir] : [])));
      await Promise.all([...dirs].map(fsyncDir));
      let moves: Parameters<Spool['move']>[];
      try {
        moves = this.runBatch(batch);
      } catch (e) {
        if (!diskFull(e)) throw e;
        // The disk is full: new mail goes first (it gets 452), then the reserve makes room for
        // what the queue must record (invariants 2 and 5).
        const fresh = batch.filter((p) => p.newMail);
        for (const p of fresh) p.reject(new SpoolFullError('disk full'));
        if (fresh.length) batch = batch.filter((p) => !p.newMail);
        try {
          moves = this.runBatch(batch);
        } catch (e) {
          if (!diskFull(e) || !this.releaseReserve()) throw e;
          moves = this.runBatch(batch);
        }
      }
      for (const m of moves) this.move(...m);
      try {
        // A batch of leases only: nothing a crash could lose matters (start-up clears leases).
        if (batch.some((p) => p.durable)) {
          this.wal ??= await fsp.open(`${this.dbFile}-wal`, 'r');
          await this.wal.datasync();
        }
      } catch (e) {
        // Committed, but not known to be on disk (after a failed fsync the page cache may
        // already have dropped the pages): neither "done" nor "not done" is true. No reply
        // is given; the process must restart and read what the disk really holds.
        this.emit('fatal', new SpoolFatalError(`syncing the spool index failed after a commit: ${(e as Error).message}`));
        return;
      }
      for (const p of batch) p.resolve();
    } catch (e) {
      this.noteRefused(e);
      for (const p of batch) p.reject(e as Error);
    }
    if (this.pending.length) setImmediate(() => void this.commit());
    else this.committing = false;
  }

  /** Lease what starts now: in flight, not picked twice, cleared on start. */
  lease(rows: RecipientRow[]): Promise<void> {
    return this.write(
      () => {
        for (const r of rows) this.stmts.lease.run(1, r.msg, r.rcpt);
      },
      { durable: false },
    );
  }


  /** Queued rows of one destination that are due, oldest due first. */
  dueFor(pool: string, domain: string, now: number, limit: number): RecipientRow[] {
    return this.stmts.dueFor.all(pool, domain, now, limit) as RecipientRow[];
  }

  /** One message's queued rows of one destination that are due (a message with many recipients there). */
  dueRowsOf(msg: string, pool: string, domain: string, now: number, limit: number): RecipientRow[] {
    return this.stmts.dueRowsOf.all(msg, pool, domain, now, limit) as RecipientRow[];
  }

  /** Look up when a destination's next row is due (an index seek), and remember it. */
  refreshDue(pool: string, domain: string): number | null {
    const at = (this.stmts.minDue.get(pool, domain) as { at: number | null }).at;
    const d = this.dests.get(`${pool}|${domain}`);
    if (d) d.nextDue = at;
    if (at !== null) this.markDue(pool, domain, at);
    return at;
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

  /** Queued rows of messages created before `cutoff` (max_age), not in flight. */
  expiredRows(cutoff: number, limit: number): RecipientRow[] {
    return this.stmts.expired.all(idAt(cutoff), limit) as RecipientRow[];
  }

  /** Permanently failed rows whose DSN could not be queued yet. */
  owedBounces(limit: number): RecipientRow[] {
    return this.stmts.failedRows.all(limit) as RecipientRow[];
  }

  /** Move queued rows to another pool (routes changed since they were accepted); due now. */
  reroute(rows: RecipientRow[], pool: string, route: number): Promise<void> {
    const now = Date.now();
    return this.write(() => {
      for (const r of rows) {
        const prev = this.stmts.rcpt.get(r.msg, r.rcpt) as RecipientRow | undefined;
        if (!prev || prev.state !== 'queued') continue;
        this.stmts.reroute.run(pool, route, now, r.msg, r.rcpt);
        this.count(prev.pool, prev.domain, 'queued', null);
        this.count(pool, prev.domain, null, 'queued', now);
      }
    });
  }

  /** Oldest open message and count per (pool, destination), largest first: from the counters plus one index seek each. */
  destinations(limit: number): { pool: string; domain: string; queued: number; oldest: number }[] {
    return this.byDestination(limit).top;
  }

  /**
   * The `limit` largest destinations with their oldest message, and the rest summed. The rest's
   * oldest is looked up among its 200 largest only: the work per call stays bounded however
   * many destinations there are.
   */
  byDestination(limit: number): { top: { pool: string; domain: string; queued: number; oldest: number }[]; rest: { destinations: number; queued: number; oldest: number | null } } {
    const size = (d: DestSummary) => d.queued + d.held + d.failed;
    const all = [...this.dests.values()].sort((a, b) => size(b) - size(a));
    const now = Date.now();
    // An index seek each, remembered for a few seconds: dashboards poll every second, and on
    // a large spool a seek can wait for the disk (SQLite runs on the event loop).
    const oldest = (d: DestSummary) => {
      const key = `${d.pool}|${d.domain}`;
      const hit = this.oldestCache.get(key);
      if (hit && now - hit.at < OLDEST_TTL) return hit.oldest;
      const o = this.stmts.oldest.get(d.pool, d.domain) as { msg: string } | undefined;
      const v = o ? idTime(o.msg) : now;
      if (this.oldestCache.size > 10_000) this.oldestCache.clear();
      this.oldestCache.set(key, { at: now, oldest: v });
      return v;
    };
    const top = all.slice(0, limit).map((d) => ({ pool: d.pool, domain: d.domain, queued: size(d), oldest: oldest(d) }));
    const others = all.slice(limit);
    return {
      top,
      rest: { destinations: others.length, queued: others.reduce((n, d) => n + size(d), 0), oldest: others.length ? Math.min(...others.slice(0, 200).map(oldest)) : null },
    };
  }

  /**
   * One destination's open recipients (queued, held, failed), oldest message first, with their
   * message's time and sender: one seek on recipients_age (pool, domain, msg) that stops after
   * `limit` rows, however large the queue.
   */
  openFor(pool: string, domain: string, limit: number): (RecipientRow & { created: number; sender: string })[] {
    this.openForStmt ??= this.db.prepare(
      `SELECT r.*, m.created AS created, m.sender AS sender FROM recipients r INDEXED BY recipients_age JOIN messages m ON m.id = r.msg
       WHERE r.pool = ? AND r.domain = ? AND r.state IN ('queued', 'held', 'failed') ORDER BY r.msg LIMIT ?`,
    );
    return this.openForStmt.all(pool, domain, limit) as (RecipientRow & { created: number; sender: string })[];
  }

  private openForStmt?: Database.Statement;

  /** When one destination's oldest open message was accepted (an index seek), or null when it has none. */
  oldest(pool: string, domain: string): number | null {
    const o = this.stmts.oldest.get(pool, domain) as { msg: string } | undefined;
    return o ? idTime(o.msg) : null;
  }

  /** How many destinations have mail queued. */
  get destinationCount(): number {
    return this.dests.size;
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

  /**
   * Messages queued lately, as their row and in-index body: the queue manager sends them
   * without reading them back. Bounded in bytes whatever the queue holds; the oldest go first.
   */
  private hot = new Map<string, { row: MessageRow; body: Buffer | null }>();
  private hotBytes = 0;

  private keepHot(row: MessageRow, body: Buffer | null): void {
    this.hot.set(row.id, { row, body });
    this.hotBytes += HOT_ENTRY + (body?.length ?? 0);
    for (const [id] of this.hot) {
      if (this.hotBytes <= HOT_MAX) break;
      this.forgetHot(id);
    }
  }

  private forgetHot(id: string): void {
    const h = this.hot.get(id);
    if (!h) return;
    this.hot.delete(id);
    this.hotBytes -= HOT_ENTRY + (h.body?.length ?? 0);
  }

  message(id: string): MessageRow | undefined {
    const h = this.hot.get(id);
    if (h) return h.row;
    return this.stmts.msg.get(id) as MessageRow | undefined;
  }

  recipients(id: string): RecipientRow[] {
    return this.stmts.rcpts.all(id) as RecipientRow[];
  }

  events(id: string): EventRow[] {
    const rows = this.stmts.events.all(id) as EventRow[];
    const m = this.message(id);
    // Spools written before this version have the row; newer ones show it from the message.
    if (!m || rows.some((e) => e.kind === 'accepted')) return rows;
    const n = (this.stmts.rcpts.all(id) as unknown[]).length;
    return [{ msg: id, at: m.created, rcpt: null, kind: 'accepted', server: null, code: 250, text: `from ${m.client} via ${m.listener}, ${n} recipient(s), ${m.size} bytes` }, ...rows];
  }

  /** The start of a message (its header, for DSNs): at most `max` bytes read, whatever its size. */
  async readHead(id: string, max = 65536): Promise<Buffer> {
    const m = this.stmts.head.get(max, id) as { prefix: Buffer | null; file: string; head: Buffer | null } | undefined;
    if (m && m.file === '') return m.head ?? Buffer.alloc(0);
    const prefix = m?.prefix ?? Buffer.alloc(0);
    const fh = await fsp.open(this.fileFor(id), 'r');
    try {
      const buf = Buffer.alloc(max);
      const { bytesRead } = await fh.read(buf, 0, max, 0);
      return Buffer.concat([prefix, buf.subarray(0, bytesRead)]);
    } finally {
      await fh.close();
    }
  }

  /** A message whole (the lines added at acceptance included), read into memory: for a DSN with RET=FULL, which bounds its size. */
  async readWhole(m: MessageRow): Promise<Buffer> {
    const b = this.bodyFor(m);
    if (Buffer.isBuffer(b)) return b;
    return Buffer.concat([b.prefix ?? Buffer.alloc(0), await fsp.readFile(b.file)]);
  }

  /** A message's bytes when its body is in the index (the lines added at acceptance included); null when it has a file. */
  bodyOf(id: string): Buffer | null {
    const h = this.hot.get(id);
    if (h?.body) return h.body;
    return (this.stmts.body.get(id) as Buffer | null | undefined) ?? null;
  }

  /** What delivery sends for a queued message: its bytes from the index, or its file after the lines added at acceptance. */
  bodyFor(m: MessageRow): StoredBody {
    if (m.file) return { file: this.fileFor(m.id), size: m.size, prefix: m.prefix };
    const body = this.bodyOf(m.id);
    // A row without its body is a broken index: the delivery fails as an internal error and is retried, nothing is sent.
    if (!body) throw new Error(`message ${m.id} has no body in the spool index`);
    return body;
  }

  /** Inside a transaction: a message's rows go; returns its file ('' or null: none to unlink). */
  private removeRows(id: string, rows = this.stmts.rcpts.all(id) as RecipientRow[]): string | null {
    for (const r of rows) this.count(r.pool, r.domain, r.state, null);
    this.stmts.delRcpts.run(id);
    this.stmts.delEvents.run(id);
    this.forgetHot(id);
    return (this.stmts.delMsg.get(id) as { file: string } | undefined)?.file ?? null;
  }

  async remove(id: string): Promise<void> {
    let file: string | null = null;
    await this.write(() => (file = this.removeRows(id)));
    // An unknown id may still have a file (an orphan): only a body known to be in the index has none.
    if (file !== '') await unlinkIfThere(this.fileFor(id));
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
      .prepare(`SELECT DISTINCT m.id FROM messages m JOIN recipients r ON r.msg = m.id ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY m.id LIMIT ?`)
      .all(...args, f.limit ?? 1000) as { id: string }[];
    return ids.map(({ id }) => ({ ...this.message(id)!, recipients: this.recipients(id) }));
  }

  /** Open recipients by state, from the counters (no scan). */
  counts(): { state: string; n: number }[] {
    return Object.entries(this.totals).map(([state, n]) => ({ state, n }));
  }

  /** Change the state of a message's open recipients (hold, release, flush); in-flight ones are left alone. */
  async setState(id: string, from: RcptState[], to: RcptState, nextAt: number, kind: string): Promise<number> {
    let n = 0;
    await this.write(() => {
      const now = Date.now();
      for (const r of this.stmts.rcpts.all(id) as (RecipientRow & { leased: number })[]) {
        if (!from.includes(r.state) || r.leased) continue;
        this.db.prepare(`UPDATE recipients SET state = ?, next_at = ?, updated = ?, wait = NULL WHERE msg = ? AND rcpt = ?`).run(to, nextAt, now, id, r.rcpt);
        this.count(r.pool, r.domain, r.state, to, nextAt);
        n++;
      }
      if (n) this.stmts.insEvent.run(id, now, null, kind, null, null, null);
    });
    return n;
  }

  /**
   * Remove message files the index never learned of: written before a crash, before their
   * commit. Files made by this process are left alone (they may be arriving now). Works in
   * slices so the event loop stays free however many files there are.
   */
  async sweepOrphans(startedAt = Date.now()): Promise<number> {
    let removed = 0;
    const has = this.db.prepare(`SELECT 1 FROM messages WHERE id = ?`);
    const subs = await fsp.readdir(this.msgDir).catch(() => [] as string[]);
    for (const sub of subs) {
      const dir = path.join(this.msgDir, sub);
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

  /** Wait for every write queued so far (shutdown). */
  async flush(): Promise<void> {
    // A spool that cannot write has nothing more to flush (what failed was never acknowledged).
    if (this.committing) await this.write(() => {}).catch(() => {});
  }

  close(): void {
    this.db.close();
    try {
      if (this.openIncoming === 0) fs.writeFileSync(this.cleanPath, `${new Date().toISOString()}\n`);
    } catch {
      /* a read-only or full disk: the next start sweeps, which is only slower */
    }
    void this.wal?.close().catch(() => {});
  }
}

/** A message being received: in memory while small, then in its file (written as it arrives). */
export class Incoming {
  size = 0;
  /** The bytes so far while the message fits in memory; null once it has moved to its file. */
  private chunks: Buffer[] | null = [];
  private fh?: fsp.FileHandle;
  private hadFile = false;
  private sealed = false;
  private closed = false;
  private finished = false;

  constructor(
    readonly id: string,
    /** Where its file is (or would be, while it is in memory). */
    readonly file: string,
    private hooks: { open: () => Promise<fsp.FileHandle>; done: (hadFile: boolean) => void; refused: (e: unknown) => void },
  ) {}

  /** Still in memory: committed with its body in the index, no file. */
  get inMemory(): boolean {
    return this.chunks !== null;
  }

  /** Committed to the index or discarded: no longer open in the spool. */
  done(): void {
    if (this.finished) return;
    this.finished = true;
    this.hooks.done(this.hadFile);
  }

  /** Add bytes. A chunk kept in memory is kept as given, not copied: the caller must not reuse it. */
  async write(chunk: Buffer): Promise<void> {
    if (this.chunks && this.size + chunk.length <= INLINE_BODY_MAX) {
      this.chunks.push(chunk);
      this.size += chunk.length;
      return;
    }
    try {
      if (this.chunks) await this.spill();
      await writeAll(this.fh!, chunk);
      this.size += chunk.length;
    } catch (e) {
      throw this.failed(e);
    }
  }

  /** Move what is in memory to the message's file, which takes the rest. */
  private async spill(): Promise<void> {
    this.fh = await this.hooks.open();
    this.hadFile = true;
    const held = Buffer.concat(this.chunks!);
    this.chunks = null;
    await writeAll(this.fh, held);
  }

  private failed(e: unknown): unknown {
    if (e instanceof SpoolFullError || e instanceof SpoolUnavailableError) return e;
    if (diskFull(e)) return new SpoolFullError('disk full');
    this.hooks.refused(e);
    return e;
  }

  /** The whole message in memory, `prefix` first (one copy, for the index). */
  bytes(prefix: Buffer | null = null): Buffer {
    const parts = prefix?.length ? [prefix, ...this.chunks!] : this.chunks!;
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  /** What to read the message from: its bytes while in memory, else its file's path (DKIM signing). */
  content(): Buffer | string {
    if (!this.chunks) return this.file;
    // Joined once: later calls (commit, delivery) reuse the one buffer.
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  /** The message to relay before it is queued (cut-through): from memory, or from its file. */
  body(prefix: Buffer | null): StoredBody {
    if (this.chunks) return this.bytes(prefix);
    return { file: this.file, size: this.size + (prefix?.length ?? 0), prefix };
  }

  /**
   * On disk as a file, synced (a message still in memory is written out first). commitIncoming
   * needs it only for a message that has moved to its file; a small one goes into the index.
   */
  async seal(): Promise<void> {
    if (this.sealed) return;
    try {
      if (this.chunks) await this.spill();
      await this.sync();
    } catch (e) {
      throw this.failed(e);
    }
    this.sealed = true;
  }

  private async sync(): Promise<void> {
    if (this.closed) {
      // Closed for a cut-through attempt first: fsync works through any descriptor of the file.
      const fh = await fsp.open(this.file, 'r');
      try {
        await fh.datasync();
      } finally {
        await fh.close();
      }
    } else {
      await this.fh!.datasync();
      await this.close();
    }
  }

  /** Done writing, not (yet) durable: for reading it back (signing, cut-through). Nothing to do in memory. */
  async close(): Promise<void> {
    if (this.closed || !this.fh) return;
    this.closed = true;
    await this.fh.close();
  }

  async discard(): Promise<void> {
    this.chunks = null;
    if (this.hadFile) {
      await this.close().catch(() => {});
      await fsp.rm(this.file, { force: true }).catch(() => {});
    }
    this.done();
  }
}

async function writeAll(fh: fsp.FileHandle, chunk: Buffer): Promise<void> {
  let off = 0;
  while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
}

/** Recipients set to `bounced` become `failed`: outcome known, DSN owed (invariant 1). */
function owed(updates: RecipientRow[]): RecipientRow[] {
  return updates.map((u) => (u.state === 'bounced' ? { ...u, state: 'failed' } : u));
}

/** A message made here, ready to insert: its body for the index, or (body null) its file, synced, whose directory entry `dir` needs a sync. */
interface Stored { row: MessageRow; body: Buffer | null; dir?: string }

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
