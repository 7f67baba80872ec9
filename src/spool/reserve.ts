// The disk reserve (spool.ts, invariant 5): RESERVE bytes kept aside in a file on the spool's
// disk, given up when the disk is full and an outcome must still be recorded, and made again
// once there is room. New mail is refused (452) while it is given up.
import fs from 'node:fs';
import path from 'node:path';

/** Room kept aside for recording outcomes when the disk fills. */
export const RESERVE = 1024 * 1024;

export class Reserve {
  private file: string;
  private reserved = false;

  constructor(private dir: string, private onReleased: () => void) {
    this.file = path.join(dir, 'reserve');
  }

  /** Keep RESERVE bytes aside on the spool's disk; quietly not when there is no room. */
  make(): void {
    try {
      if (fs.statSync(this.file, { throwIfNoEntry: false })?.size === RESERVE) {
        this.reserved = true;
        return;
      }
      const st = fs.statfsSync(this.dir);
      if (st.bavail * st.bsize < 2 * RESERVE) return; // not yet: the room is needed more elsewhere
      const fd = fs.openSync(this.file, 'w', 0o600);
      try {
        fs.writeSync(fd, Buffer.alloc(RESERVE));
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      this.reserved = true;
    } catch {
      fs.rmSync(this.file, { force: true });
    }
  }

  /** Give the reserve up (the disk is full and an outcome must be recorded); true if there was one. */
  release(): boolean {
    if (!this.reserved) return false;
    this.reserved = false;
    fs.rmSync(this.file, { force: true });
    this.onReleased();
    return true;
  }

  get held(): boolean {
    return this.reserved;
  }
}
