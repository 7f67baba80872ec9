// Balancer decisions as pure functions over plain data: given the candidate servers (already
// filtered to those allowed to take a new connection) pick one. No sockets, no clocks, no
// Math.random inside: callers pass the randomness in, so tests are exact.

export type Algorithm = 'roundrobin' | 'leastconn' | 'first' | 'random2' | 'source';

export interface Candidate {
  /** Effective weight right now (slow start applied). > 0. */
  weight: number;
  /** Connections in use on this server. */
  active: number;
  /** Smooth weighted round-robin accumulator. */
  current: number;
  /** Stable identity, for hashing. */
  key: string;
}

/**
 * Smooth weighted round-robin (as nginx): every candidate's accumulator grows by its weight,
 * the largest wins and pays back the total. Weights 5:1:1 give a,a,b,a,c,a,a — interleaved,
 * never bursts. Returns the pick and the new accumulators.
 */
export function smoothWeighted(cands: readonly Candidate[]): { pick: number; currents: number[] } {
  let total = 0;
  let best = 0;
  const currents = new Array<number>(cands.length);
  for (let i = 0; i < cands.length; i++) {
    currents[i] = cands[i].current + cands[i].weight;
    total += cands[i].weight;
    if (currents[i] > currents[best]) best = i;
  }
  currents[best] -= total;
  return { pick: best, currents };
}

/** Fewest connections per unit of weight; ties go to the first at or after `offset`. */
export function leastConn(cands: readonly Candidate[], offset = 0): number {
  let best = -1;
  let bestLoad = Infinity;
  for (let n = 0; n < cands.length; n++) {
    const i = (offset + n) % cands.length;
    const load = (cands[i].active + 1) / cands[i].weight;
    if (load < bestLoad) {
      best = i;
      bestLoad = load;
    }
  }
  return best;
}

/** The first candidate in configuration order (callers keep the list in that order). */
export function first(cands: readonly Candidate[]): number {
  return cands.length ? 0 : -1;
}

/**
 * Power of two choices: two candidates drawn at random (r1, r2 in [0,1)), the less loaded wins.
 * Nearly as good as leastconn, without herding when several balancers share servers.
 */
export function random2(cands: readonly Candidate[], r1: number, r2: number): number {
  if (cands.length === 0) return -1;
  if (cands.length === 1) return 0;
  const a = Math.floor(r1 * cands.length);
  let b = Math.floor(r2 * (cands.length - 1));
  if (b >= a) b++;
  const load = (c: Candidate) => (c.active + 1) / c.weight;
  return load(cands[b]) < load(cands[a]) ? b : a;
}

/** 32-bit FNV-1a: small, fast, well spread for short keys such as IP addresses. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Client-address affinity by weighted rendezvous hashing: each (client, server) pair gets a
 * score and the best wins. When a server leaves, only its clients move; the others stay put.
 */
export function sourceHash(cands: readonly Candidate[], source: string): number {
  let best = -1;
  let bestScore = -Infinity;
  for (let i = 0; i < cands.length; i++) {
    const h = fnv1a(`${source}|${cands[i].key}`);
    const u = (h + 0.5) / 4294967296; // (0,1)
    const score = -cands[i].weight / Math.log(u);
    if (score > bestScore) {
      best = i;
      bestScore = score;
    }
  }
  return best;
}

export interface PickContext {
  /** Client address for `source`. */
  source?: string;
  /** Random numbers in [0,1) for `random2`. */
  r1?: number;
  r2?: number;
  /** Rotation for tie-breaking in `leastconn`. */
  offset?: number;
}

/** Dispatch on the algorithm. Returns the index into `cands` and new WRR accumulators if changed. */
export function pick(algorithm: Algorithm, cands: readonly Candidate[], ctx: PickContext = {}): { pick: number; currents?: number[] } {
  if (cands.length === 0) return { pick: -1 };
  switch (algorithm) {
    case 'roundrobin':
      return smoothWeighted(cands);
    case 'leastconn':
      return { pick: leastConn(cands, ctx.offset ?? 0) };
    case 'first':
      return { pick: first(cands) };
    case 'random2':
      return { pick: random2(cands, ctx.r1 ?? 0, ctx.r2 ?? 0.5) };
    case 'source':
      return { pick: sourceHash(cands, ctx.source ?? '') };
  }
}
