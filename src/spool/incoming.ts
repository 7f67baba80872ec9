// A message as it is received: in memory while small, then in a file of its own, written as
// the client sends it, so memory per session stays bounded whatever the size (spool.ts says
// where bodies live and when they are durable).
import fsp from 'node:fs/promises';
import { diskFull, SpoolFullError, SpoolUnavailableError } from './errors.js';
import type { StoredBody } from './records.js';

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
