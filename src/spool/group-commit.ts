// The spool's group commit: writes queued in the same turn of the event loop share one
// SQLite transaction and one fdatasync of the WAL, run on libuv's thread pool so the event loop
// never waits for the disk. A write's promise resolves only once its transaction is on disk.
// When the disk is full, new mail is dropped from the batch first and then the reserve is given
// up, so outcomes are always recorded (spool.ts, invariants 2 and 5). The queue index's moves
// are held during the transaction and applied once it commits.
import type Database from 'better-sqlite3';
import fsp from 'node:fs/promises';
import { diskFull, SpoolFatalError, SpoolFullError, SpoolUnavailableError } from './errors.js';
import type { Move, QueueIndex } from './queue-index.js';

export interface WriteOpts {
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

export class GroupCommit {
  private pending: PendingWrite[] = [];
  /** A commit is scheduled or running. */
  committing = false;
  private wal?: fsp.FileHandle;

  constructor(
    private db: Database.Database,
    private index: QueueIndex,
    private walFile: string,
    private hooks: {
      /** Why the filesystem refuses writes now (null: it does not). */
      refused(): { error: string } | null;
      noteRefused(e: unknown): void;
      /** Give the disk reserve up; true if there was one. */
      releaseReserve(): boolean;
      /** Committed but not known to be on disk: the process must restart. */
      fatal(e: SpoolFatalError): void;
    },
  ) {}

  /** Group commit: writes queued in the same turn of the event loop share one transaction. */
  write(apply: () => void, opts: WriteOpts = {}): Promise<void> {
    // While the filesystem refuses writes, none is tried but the probe's.
    if (this.hooks.refused() && !opts.probing) return Promise.reject(new SpoolUnavailableError(`spool cannot write (${this.hooks.refused()!.error})`));
    return new Promise((resolve, reject) => {
      this.pending.push({ apply, ...opts, durable: opts.durable ?? true, resolve, reject });
      if (!this.committing) {
        this.committing = true;
        setImmediate(() => void this.commit());
      }
    });
  }

  /** Apply a batch in one transaction; its counter moves once it has committed. */
  private runBatch(batch: PendingWrite[]): Move[] {
    this.index.begin();
    try {
      this.db.transaction(() => {
        for (const p of batch) p.apply();
      })();
    } catch (e) {
      this.index.end(); // rolled back: its counter moves are dropped with it
      throw e;
    }
    return this.index.end();
  }

  private async commit(): Promise<void> {
    let batch = this.pending;
    this.pending = [];
    try {
      // New directory entries must be on disk before the index says the files exist.
      const dirs = new Set(batch.flatMap((p) => (p.dir ? [p.dir] : [])));
      await Promise.all([...dirs].map(fsyncDir));
      let moves: Move[];
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
          if (!diskFull(e) || !this.hooks.releaseReserve()) throw e;
          moves = this.runBatch(batch);
        }
      }
      this.index.apply(moves);
      try {
        // A batch of leases only: nothing a crash could lose matters (start-up clears leases).
        if (batch.some((p) => p.durable)) {
          this.wal ??= await fsp.open(this.walFile, 'r');
          await this.wal.datasync();
        }
      } catch (e) {
        // Committed, but not known to be on disk (after a failed fsync the page cache may
        // already have dropped the pages): neither "done" nor "not done" is true. No reply
        // is given; the process must restart and read what the disk really holds.
        this.hooks.fatal(new SpoolFatalError(`syncing the spool index failed after a commit: ${(e as Error).message}`));
        return;
      }
      for (const p of batch) p.resolve();
    } catch (e) {
      this.hooks.noteRefused(e);
      for (const p of batch) p.reject(e as Error);
    }
    if (this.pending.length) setImmediate(() => void this.commit());
    else this.committing = false;
  }

  close(): void {
    void this.wal?.close().catch(() => {});
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
