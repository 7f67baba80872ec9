// Mail to smtplb's own addresses (complaint reports, unsubscribe mail) is read whole into
// memory, unlike relayed mail, which goes to the spool as it arrives. One message is capped
// (4 MB); so is what all such messages hold at once on this process (32 MB): past that a
// message is drained, not kept, and answered 452 so its sender tries again later. Without the
// second cap a few hundred slow senders to a public feedback address could hold gigabytes.

/** Bytes held by the local messages being read now, against one limit for the process. */
export class ByteBudget {
  private held = 0;

  constructor(readonly limit: number) {}

  /** Take `n` bytes, or false when that would pass the limit. */
  take(n: number): boolean {
    if (this.held + n > this.limit) return false;
    this.held += n;
    return true;
  }

  give(n: number): void {
    this.held = Math.max(0, this.held - n);
  }

  get inUse(): number {
    return this.held;
  }
}

export const LOCAL_MESSAGE_MAX = 4 * 1024 * 1024;
export const LOCAL_TOTAL_MAX = 32 * 1024 * 1024;

/** The process's budget for local mail. */
export const localBudget = new ByteBudget(LOCAL_TOTAL_MAX);

export type LocalRead = { ok: true; raw: Buffer; release: () => void } | { ok: false; why: 'too-big' | 'busy' };

/**
 * The message, read whole within both caps. The caller calls `release` once done with it. A
 * message over either cap is read to its end (the session stays in step) and dropped.
 */
export async function readLocal(stream: AsyncIterable<Buffer>, budget = localBudget, max = LOCAL_MESSAGE_MAX): Promise<LocalRead> {
  const chunks: Buffer[] = [];
  let size = 0;
  let taken = 0;
  let why: 'too-big' | 'busy' | undefined;
  try {
    for await (const c of stream) {
      size += c.length;
      if (why) continue;
      if (size > max) why = 'too-big';
      else if (!budget.take(c.length)) why = 'busy';
      else {
        taken += c.length;
        chunks.push(c);
        continue;
      }
      chunks.length = 0;
      budget.give(taken);
      taken = 0;
    }
  } catch (e) {
    budget.give(taken);
    throw e;
  }
  if (why) return { ok: false, why };
  let released = false;
  return {
    ok: true,
    raw: Buffer.concat(chunks),
    release: () => {
      if (!released) budget.give(taken);
      released = true;
    },
  };
}
