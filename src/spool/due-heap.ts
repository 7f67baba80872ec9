// Which destination is due next, without looking at every destination: a binary min-heap of
// (time, destination key). Entries are never updated in place; a destination whose time
// changes gets a new entry and the old one is dropped when it surfaces (the caller says which
// entries still stand). Written here because it is twenty lines and no dependency does just
// this; Node has no priority queue.

export interface DueEntry { at: number; key: string }

export class DueHeap {
  private h: DueEntry[] = [];

  get size(): number {
    return this.h.length;
  }

  push(at: number, key: string): void {
    const h = this.h;
    h.push({ at, key });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p].at <= h[i].at) break;
      [h[p], h[i]] = [h[i], h[p]];
      i = p;
    }
  }

  peek(): DueEntry | undefined {
    return this.h[0];
  }

  pop(): DueEntry | undefined {
    const h = this.h;
    const top = h[0];
    const last = h.pop();
    if (h.length && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l].at < h[m].at) m = l;
        if (r < h.length && h[r].at < h[m].at) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i], h[m]];
        i = m;
      }
    }
    return top;
  }

  clear(): void {
    this.h = [];
  }
}
