// One admission decision, three places that keep the state: the node's own shaper (the local
// path of scheduler/shaper.ts: throttle.ts over control/admission.ts, with the warm-up count it
// keeps beside), the primary of a node's workers (cluster/primary-store.ts, which calls
// control/admission.ts) and a cluster's Redis (the Lua of cluster/scripts.ts, on a real
// redis-server). Random sequences of grants (with or without a new connection), releases of
// held leases, backoff changes (down, up, suspensions) and time passing go through all three;
// every grant must get the same answer: granted or not everywhere, the same reason from the
// primary and Redis (and from the local path, except that the shaper asks the warm-up cap
// first, so a capped server is refused for warm-up there whatever else also holds it), the same
// wait (to the millisecond), the same factor, warm-up count and leases in flight.
// ADMISSION_RUNS sequences (10,000 by default), seeded (ADMISSION_SEED) so a failure replays.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { applyBackoff, type BackoffChange } from '../src/control/admission.js';
import { PrimaryStore } from '../src/cluster/primary-store.js';
import { GRANT, RELEASE } from '../src/cluster/scripts.js';
import { effectiveLimits, newPair, pairAdmits, pairTake, type PairState, type ShapeRule } from '../src/scheduler/throttle.js';
import { stopAll } from './helpers/peers.js';
import { startRedis } from './helpers/redis.js';

after(stopAll);

const RUNS = Number(process.env.ADMISSION_RUNS ?? 10_000);
const SEED = Number(process.env.ADMISSION_SEED ?? 20261204);
const TTL = 1e9; // leases outlive the sequence: only releases end them (the local path has no expiry)

interface Limits { conc: number; rc: number; period: number; burst: number; ci: number; cap: number }
type Op = { t: 'grant'; fresh: boolean } | { t: 'release'; pick: number } | { t: 'backoff'; change: BackoffChange } | { t: 'wait'; ms: number };

const limitsArb = fc.record({
  conc: fc.integer({ min: 0, max: 4 }),
  rc: fc.integer({ min: 0, max: 5 }),
  period: fc.constantFrom(1000, 2000, 60_000),
  burst: fc.integer({ min: 1, max: 3 }),
  ci: fc.constantFrom(0, 0, 50, 200),
  cap: fc.integer({ min: -1, max: 5 }),
});
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('grant' as const), fresh: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('release' as const), pick: fc.nat(7) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('backoff' as const),
      change: fc.oneof(
        fc.record({ factor: fc.constantFrom(0.5, 0.7, 0.25).map((down) => ({ down })) }),
        fc.record({ factor: fc.constantFrom(0.1, 0.05).map((up) => ({ up })) }),
        fc.record({ suspendedUntil: fc.integer({ min: 1, max: 800 }) }),
      ),
    }),
  },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 700 }) }) },
);
const seqArb = fc.record({ limits: limitsArb, ops: fc.array(opArb, { minLength: 4, maxLength: 24 }) });

interface Answer { ok: boolean; kind: string; wait: number; factor: number; sent: number | null; inflight: number | null }

const kindOf = (reason: string) => (reason.startsWith('concurrency') ? 'concurrency' : reason.startsWith('rate') ? 'rate' : reason.startsWith('connection') ? 'connection' : reason.startsWith('warm') ? 'warm-up' : reason.startsWith('suspended') ? 'suspended' : reason);

/** The node's own shaper: warm-up cap first (its count kept beside the pair), then the pair. */
class Local {
  p: PairState = newPair();
  sent = 0;
  constructor(private l: Limits) {}
  private rule(): ShapeRule {
    return { concurrency: this.l.conc || undefined, rate: this.l.rc ? { count: this.l.rc, perMs: this.l.period } : undefined, burst: this.l.burst, connect_rate: this.l.ci ? { count: 1, perMs: this.l.ci } : undefined };
  }
  grant(now: number, fresh: boolean): Answer {
    const base = { factor: this.p.factor, sent: this.l.cap >= 0 ? this.sent : null, inflight: null };
    if (this.l.cap >= 0 && this.sent >= this.l.cap) return { ok: false, kind: 'warm-up', wait: 0, ...base };
    const rule = this.rule();
    const eff = effectiveLimits(rule, this.p.factor, Infinity);
    const v = pairAdmits(this.p, eff, rule.burst, now, fresh);
    if (!v.ok) return { ok: false, kind: kindOf(v.reason), wait: v.at - now, ...base };
    this.p = pairTake(this.p, eff, rule.burst, now, fresh);
    if (this.l.cap >= 0) this.sent++;
    return { ok: true, kind: '', wait: 0, ...base, sent: this.l.cap >= 0 ? this.sent : null };
  }
  release(): void {
    this.p.inflight = Math.max(0, this.p.inflight - 1);
  }
  backoff(c: BackoffChange): void {
    const s = applyBackoff({ tat: 0, ctat: 0, inflight: 0, warmSent: 0, factor: this.p.factor, susp: this.p.suspendedUntil }, c);
    this.p.factor = s.factor;
    this.p.suspendedUntil = s.susp;
  }
}

function grantArgs(l: Limits, now: number, lease: string, fresh: boolean): (string | number)[] {
  return [now, l.conc ? lease : '', TTL, l.conc, l.rc, l.period, l.burst, l.ci, fresh ? 1 : 0, l.cap];
}
function releaseArgs(lease: string, c: BackoffChange | null): (string | number)[] {
  const f = c?.factor;
  return [lease, 0, !f ? '' : 'down' in f ? 'down' : 'up', !f ? 0 : ('down' in f ? f.down : f.up).toFixed(4), c?.suspendedUntil ?? 0];
}
function answerOf(r: unknown[], l: Limits): Answer {
  const [granted, reason, wait, factor, , sent, inflight] = r.map(String);
  return { ok: granted === '1', kind: granted === '1' ? '' : kindOf(reason), wait: Number(wait), factor: Number(factor), sent: l.cap >= 0 && granted === '1' ? Number(sent) : null, inflight: l.conc ? Number(inflight) : null };
}

test(`admission: ${RUNS} random sequences of grants, releases, backoff and warm-up counts decide the same in the shaper, the primary's store and Redis`, async () => {
  const redisPeer = await startRedis();
  const redis = new Redis(redisPeer.url, { enableAutoPipelining: true, lazyConnect: false });
  redis.defineCommand('grant', { numberOfKeys: 3, lua: GRANT });
  redis.defineCommand('release', { numberOfKeys: 3, lua: RELEASE });
  const r = redis as unknown as { grant(...a: (string | number)[]): Promise<unknown[]>; release(...a: (string | number)[]): Promise<unknown> };
  const sequences = fc.sample(seqArb, { numRuns: RUNS, seed: SEED });
  let grants = 0;
  let refusals = 0;
  const kinds = new Set<string>();
  const run = async (seq: { limits: Limits; ops: Op[] }, n: number) => {
    const l = seq.limits;
    const local = new Local(l);
    const primary = new PrimaryStore();
    const keys = [`a:${n}:pair`, `a:${n}:leases`, `a:${n}:warm`];
    const held: string[] = [];
    let now = Date.now(); // the primary expires keys by the real clock
    let leaseNo = 0;
    const where = () => `sequence ${n} (ADMISSION_SEED=${SEED}): ${JSON.stringify(seq)}`;
    for (const [i, op] of seq.ops.entries()) {
      if (op.t === 'wait') now += op.ms;
      else if (op.t === 'grant') {
        const lease = `L${leaseNo++}`;
        const args = grantArgs(l, now, lease, op.fresh);
        const a = local.grant(now, op.fresh);
        const [err, p] = primary.exec([['smtplbgrant', ...keys, ...args]], 0, now)[0];
        assert.equal(err, null);
        const b = answerOf(p as unknown[], l);
        const c = answerOf(await r.grant(...keys, ...args), l);
        const at = `${where()}, op ${i}`;
        assert.deepEqual({ ...b, wait: 0 }, { ...c, wait: 0 }, `primary and Redis differ at ${at}`);
        assert.ok(Math.abs(b.wait - c.wait) <= 1, `wait ${b.wait} vs ${c.wait} at ${at}`);
        assert.equal(a.ok, b.ok, `the shaper ${a.ok ? 'grants' : `refuses (${a.kind})`}, the stores ${b.ok ? 'grant' : `refuse (${b.kind})`} at ${at}`);
        assert.equal(a.factor, b.factor, `factor at ${at}`);
        if (a.ok) assert.equal(a.sent, b.sent, `warm-up count at ${at}`);
        if (!a.ok && a.kind !== 'warm-up') {
          assert.equal(a.kind, b.kind, `reason at ${at}`);
          assert.ok(Math.abs(a.wait - b.wait) <= 1, `wait ${a.wait} vs ${b.wait} at ${at}`);
        }
        if (b.ok) {
          grants++;
          if (l.conc) held.push(lease);
        } else {
          refusals++;
          kinds.add(b.kind);
        }
      } else if (op.t === 'release') {
        if (!held.length) continue;
        const [lease] = held.splice(op.pick % held.length, 1);
        local.release();
        primary.exec([['smtplbrelease', ...keys, ...releaseArgs(lease, null)]], 0, now);
        await r.release(...keys, ...releaseArgs(lease, null));
      } else {
        const c = { ...op.change, ...(op.change.suspendedUntil ? { suspendedUntil: now + op.change.suspendedUntil } : {}) };
        local.backoff(c);
        primary.exec([['smtplbrelease', ...keys, ...releaseArgs('', c)]], 0, now);
        await r.release(...keys, ...releaseArgs('', c));
      }
    }
  };
  try {
    // 32 sequences at a time (each on its own keys): the round trips to Redis overlap.
    let next = 0;
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < sequences.length) {
        const n = next++;
        await run(sequences[n], n);
      }
    }));
  } finally {
    redis.disconnect();
  }
  // The sequences reach every kind of decision (a generator that never refused would prove nothing).
  assert.ok(grants > RUNS && refusals > RUNS / 4, `${grants} grants, ${refusals} refusals`);
  for (const k of ['suspended', 'concurrency', 'rate', 'connection', 'warm-up']) assert.ok(kinds.has(k) || RUNS < 1000, `no refusal for ${k} among ${RUNS} sequences`);
});
