// Message files: where a large message's file goes (messages/<last two id characters>/<id>),
// its subdirectory made and synced once, and the min_free check that refuses new mail from
// clients when the spool's disk runs low (never what the queue already owes).
import fsp from 'node:fs/promises';
import path from 'node:path';
import { SpoolFullError } from './errors.js';
import { fsyncDir } from './group-commit.js';

export class MessageFiles {
  private madeDirs = new Set<string>();
  private freeChecked = { at: 0, bytes: Infinity };

  constructor(private dir: string, private msgDir: string, private minFree: () => number) {}

  path(id: string): string {
    return path.join(this.msgDir, id.slice(-2), id);
  }

  /** Refuse new mail from clients when the spool's disk is below min_free (never what is already owed). */
  async checkFree(bytes: number): Promise<void> {
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
  async create(id: string): Promise<{ file: string; sub: string }> {
    const file = this.path(id);
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

  /** Ask the kernel again at the next check (the disk may have changed). */
  recheckFree(): void {
    this.freeChecked.at = 0;
  }
}
