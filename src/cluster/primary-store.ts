// The shared store of one node's worker processes (`workers: N` with mode: smtp listeners):
// the same cluster state a Redis holds for several nodes (leases, rate slots, warm-up counts,
// backoff, suspensions, overrides, drains, heartbeats), kept in the primary process's memory and
// reached over the cluster IPC channel. Each worker is a node of this small cluster, so one
// implementation of the shared limits (src/cluster/cluster.ts) serves workers and nodes alike.
//
// Written by hand because what it needs is tiny and exact: the handful of Redis commands the
// cluster uses and its three scripts (scripts.ts), in JavaScript with the same semantics. An
// in-memory Redis library would bring a Lua VM into the primary for three short scripts.
//
// The primary answers every request on its event loop, so each script is atomic as in Redis.
// Leases are tagged with the worker that took them: a worker that dies gives its leases back at
// once (the primary sees the exit), not at their expiry. Control state (suspensions, overrides,
// drains), backoff and warm-up counts are written to `<spool>/workers-store.json` at most once
// a second and at shutdown, so a restart keeps them; leases are not (a restart ends every
// delivery). The epoch is not restored, so after a restart the workers re-seed the store with
// their own lists and warm-up counts (the path a Redis that lost its data takes).
import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { admit, applyBackoff, rateInterval, type AdmissionState, type PairLimits } from '../control/admission.js';

type Value = { h: Map<string, string> } | { s: string } | { z: Map<string, number> };
export type StoreCommand = [string, ...(string | number)[]];
export type StoreReply = [string | null, unknown];

const num = (v: unknown, dflt = 0): number => {
  const n = Number(v);
  return Number.isFinite(n) ? n : dflt;
};
const fixed = (n: number, digits: number) => n.toFixed(digits);

export class PrimaryStore {
  private data = new Map<string, Value>();
  private expires = new Map<string, number>();
  /** Lease member → [zset, owner]: what to give back when a worker goes away. */
  private owners = new Map<string, [string, number]>();
  private dirty = false;
  private timer?: NodeJS.Timeout;

  constructor(private file?: string) {
    if (file) this.load(file);
  }

  start(): void {
    this.timer = setInterval(() => {
      this.sweep();
      if (this.dirty) this.save();
    }, 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    if (this.dirty) this.save();
  }

  /** A worker exited: its leases go back now. */
  forget(owner: number): void {
    for (const [member, [zset, o]] of this.owners) {
      if (o !== owner) continue;
      this.owners.delete(member);
      const v = this.data.get(zset);
      if (v && 'z' in v) v.z.delete(member);
    }
  }

  /** Run a pipeline of commands for one worker, in order, as one step of the event loop. */
  exec(cmds: StoreCommand[], owner: number, now = Date.now()): StoreReply[] {
    this.owner = owner;
    return cmds.map((c) => {
      try {
        return [null, this.run(c, now)];
      } catch (e) {
        return [(e as Error).message, null];
      }
    });
  }

  private run([name, ...a]: StoreCommand, now: number): unknown {
    const s = a.map(String);
    switch (name.toLowerCase()) {
      case 'hset':
        for (let i = 1; i + 1 < s.length; i += 2) this.hash(s[0], true)!.set(s[i], s[i + 1]);
        // Heartbeats are not kept across a restart: no save for them.
        return s[0].endsWith(':nodes') ? 1 : this.touched(1);
      case 'hsetnx': {
        const h = this.hash(s[0], true)!;
        if (h.has(s[1])) return 0;
        h.set(s[1], s[2]);
        return this.touched(1);
      }
      case 'hget':
        return this.hash(s[0])?.get(s[1]) ?? null;
      case 'hgetall':
        return Object.fromEntries(this.hash(s[0]) ?? []);
      case 'hdel': {
        const h = this.hash(s[0]);
        let n = 0;
        for (const f of s.slice(1)) if (h?.delete(f)) n++;
        return this.touched(n);
      }
      case 'get':
        return this.str(s[0]);
      case 'set': {
        if (s.includes('NX') && this.str(s[0]) !== null) return null;
        this.data.set(s[0], { s: s[1] });
        const ex = s.indexOf('EX');
        if (ex > 0) this.expires.set(s[0], now + num(s[ex + 1]) * 1000);
        else this.expires.delete(s[0]);
        this.touched(1);
        return 'OK';
      }
      case 'zadd':
        this.zset(s[0], true)!.set(s[2], num(s[1]));
        this.owners.set(s[2], [s[0], this.owner]);
        return 1;
      case 'zrem':
        this.owners.delete(s[1]);
        return this.zset(s[0])?.delete(s[1]) ? 1 : 0;
      case 'pexpire':
        if (!this.data.has(s[0])) return 0;
        this.expires.set(s[0], now + num(s[1]));
        return 1;
      case 'smtplbgrant':
        return this.grant(s.slice(0, 3), s.slice(3), now);
      case 'smtplbrelease':
        return this.release(s.slice(0, 3), s.slice(3), now);
      case 'smtplbwarmresync':
        return this.warmResync(s[0], num(s[1]), num(s[2]), now);
      default:
        throw new Error(`unknown command ${name}`);
    }
  }

  private touched<T>(r: T): T {
    this.dirty = true;
    return r;
  }

  private live(key: string, now = Date.now()): Value | undefined {
    const at = this.expires.get(key);
    if (at !== undefined && at <= now) {
      this.data.delete(key);
      this.expires.delete(key);
      return undefined;
    }
    return this.data.get(key);
  }

  private hash(key: string, create = false): Map<string, string> | undefined {
    const v = this.live(key);
    if (v && 'h' in v) return v.h;
    if (!create) return undefined;
    const h = new Map<string, string>();
    this.data.set(key, { h });
    return h;
  }

  private zset(key: string, create = false): Map<string, number> | undefined {
    const v = this.live(key);
    if (v && 'z' in v) return v.z;
    if (!create) return undefined;
    const z = new Map<string, number>();
    this.data.set(key, { z });
    return z;
  }

  private str(key: string): string | null {
    const v = this.live(key);
    return v && 's' in v ? v.s : null;
  }

  /** GRANT of scripts.ts: the pair's state from the store, the decision of control/admission.ts, the state back. */
  private grant([pairKey, zsetKey, warmKey]: string[], a: string[], now: number): string[] {
    const h = this.hash(pairKey);
    const conc = num(a[3]);
    const z = conc > 0 ? this.zset(zsetKey) : undefined;
    if (z && !(num(h?.get('susp')) > now)) {
      for (const [m, score] of z) if (score <= now) {
        z.delete(m);
        this.owners.delete(m);
      }
    }
    const cap = num(a[9], -1);
    const state: AdmissionState = { tat: num(h?.get('tat')), ctat: num(h?.get('ctat')), factor: num(h?.get('factor'), 1) || 1, susp: num(h?.get('susp')), inflight: z?.size ?? 0, warmSent: cap >= 0 ? num(this.str(warmKey)) : 0 };
    const limits: PairLimits = { concurrency: conc, rateCount: num(a[4]), ratePeriod: num(a[5]), burst: num(a[6]), connectInterval: num(a[7]), warmCap: cap };
    const fresh = a[8] === '1';
    const { decision: d, state: next } = admit(state, limits, now, fresh);
    const [fs4, susp, inflight] = [fixed(state.factor, 4), String(state.susp), String(state.inflight)];
    if (!d.ok) {
      if (d.kind === 'suspended') return ['0', 'suspended', String(d.waitMs), fs4, susp, '0', '0'];
      if (d.kind === 'concurrency') return ['0', `concurrency limit ${d.limit} reached (cluster)`, '250', fs4, susp, '0', inflight];
      if (d.kind === 'warm-up') return ['0', 'warm-up', '0', fs4, susp, String(state.warmSent), inflight];
      return ['0', d.kind === 'rate' ? 'rate' : 'connection rate', fixed(d.waitMs, 0), fs4, susp, '0', inflight];
    }
    if (conc > 0) {
      this.zset(zsetKey, true)!.set(a[1], now + num(a[2]));
      this.owners.set(a[1], [zsetKey, this.owner]);
      this.expires.set(zsetKey, now + num(a[2]) * 4);
    }
    const [rated, connecting] = [rateInterval(limits, state.factor) > 0, fresh && limits.connectInterval > 0];
    if (rated) this.hash(pairKey, true)!.set('tat', fixed(next.tat, 3));
    if (connecting) this.hash(pairKey, true)!.set('ctat', fixed(next.ctat, 3));
    if (rated || connecting) this.expires.set(pairKey, now + 86_400_000);
    if (cap >= 0) {
      this.data.set(warmKey, { s: String(next.warmSent) });
      this.expires.set(warmKey, now + 259_200_000);
      this.dirty = true;
    }
    return ['1', '', '0', fs4, susp, String(cap >= 0 ? next.warmSent : 0), String(next.inflight)];
  }

  /** The worker whose request runs now (set by exec). */
  private owner = 0;

  /** RELEASE of scripts.ts. */
  private release([pairKey, zsetKey, warmKey]: string[], a: string[], now: number): number {
    if (a[0] !== '') {
      this.zset(zsetKey)?.delete(a[0]);
      this.owners.delete(a[0]);
    }
    if (a[1] === '1') {
      const v = num(this.str(warmKey));
      if (v > 0) {
        this.data.set(warmKey, { s: String(v - 1) });
        this.dirty = true;
      }
    }
    const h = this.hash(pairKey);
    const before: AdmissionState = { tat: 0, ctat: 0, inflight: 0, warmSent: 0, factor: num(h?.get('factor'), 1) || 1, susp: num(h?.get('susp')) };
    const after = applyBackoff(before, { factor: a[2] === '' ? undefined : a[2] === 'down' ? { down: num(a[3]) } : { up: num(a[3]) }, suspendedUntil: num(a[4]) });
    if (a[2] !== '') this.hash(pairKey, true)!.set('factor', fixed(after.factor, 4));
    if (after.susp !== before.susp) this.hash(pairKey, true)!.set('susp', String(after.susp));
    const changed = a[2] !== '' || after.susp !== before.susp;
    if (changed) {
      this.expires.set(pairKey, now + 86_400_000);
      this.dirty = true;
    }
    return 1;
  }

  /** WARM_RESYNC of scripts.ts. */
  private warmResync(key: string, seen: number, since: number, now: number): number {
    const cur = Math.max(num(this.str(key)), seen) + since;
    this.data.set(key, { s: String(cur) });
    this.expires.set(key, now + 259_200_000);
    this.dirty = true;
    return cur;
  }

  /** Expired keys out, a slice at a time (the store holds one entry per limited pair, not per message). */
  private sweep(now = Date.now()): void {
    let n = 0;
    for (const [k, at] of this.expires) {
      if (++n > 10_000) break;
      if (at <= now) {
        this.data.delete(k);
        this.expires.delete(k);
      }
    }
    // Owners of leases whose set expired with them (nobody renewed or released them).
    for (const [member, [zset]] of this.owners) {
      const v = this.data.get(zset);
      if (!v || !('z' in v) || !v.z.has(member)) this.owners.delete(member);
    }
  }

  private save(): void {
    if (!this.file) return;
    this.dirty = false;
    const out: Record<string, { h?: Record<string, string>; s?: string; at?: number }> = {};
    for (const [k, v] of this.data) {
      // Not kept: leases (a restart ends every delivery), the epoch (see the top), heartbeats,
      // and drains and weights, which the primary owns and pushes to the workers itself.
      if ('z' in v || k.endsWith(':epoch') || k.endsWith(':nodes') || k.endsWith(':servers')) continue;
      out[k] = 'h' in v ? { h: Object.fromEntries(v.h) } : { s: v.s };
      const at = this.expires.get(k);
      if (at !== undefined) out[k].at = at;
    }
    const tmp = `${this.file}.tmp`;
    try {
      const fd = fs.openSync(tmp, 'w');
      try {
        fs.writeSync(fd, JSON.stringify(out));
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, this.file);
    } catch (e) {
      this.dirty = true;
      this.emitter.emit('error', e);
    }
  }

  /** 'error' (a save that failed; retried next second). */
  readonly emitter = new EventEmitter();

  private load(file: string): void {
    let raw: Record<string, { h?: Record<string, string>; s?: string; at?: number }>;
    try {
      raw = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch {
      // None yet, or unreadable: the workers seed the store with what their spools hold.
      return;
    }
    const now = Date.now();
    for (const [k, v] of Object.entries(raw ?? {})) {
      if (!v || typeof v !== 'object' || (v.at !== undefined && v.at <= now)) continue;
      if (v.h && typeof v.h === 'object') this.data.set(k, { h: new Map(Object.entries(v.h).map(([f, x]) => [f, String(x)])) });
      else if (typeof v.s === 'string') this.data.set(k, { s: v.s });
      else continue;
      if (typeof v.at === 'number') this.expires.set(k, v.at);
    }
  }

  static fileIn(spool: string): string {
    return path.join(spool, 'workers-store.json');
  }
}
