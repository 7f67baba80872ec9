// One node's link to the cluster's shared store (Redis): the shared-limits interface the
// shaper asks before each delivery on a limited (server, destination) pair, the leases it
// holds and renews, its heartbeat, and the operator state every node must agree on
// (suspensions, overrides, server drain and weight). When Redis is out of reach or slow the
// node keeps sending on its share of each limit (limit ÷ nodes last seen) and says so; it goes
// back to the shared limits as soon as a sync succeeds again. Nothing waits for Redis longer
// than `timeout`, and no message depends on it: each node keeps its own spool. The workers of
// one node (`workers: N`) are nodes of the same kind, whose store is their primary process.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { newRedis, type Redis } from './redis-client.js';
import type { Logger } from 'pino';
import type { ClusterConfig } from '../config/schema.js';
import type { Rate } from '../config/units.js';
import type { ServerState } from '../control/servers.js';
import type { ControlStore, Override, Suspension } from '../control/types.js';
import { GRANT, RELEASE, WARM_RESYNC } from './scripts.js';
import { liveNodes } from './share.js';
import { ClusterUnavailableError } from './errors.js';
import type { IpcStoreClient } from './ipc-client.js';

export { ClusterUnavailableError };

export interface GrantRequest {
  /** `pool/server|domain`: the pair whose limits are shared. */
  pair: string;
  /** `pool/server` of a warming server, with today's day number; null without a cap today. */
  warm: { key: string; day: number; cap: number } | null;
  concurrency: number | undefined;
  rate: Rate | undefined;
  burst: number;
  /** Milliseconds between new connections (connect_rate), 0 for none. */
  connectInterval: number;
  newConnection: boolean;
  now: number;
}

/** A pair's backoff as one delivery changed it: the factor's change (a cut to a value, or a climb by an amount) and its suspension. */
export interface Backoff {
  factor: { down: number } | { up: number } | null;
  suspendedUntil: number;
}

export type GrantKind = 'suspended' | 'concurrency' | 'rate' | 'connection' | 'warm-up';

export type GrantReply =
  | { ok: true; lease: string | null; factor: number; suspendedUntil: number; warmSent: number | null }
  | { ok: false; kind: GrantKind; reason: string; waitMs: number; factor: number; suspendedUntil: number; warmSent: number | null }
  /** The store did not answer in time: the node is on its local share from now on. */
  | { ok: 'unavailable' };

/**
 * Limits shared by every node of a cluster (and, for `workers: N`, every worker of a node):
 * the interface the shaper talks to. The shaper's own per-process state is the in-process
 * side; this is the shared one, backed by Redis (nodes) or by the primary process (the workers
 * of one node, src/cluster/primary-store.ts).
 */
export interface SharedLimits {
  /** The store answers: grants come from it. False: each node applies its share locally. */
  readonly shared: boolean;
  /** Nodes to divide a limit by while not shared (the live nodes last seen, at least 1). */
  readonly nodes: number;
  grant(req: GrantRequest): Promise<GrantReply>;
  /** A granted delivery ended: its lease back, its warm-up slot back when nothing was delivered, the pair's backoff as it now stands. */
  release(pair: string, lease: string | null, warm: { key: string; day: number } | null, giveBackWarm: boolean, backoff: Backoff | null): void;
  /** After an outage: the shared warm-up count, given what this node saw last and sent since. */
  resyncWarm(key: string, day: number, seen: number, since: number): Promise<number | null>;
}

export interface NodeBeat {
  node: string;
  at: number;
  pid: number;
  /** Recipients queued on this node. */
  queue: number;
  /** Deliveries per second over the last ten seconds. */
  rate: number;
  /** Servers this node finds down (`pool/server`). */
  down: string[];
  shared: boolean;
}

export type { ServerState };

export interface ControlLists {
  suspensions: Suspension[];
  overrides: Override[];
  servers: ServerState[];
}


/** What the node's side of the cluster needs from the rest of the process. */
export interface ClusterHost {
  beat(): Omit<NodeBeat, 'node' | 'at' | 'pid' | 'shared'>;
  /** The node's own lists, pushed when the store has none (first start, or Redis lost its data). */
  lists(): ControlLists;
}

const parse = <T>(v: string): T | undefined => {
  try {
    return JSON.parse(v) as T;
  } catch {
    return undefined;
  }
};

/** A suspension or override as a node writes it: anything else in the store is skipped, not followed. */
function control(x: Partial<Suspension> | undefined): boolean {
  return !!x && typeof x.id === 'string' && typeof x.pool === 'string' && typeof x.destination === 'string' && typeof x.until === 'number' && typeof x.reason === 'string' && typeof x.who === 'string';
}

export class Cluster extends EventEmitter implements SharedLimits, ControlStore {
  private redis: Redis;
  private state: { shared: boolean; since: number; error: string | null } = { shared: false, since: Date.now(), error: 'not connected yet' };
  private beats: NodeBeat[] = [];
  private liveCount = 1;
  /** Servers (`pool/server`) that another live node finds down. */
  downElsewhere = new Set<string>();
  private held = new Map<string, string>();
  private orphans: [string, string][] = [];
  private timers: NodeJS.Timeout[] = [];
  private syncing = false;
  private stopped = false;
  private lists: ControlLists = { suspensions: [], overrides: [], servers: [] };
  private listsKey = '';
  readonly counters = { grants: 0, refused: 0, releases: 0, errors: 0, syncs: 0 };

  /**
   * `seenFile` keeps the count of nodes last seen alive (beside the spool), so a node that
   * starts while Redis is away divides its limits by it too.
   */
  /** What holds the shared state, for logs and errors: Redis, or the primary process of `workers: N`. */
  private readonly storeName: string;
  /** The store is a cluster's Redis (false: the primary of this node's workers, over IPC). */
  readonly acrossNodes: boolean;

  /**
   * `store`: the primary's store for the workers of one node (IPC), instead of Redis. It
   * implements the part of ioredis's interface used here.
   */
  constructor(readonly cfg: ClusterConfig, private host: ClusterHost, private log: Logger, private seenFile?: string, store?: IpcStoreClient) {
    super();
    this.storeName = store ? 'the primary process' : 'Redis';
    this.acrossNodes = !store;
    if (seenFile) {
      try {
        this.liveCount = Math.max(1, Math.floor(Number(fs.readFileSync(seenFile, 'utf8'))) || 1);
      } catch {
        // Never written: one node until Redis says otherwise.
      }
    }
    this.redis = store ? (store as unknown as Redis) : newRedis(cfg.redis, {
      lazyConnect: true,
      // Fail at once while disconnected: a grant must not wait for a reconnect.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: cfg.timeout,
      connectTimeout: Math.max(1000, cfg.timeout),
      retryStrategy: (times) => Math.min(200 * times, 1000),
    });
    // ioredis reports each failed reconnect; the sync loop says what it means once.
    this.redis.on('error', () => {});
    this.redis.defineCommand('smtplbGrant', { numberOfKeys: 3, lua: GRANT });
    this.redis.defineCommand('smtplbRelease', { numberOfKeys: 3, lua: RELEASE });
    this.redis.defineCommand('smtplbWarmResync', { numberOfKeys: 1, lua: WARM_RESYNC });
  }

  private k(...parts: string[]): string {
    return [this.cfg.prefix, ...parts].join(':');
  }

  get shared(): boolean {
    return this.state.shared;
  }

  get nodes(): number {
    return this.liveCount;
  }

  get node(): string {
    return this.cfg.node;
  }

  /** Connect and sync once (bounded by the timeout), then keep syncing. */
  async start(): Promise<void> {
    await this.redis.connect().catch(() => {});
    await this.sync();
    // A new cluster's first sync seeds the store; the second reads it back.
    if (!this.state.shared && this.redis.status === 'ready') await this.sync();
    this.timers.push(setInterval(() => void this.sync(), this.cfg.sync));
    this.timers.push(setInterval(() => void this.renew(), Math.max(100, Math.floor(this.cfg.lease_ttl / 3))));
    for (const t of this.timers) t.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    // Leases given back now, not at their expiry: the other nodes get the capacity at once.
    if (this.state.shared && this.held.size) {
      const p = this.redis.pipeline();
      for (const [lease, zset] of this.held) p.zrem(zset, lease);
      await p.exec().catch(() => {});
    }
    this.redis.disconnect();
  }

  private lost(e: unknown): void {
    this.counters.errors++;
    const error = (e as Error)?.message ?? String(e);
    if (!this.state.shared) {
      this.state.error = error;
      return;
    }
    this.state = { shared: false, since: Date.now(), error };
    this.log.warn({ redis: redact(this.cfg.redis), err: error, nodes: this.liveCount }, `cluster: ${this.storeName} unreachable; limits now applied locally at this node's share (1/${this.liveCount})`);
    this.tell('local');
  }

  /** A listener's fault is logged, not taken for Redis going away. */
  private tell(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (e) {
      this.log.error({ err: e, event }, 'cluster: handling a cluster event failed');
    }
  }

  private regained(): void {
    if (this.state.shared) return;
    const was = this.state.error;
    this.state = { shared: true, since: Date.now(), error: null };
    if (was === 'not connected yet') this.log.info({ redis: redact(this.cfg.redis), node: this.cfg.node, nodes: this.liveCount }, `cluster: joined; limits shared through ${this.storeName}`);
    else this.log.warn({ redis: redact(this.cfg.redis) }, `cluster: ${this.storeName} reachable again; limits shared across the cluster again`);
    this.tell('shared');
  }

  /** Heartbeat out; nodes, suspensions, overrides and server states in: one round trip. */
  private async sync(): Promise<void> {
    if (this.syncing || this.stopped) return;
    this.syncing = true;
    try {
      const now = Date.now();
      const beat: NodeBeat = { ...this.host.beat(), node: this.cfg.node, at: now, pid: process.pid, shared: this.state.shared };
      const res = await this.redis
        .pipeline()
        .hset(this.k('nodes'), this.cfg.node, JSON.stringify(beat))
        .get(this.k('epoch'))
        .hgetall(this.k('nodes'))
        .hgetall(this.k('susp'))
        .hgetall(this.k('over'))
        .hgetall(this.k('servers'))
        .exec();
      const err = res?.find(([e]) => e)?.[0];
      if (!res || err) throw err ?? new Error('no reply');
      this.counters.syncs++;
      const [, [, epoch], [, nodes], [, susp], [, over], [, servers]] = res as [unknown, [unknown, string | null], [unknown, Record<string, string>], [unknown, Record<string, string>], [unknown, Record<string, string>], [unknown, Record<string, string>]];
      if (epoch === null) {
        await this.seed();
        return;
      }
      this.beats = Object.values(nodes)
        .map((v) => parse<NodeBeat>(v))
        .filter((b): b is NodeBeat => !!b && typeof b.node === 'string' && typeof b.at === 'number' && Array.isArray(b.down));
      const live = liveNodes(this.beats, now, this.staleMs);
      if (Math.max(1, live.length) !== this.liveCount && this.seenFile) void fs.promises.writeFile(this.seenFile, String(Math.max(1, live.length))).catch(() => {});
      this.liveCount = Math.max(1, live.length);
      const down = new Set(live.filter((b) => b.node !== this.cfg.node).flatMap((b) => (Array.isArray(b.down) ? b.down : [])));
      const added = [...down].filter((x) => !this.downElsewhere.has(x));
      this.downElsewhere = down;
      if (added.length) this.tell('peer-down', added);
      this.regained();
      if (this.orphans.length) {
        const drop = this.redis.pipeline();
        for (const [zset, lease] of this.orphans.splice(0)) drop.zrem(zset, lease);
        await drop.exec();
      }
      this.applyLists({
        suspensions: Object.values(susp).map((v) => parse<Suspension>(v)).filter((s): s is Suspension => control(s)),
        overrides: Object.values(over).map((v) => parse<Override>(v)).filter((o): o is Override => !!o && control(o) && (o.rate === null || typeof o.rate === 'string') && (o.concurrency === null || typeof o.concurrency === 'number')),
        servers: Object.values(servers).map((v) => parse<ServerState>(v)).filter((s): s is ServerState => !!s && typeof s.pool === 'string' && typeof s.server === 'string' && ['ready', 'drain', 'disabled'].includes(s.admin) && (s.weight === null || typeof s.weight === 'number')),
      });
      // Heartbeats of nodes gone for a day are litter.
      const gone = this.beats.filter((b) => now - b.at > 86_400_000).map((b) => b.node);
      if (gone.length) await this.redis.hdel(this.k('nodes'), ...gone).catch(() => {});
    } catch (e) {
      this.lost(e);
    } finally {
      this.syncing = false;
    }
  }

  /**
   * The store has no epoch: a new cluster, or a Redis that restarted without its data. The
   * node's own lists go in (what it knows beats nothing), then the epoch marks it done.
   */
  private async seed(): Promise<void> {
    const mine = this.host.lists();
    const p = this.redis.pipeline();
    for (const s of mine.suspensions) p.hsetnx(this.k('susp'), s.id, JSON.stringify(s));
    for (const o of mine.overrides) p.hsetnx(this.k('over'), o.id, JSON.stringify(o));
    for (const s of mine.servers) p.hsetnx(this.k('servers'), `${s.pool}/${s.server}`, JSON.stringify(s));
    p.set(this.k('epoch'), String(Date.now()), 'NX');
    await p.exec();
    // Leases and warm-up counts went with the old data: this node's go back in now.
    this.tell('reseeded');
    await this.renew();
    this.log.info({ suspensions: mine.suspensions.length, overrides: mine.overrides.length, servers: mine.servers.length }, `cluster: ${this.storeName} had no cluster state; this node seeded it with its own`);
  }

  private applyLists(next: ControlLists): void {
    const key = JSON.stringify([next.suspensions.map((s) => s.id).sort(), next.overrides.map((o) => o.id).sort(), next.servers.map((s) => `${s.pool}/${s.server}:${s.admin}:${s.weight}:${s.at}`).sort()]);
    if (key === this.listsKey) return;
    const before = this.lists;
    this.lists = next;
    this.listsKey = key;
    const lifted = before.suspensions.some((s) => !next.suspensions.find((x) => x.id === s.id)) || before.overrides.some((o) => !next.overrides.find((x) => x.id === o.id));
    this.tell('control', next, lifted);
  }

  /** Keep this node's leases alive; a node that stops renewing loses them at their expiry. */
  private async renew(): Promise<void> {
    if (!this.state.shared || this.held.size === 0 || this.stopped) return;
    const until = Date.now() + this.cfg.lease_ttl;
    const p = this.redis.pipeline();
    // Not XX: a lease Redis lost (it restarted, or this node was too slow to renew) belongs to
    // a delivery still running, so it counts again. A release sent after this on the same
    // connection still removes it.
    for (const [lease, zset] of this.held) p.zadd(zset, until, lease);
    for (const zset of new Set(this.held.values())) p.pexpire(zset, this.cfg.lease_ttl * 4);
    await p.exec().catch((e) => this.lost(e));
  }

  async grant(req: GrantRequest): Promise<GrantReply> {
    const lease = req.concurrency ? randomBytes(6).toString('hex') : null;
    const zset = this.k('leases', req.pair);
    try {
      const r = (await (this.redis as unknown as { smtplbGrant(...a: (string | number)[]): Promise<string[] | number[]> }).smtplbGrant(
        this.k('pair', req.pair),
        zset,
        this.k('warm', req.warm?.key ?? req.pair, String(req.warm?.day ?? 0)),
        req.now,
        lease ?? '',
        this.cfg.lease_ttl,
        req.concurrency ?? 0,
        req.rate?.count ?? 0,
        req.rate?.perMs ?? 0,
        req.burst,
        req.connectInterval,
        req.newConnection ? 1 : 0,
        req.warm ? req.warm.cap : -1,
      )).map(String);
      const [granted, reason, wait, factor, susp, sent] = r;
      const common = { factor: Number(factor), suspendedUntil: Number(susp), warmSent: req.warm ? Number(sent) : null };
      if (granted === '1') {
        this.counters.grants++;
        if (lease) this.held.set(lease, zset);
        return { ok: true, lease, ...common };
      }
      this.counters.refused++;
      const kind = (reason.startsWith('concurrency') ? 'concurrency' : reason) as GrantKind;
      return { ok: false, kind, reason, waitMs: Number(wait), ...common };
    } catch (e) {
      // The script may still have run after the client gave up: its lease is removed later.
      if (lease) this.orphan(zset, lease);
      this.lost(e);
      return { ok: 'unavailable' };
    }
  }

  release(pair: string, lease: string | null, warm: { key: string; day: number } | null, giveBackWarm: boolean, backoff: Backoff | null): void {
    if (this.stopped) return;
    if (lease) this.held.delete(lease);
    if (!lease && !giveBackWarm && !backoff) return;
    // Not shared: the lease is removed at the next successful sync (it may be in Redis from
    // before); a warm-up slot stays counted (the safe side).
    if (!this.state.shared) {
      if (lease) this.orphan(this.k('leases', pair), lease);
      return;
    }
    this.counters.releases++;
    const f = backoff?.factor;
    void (this.redis as unknown as { smtplbRelease(...a: (string | number)[]): Promise<unknown> })
      .smtplbRelease(
        this.k('pair', pair),
        this.k('leases', pair),
        this.k('warm', warm?.key ?? pair, String(warm?.day ?? 0)),
        lease ?? '',
        giveBackWarm ? 1 : 0,
        !f ? '' : 'down' in f ? 'down' : 'up',
        !f ? 0 : 'down' in f ? f.down.toFixed(4) : f.up.toFixed(4),
        backoff ? backoff.suspendedUntil : 0,
      )
      .catch((e) => {
        if (lease) this.orphan(this.k('leases', pair), lease);
        this.lost(e);
      });
  }

  /** A lease Redis may hold that nobody renews or gives back any more: removed at the next successful sync. */
  private orphan(zset: string, lease: string): void {
    this.orphans.push([zset, lease]);
    if (this.orphans.length > 10_000) this.orphans.shift();
  }

  /** Deliveries that started on the local share, now counted in the store (no check: they are running). */
  adopt(leases: [string, string][]): void {
    if (!leases.length || !this.state.shared) return;
    const until = Date.now() + this.cfg.lease_ttl;
    const p = this.redis.pipeline();
    for (const [pair, lease] of leases) {
      const zset = this.k('leases', pair);
      this.held.set(lease, zset);
      p.zadd(zset, until, lease);
      p.pexpire(zset, this.cfg.lease_ttl * 4);
    }
    void p.exec().catch((e) => this.lost(e));
  }

  async resyncWarm(key: string, day: number, seen: number, since: number): Promise<number | null> {
    try {
      const n = await (this.redis as unknown as { smtplbWarmResync(...a: (string | number)[]): Promise<number> }).smtplbWarmResync(this.k('warm', key, String(day)), seen, since);
      return Number(n);
    } catch (e) {
      this.lost(e);
      return null;
    }
  }

  /** Operator state for every node. Throws ClusterUnavailableError when Redis cannot take it now. */
  private async put(hash: string, field: string, value: unknown | null): Promise<void> {
    if (!this.state.shared) throw new ClusterUnavailableError(`the cluster store (${this.storeName}) is unreachable: ${this.state.error ?? ''}`.trim());
    try {
      if (value === null) await this.redis.hdel(this.k(hash), field);
      else await this.redis.hset(this.k(hash), field, JSON.stringify(value));
    } catch (e) {
      this.lost(e);
      throw new ClusterUnavailableError(`the cluster store (${this.storeName}) did not take the change: ${(e as Error).message}`);
    }
    // Seen by this node at once, by the others at their next sync.
    void this.sync();
  }

  putSuspension(s: Suspension): Promise<void> {
    return this.put('susp', s.id, s);
  }

  removeSuspension(id: string): Promise<void> {
    return this.put('susp', id, null);
  }

  putOverride(o: Override): Promise<void> {
    return this.put('over', o.id, o);
  }

  removeOverride(id: string): Promise<void> {
    return this.put('over', id, null);
  }

  /** A drain, enable or weight change at this node: every node follows (best effort). */
  putServer(s: ServerState): void {
    void this.put('servers', `${s.pool}/${s.server}`, s).catch((e) => this.log.warn({ err: (e as Error).message }, `cluster: server state not shared (${this.storeName} unreachable); applied on this node only`));
  }

  control(): ControlLists {
    return this.lists;
  }

  /** A node not heard from for this long is not counted as live. */
  private get staleMs(): number {
    return Math.max(2000, this.cfg.sync * 4);
  }

  status(now = Date.now()) {
    const stale = this.staleMs;
    return {
      node: this.cfg.node,
      redis: redact(this.cfg.redis),
      state: this.state.shared ? 'shared' : 'local share',
      since: new Date(this.state.since).toISOString(),
      error: this.state.error,
      nodes_live: this.liveCount,
      lease_ttl_ms: this.cfg.lease_ttl,
      leases_held: this.held.size,
      nodes: this.beats
        .map((b) => ({ node: b.node, last_heartbeat: new Date(b.at).toISOString(), age_ms: Math.max(0, now - b.at), live: now - b.at <= stale, queue: b.queue, delivery_rate: b.rate, down: b.down, shared: b.shared }))
        .sort((a, b) => a.node.localeCompare(b.node)),
    };
  }
}

/** A Redis URL without its password, for logs and status. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
