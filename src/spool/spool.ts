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
// Its parts, one job each: schema.ts, group-commit.ts, incoming.ts, message-files.ts, reserve.ts,
// queue-index.ts (counters and due list: no scan of the queue), settlement.ts, bodies.ts,
// queue-view.ts (the queue tools' reads), control-tables.ts, orphans.ts.
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { encodeStored } from '../message/dsn-params.js';
import { diskFull, SpoolFullError, SpoolUnavailableError, writeRefused } from './errors.js';
import { Incoming, INLINE_MAX } from './incoming.js';
import { QueueIndex, type CountRow } from './queue-index.js';
import { idAt, type DsnToQueue, type Envelope, type EventRow, type MessageRow, type RcptState, type RecipientRow, type SettleOpts, type Stored } from './records.js';
import { migrate } from './schema.js';
import { ControlTables } from './control-tables.js';
import { OutboxTable } from './outbox-table.js';
import { QueueView } from './queue-view.js';
import { Bodies } from './bodies.js';
import { GroupCommit, type WriteOpts } from './group-commit.js';
import { Reserve } from './reserve.js';
import { MessageFiles } from './message-files.js';
import { sweepOrphans } from './orphans.js';
import { owed, planSettlement } from './settlement.js';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

// The spool's parts, for callers that import the spool as one module.
export * from './records.js';
export * from './errors.js';
export { Incoming, INLINE_MAX, INLINE_BODY_MAX } from './incoming.js';
export { SCHEMA_VERSION } from './schema.js';
export { HOT_MAX } from './bodies.js';
export { RESERVE } from './reserve.js';

/** The columns of a message row but its body (read only when it is sent). */
const MESSAGE_COLS = 'id, created, sender, size, message_id, listener, user, class, client, file, dsn_of, prefix, params, tags';

/** The WAL is cut back to this after a checkpoint: one group commit of large bodies would otherwise leave it that size for good. */
const WAL_KEEP = 16 * 1024 * 1024;
/** How long a successful check that the message directory is writable holds. */
const WRITABLE_TTL = 100;

/** Emits 'queued' (id) after each commit of new messages. */
export class Spool extends EventEmitter {
  readonly db: Database.Database;
  private msgDir: string;
  private seq = 0;
  private stmts;
  private dbFile: string;
  private commits: GroupCommit;
  private files: MessageFiles;
  /** Per process, so ids stay unique across restarts without a random draw per message. */
  private idSalt = randomBytes(3).toString('hex').toUpperCase();
  /** Suspensions, overrides and warm-up counts (the node's own control store). */
  readonly control: ControlTables;
  /** Events waiting for their sinks (webhooks, the events file), written with the outcomes. */
  readonly outbox: OutboxTable;
  /** Bodies as delivery reads them, and the hot cache of messages queued lately. */
  readonly bodies: Bodies;
  /** The queue tools' and the admin's reads (destinations, listings, a message's history). */
  readonly view: QueueView;
  /** Counters and the due list per (pool, destination), moved as rows change state. */
  readonly index = new QueueIndex();
  /** Why the spool cannot write now (null: it can). */
  private refused: { since: number; error: string } | null = null;

  constructor(readonly dir: string, private minFree: () => number = () => 0) {
    super();
    this.msgDir = path.join(dir, 'messages');
    fs.mkdirSync(this.msgDir, { recursive: true });
    this.files = new MessageFiles(dir, this.msgDir, minFree);
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
    // Spools from before bodies moved into the index keep body NULL and their files.
    migrate(this.db, dir);
    this.db.pragma(`journal_size_limit = ${WAL_KEEP}`);
    this.stmts = {
      insMsg: this.db.prepare(`INSERT INTO messages (id, created, sender, size, message_id, listener, user, class, client, file, dsn_of, prefix, body, params, tags) VALUES (@id, @created, @sender, @size, @message_id, @listener, @user, @class, @client, @file, @dsn_of, @prefix, @body, @params, @tags)`),
      insRcpt: this.db.prepare(`INSERT INTO recipients (msg, rcpt, domain, pool, route, state, attempts, next_at, updated, leased, dsn) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?)`),
      insEvent: this.db.prepare(`INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)`),
      dueFor: this.db.prepare(`SELECT * FROM recipients WHERE pool = ? AND domain = ? AND state = 'queued' AND leased = 0 AND next_at <= ? ORDER BY next_at LIMIT ?`),
      dueRowsOf: this.db.prepare(`SELECT * FROM recipients WHERE msg = ? AND pool = ? AND domain = ? AND state = 'queued' AND leased = 0 AND next_at <= ? LIMIT ?`),
      minDue: this.db.prepare(`SELECT MIN(next_at) AS at FROM recipients WHERE pool = ? AND domain = ? AND state = 'queued' AND leased = 0`),
      expired: this.db.prepare(`SELECT * FROM recipients WHERE msg < ? AND state = 'queued' AND leased = 0 LIMIT ?`),
      failedRows: this.db.prepare(`SELECT * FROM recipients WHERE state = 'failed' AND leased = 0 LIMIT ?`),
      lease: this.db.prepare(`UPDATE recipients SET leased = ? WHERE msg = ? AND rcpt = ?`),
      msg: this.db.prepare(`SELECT ${MESSAGE_COLS} FROM messages WHERE id = ?`),
      rcpt: this.db.prepare(`SELECT * FROM recipients WHERE msg = ? AND rcpt = ?`),
      rcpts: this.db.prepare(`SELECT * FROM recipients WHERE msg = ?`),
      update: this.db.prepare(`UPDATE recipients SET state = @state, attempts = @attempts, next_at = @next_at, last_code = @last_code, last_reply = @last_reply, last_server = @last_server, updated = @updated, wait = @wait, dsn = @dsn, leased = 0 WHERE msg = @msg AND rcpt = @rcpt`),
      reroute: this.db.prepare(`UPDATE recipients SET pool = ?, route = ?, next_at = ?, wait = NULL, leased = 0 WHERE msg = ? AND rcpt = ?`),
      delMsg: this.db.prepare(`DELETE FROM messages WHERE id = ? RETURNING file`),
      delRcpts: this.db.prepare(`DELETE FROM recipients WHERE msg = ?`),
      delEvents: this.db.prepare(`DELETE FROM events WHERE msg = ?`),
      probe: this.db.prepare(`INSERT OR REPLACE INTO probe (rowid, at) VALUES (1, ?)`),
    };
    // Deliveries in flight when the process died are due again now (Postfix's active queue
    // is likewise put back on start).
    this.db.prepare(`UPDATE recipients SET leased = 0 WHERE leased = 1`).run();
    this.summarize();
    this.commits = new GroupCommit(this.db, this.index, `${this.dbFile}-wal`, {
      refused: () => this.refused,
      noteRefused: (e) => this.noteRefused(e),
      releaseReserve: () => this.releaseReserve(),
      fatal: (e) => this.emit('fatal', e),
    });
    this.control = new ControlTables(this.db, (apply) => this.write(apply));
    this.outbox = new OutboxTable(this.db, (apply, opts) => this.write(apply, opts));
    this.view = new QueueView(this.db, this.index, this);
    this.bodies = new Bodies(this.db, (id) => this.fileFor(id));
    this.reserve = new Reserve(dir, () => this.emit('reserve-released'));
    this.reserve.make();
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

  private reserve: Reserve;

  /** Keep the disk reserve (reserve.ts); the queue manager makes it again once there is room. */
  makeReserve(): void {
    this.reserve.make();
  }

  private releaseReserve(): boolean {
    return this.reserve.release();
  }

  get reserveHeld(): boolean {
    return this.reserve.held;
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
    this.files.recheckFree();
    this.emit('writable');
    return true;
  }

  /** Counters from the index, once at start-up (afterwards they move with each commit). */
  private summarize(): void {
    const rows = this.db
      .prepare(`SELECT pool, domain, state, COUNT(*) AS n, MIN(CASE WHEN leased = 0 THEN next_at END) AS due FROM recipients WHERE state IN ('queued', 'held', 'failed') GROUP BY pool, domain, state`)
      .all() as CountRow[];
    this.index.load(rows);
  }

  /** A row of (pool, domain) moved from one state to another (null: it did not exist / is gone). */
  private count(pool: string, domain: string, from: string | null, to: string | null, nextAt?: number): void {
    this.index.count(pool, domain, from, to, nextAt);
  }

  private newId(): string {
    // Sortable by time, unique within and across restarts; the last two characters (the
    // sequence) spread message files over subdirectories.
    return `${idAt(Date.now())}${this.idSalt}${(this.seq++ & 0xfff).toString(36).toUpperCase().padStart(3, '0')}`;
  }

  /** Where message `id`'s file is (or would be). */
  fileFor(id: string): string {
    return this.files.path(id);
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
      tags: env.tags && Object.keys(env.tags).length ? JSON.stringify(env.tags) : null,
    };
  }

  /** A whole message made here (a DSN) ready to insert: its body for the index, or for a large one its file written and synced. */
  private async store(env: Envelope, body: Buffer): Promise<Stored> {
    const id = this.newId();
    if (body.length <= INLINE_MAX) return { row: this.rowFor(id, env, body.length, '', null), body };
    const { file, sub } = await this.files.create(id);
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
    if (!this.reserve.held) throw new SpoolFullError('spool disk full (its reserve is in use)');
    this.checkWritable();
    await this.files.checkFree(expected);
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
      const { file } = await this.files.create(id);
      const fh = await fsp.open(file, 'wx', 0o600);
      this.openIncoming++;
      return fh;
    } catch (e) {
      if (diskFull(e)) throw new SpoolFullError('disk full');
      throw this.refusal(e);
    }
  }

  /** Make an incoming message durable and queued; resolves with its id once it is safe to answer 250. */
  async commitIncoming(inc: Incoming, env: Envelope, prefix: Buffer | null, opts: { leased?: boolean; outbox?: readonly string[] } = {}): Promise<string> {
    let seq = 0; // the last outbox row written with it, readable by the sinks once synced
    try {
      await this.files.checkFree(0);
      const size = inc.size + (prefix?.length ?? 0);
      if (inc.inMemory) {
        // Body and envelope in one transaction: the group commit's WAL sync covers both.
        const row = this.rowFor(inc.id, env, size, '', null);
        const body = inc.bytes(prefix);
        await this.write(() => {
          this.insert(row, env, body, opts.leased);
          if (opts.outbox?.length) seq = this.outbox.insertAll(row.id, opts.outbox);
        }, { newMail: true });
        this.bodies.keep(row, body);
      } else {
        await inc.seal();
        const row = this.rowFor(inc.id, env, size, inc.file, prefix);
        await this.write(() => {
          this.insert(row, env, null, opts.leased);
          if (opts.outbox?.length) seq = this.outbox.insertAll(row.id, opts.outbox);
        }, { dir: path.dirname(inc.file), newMail: true });
        this.bodies.keep(row, null);
      }
      inc.done();
      this.outbox.synced(seq);
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
  async settle(msg: string, updates: RecipientRow[], events: Omit<EventRow, 'msg'>[], dsn?: DsnToQueue, opts: SettleOpts = {}): Promise<string | undefined> {
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

  private async settleRows(msg: string, updates: RecipientRow[], events: Omit<EventRow, 'msg'>[], dsn: (Stored & { env: Envelope }) | undefined, opts: SettleOpts): Promise<string | undefined> {
    let removed: string | null = null;
    let seq = 0;
    await this.write(
      () => {
        // One read of the message's rows: what each was, and whether any stays open after this.
        const rows = this.stmts.rcpts.all(msg) as (RecipientRow & { leased: number })[];
        const plan = planSettlement(rows, updates, !!opts.unleasedOnly);
        if (dsn) this.insert(dsn.row, dsn.env, dsn.body);
        // The events of the outcomes that apply, with them (issue 24: no outcome without its
        // event, and no event for an outcome that was not recorded).
        if (opts.outbox?.length) {
          const applied = new Set(plan.applied.map((a) => a.u.rcpt));
          seq = this.outbox.insertAll(msg, opts.outbox.filter((o) => applied.has(o.rcpt)).map((o) => o.body));
        }
        removed = null;
        if (plan.leaves) {
          removed = this.removeRows(msg, rows);
          return;
        }
        for (const { u, prev, was } of plan.applied) {
          this.stmts.update.run({ ...u, dsn: u.dsn ?? prev.dsn ?? null });
          this.count(prev.pool, prev.domain, was, u.state, u.next_at);
        }
        for (const e of events) this.stmts.insEvent.run(msg, e.at, e.rcpt, e.kind, e.server, e.code, e.text);
      },
      { dir: dsn?.dir },
    );
    this.outbox.synced(seq);
    if (dsn) this.emit('queued', dsn.row.id);
    // Committed: a file left behind is only disk space, never a reason to report failure.
    if (removed) await unlinkIfThere(this.fileFor(msg)).catch((e: Error) => this.emit('unlink-failed', msg, e));
    return dsn?.row.id;
  }

  /** Group commit (group-commit.ts): writes queued in the same turn share one transaction and one sync. */
  private write(apply: () => void, opts: WriteOpts = {}): Promise<void> {
    return this.commits.write(apply, opts);
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
    this.index.setNextDue(pool, domain, at);
    return at;
  }

  counts(): { state: string; n: number }[] {
    return this.index.counts();
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

  message(id: string): MessageRow | undefined {
    const h = this.bodies.hotRow(id);
    if (h) return h;
    return this.stmts.msg.get(id) as MessageRow | undefined;
  }

  recipients(id: string): RecipientRow[] {
    return this.stmts.rcpts.all(id) as RecipientRow[];
  }

  /** Inside a transaction: a message's rows go; returns its file ('' or null: none to unlink). */
  private removeRows(id: string, rows = this.stmts.rcpts.all(id) as RecipientRow[]): string | null {
    for (const r of rows) this.count(r.pool, r.domain, r.state, null);
    this.stmts.delRcpts.run(id);
    this.stmts.delEvents.run(id);
    this.bodies.forget(id);
    return (this.stmts.delMsg.get(id) as { file: string } | undefined)?.file ?? null;
  }

  async remove(id: string): Promise<void> {
    let file: string | null = null;
    await this.write(() => (file = this.removeRows(id)));
    // An unknown id may still have a file (an orphan): only a body known to be in the index has none.
    if (file !== '') await unlinkIfThere(this.fileFor(id));
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

  /** Remove message files the index never learned of (orphans.ts); files made by this process are left alone. */
  sweepOrphans(startedAt = Date.now()): Promise<number> {
    return sweepOrphans(this.db, this.msgDir, startedAt);
  }

  /** Wait for every write queued so far (shutdown). */
  async flush(): Promise<void> {
    // A spool that cannot write has nothing more to flush (what failed was never acknowledged).
    if (this.commits.committing) await this.write(() => {}).catch(() => {});
  }

  close(): void {
    this.db.close();
    try {
      if (this.openIncoming === 0) fs.writeFileSync(this.cleanPath, `${new Date().toISOString()}\n`);
    } catch {
      /* a read-only or full disk: the next start sweeps, which is only slower */
    }
    this.commits.close();
  }
}


async function unlinkIfThere(file: string): Promise<void> {
  await fsp.unlink(file).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}
