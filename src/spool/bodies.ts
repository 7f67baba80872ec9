// Message bodies as delivery and DSNs read them: from the index (a BLOB in the message's row)
// or from the message's own file after the header lines added at acceptance; and the hot
// cache, the messages queued lately kept in memory with their rows, so the queue manager sends
// them without reading them back (bounded in bytes whatever the queue holds).
import type Database from 'better-sqlite3';
import fsp from 'node:fs/promises';
import type { MessageRow, StoredBody } from './records.js';

/** The recently queued messages kept in memory for delivery: at most this many bytes (bodies, and a rough size per row). */
export const HOT_MAX = 32 * 1024 * 1024;
const HOT_ENTRY = 512;

export class Bodies {
  private headStmt: Database.Statement;
  private bodyStmt: Database.Statement;

  constructor(db: Database.Database, private fileFor: (id: string) => string) {
    this.headStmt = db.prepare(`SELECT prefix, file, substr(body, 1, ?) AS head FROM messages WHERE id = ?`);
    this.bodyStmt = db.prepare(`SELECT body FROM messages WHERE id = ?`).pluck();
  }

  /**
   * Messages queued lately, as their row and in-index body: the queue manager sends them
   * without reading them back. Bounded in bytes whatever the queue holds; the oldest go first.
   */
  readonly hot = new Map<string, { row: MessageRow; body: Buffer | null }>();
  hotBytes = 0;

  keep(row: MessageRow, body: Buffer | null): void {
    this.hot.set(row.id, { row, body });
    this.hotBytes += HOT_ENTRY + (body?.length ?? 0);
    for (const [id] of this.hot) {
      if (this.hotBytes <= HOT_MAX) break;
      this.forget(id);
    }
  }

  forget(id: string): void {
    const h = this.hot.get(id);
    if (!h) return;
    this.hot.delete(id);
    this.hotBytes -= HOT_ENTRY + (h.body?.length ?? 0);
  }

  /** A message's row from the hot cache (undefined: not there). */
  hotRow(id: string): MessageRow | undefined {
    return this.hot.get(id)?.row;
  }

  /** The start of a message (its header, for DSNs): at most `max` bytes read, whatever its size. */
  async readHead(id: string, max = 65536): Promise<Buffer> {
    const m = this.headStmt.get(max, id) as { prefix: Buffer | null; file: string; head: Buffer | null } | undefined;
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
    return (this.bodyStmt.get(id) as Buffer | null | undefined) ?? null;
  }

  /** What delivery sends for a queued message: its bytes from the index, or its file after the lines added at acceptance. */
  bodyFor(m: MessageRow): StoredBody {
    if (m.file) return { file: this.fileFor(m.id), size: m.size, prefix: m.prefix };
    const body = this.bodyOf(m.id);
    // A row without its body is a broken index: the delivery fails as an internal error and is retried, nothing is sent.
    if (!body) throw new Error(`message ${m.id} has no body in the spool index`);
    return body;
  }
}
