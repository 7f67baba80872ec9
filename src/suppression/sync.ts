// The suppression list across a cluster (`cluster:`): each node keeps the whole list in its own
// file (list.ts) and tells the others of each change through a Redis stream; every node reads
// the stream from where it left off (kept in its file) and applies what others changed. An
// address suppressed at one node is refused at the others within a `cluster.sync` or two,
// without a Redis round trip at RCPT; with Redis down each node keeps its list and catches up
// when Redis returns (the stream keeps the last STREAM_MAX changes).
import { newRedis, type Redis } from '../cluster/redis-client.js';
import type { Logger } from 'pino';
import { SuppressionList, type SuppressionChange } from './list.js';

const STREAM_MAX = 1_000_000;
const READ_COUNT = 1000;

export class SuppressionSync {
  private redis: Redis;
  private timer?: NodeJS.Timeout;
  private reading = false;
  private key: string;

  constructor(private list: SuppressionList, cfg: { redis: string; prefix: string; node: string; sync: number; timeout: number }, private log: Logger, private consume: boolean) {
    this.key = `${cfg.prefix}:suppressions`;
    this.redis = newRedis(cfg.redis, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: Math.max(cfg.timeout, 1000), retryStrategy: (t) => Math.min(200 * t, 2000) });
    this.redis.on('error', () => {});
    list.onChange = (c) => this.publish(c, cfg.node);
    if (consume) {
      this.timer = setInterval(() => void this.read(), Math.max(100, cfg.sync));
      this.timer.unref();
    }
  }

  async start(): Promise<void> {
    await this.redis.connect().catch(() => {});
    if (this.consume) await this.read();
  }

  private publish(c: SuppressionChange, node: string): void {
    const op = JSON.stringify({ node, ...c });
    void this.redis.xadd(this.key, 'MAXLEN', '~', String(STREAM_MAX), '*', 'op', op).catch((e: Error) => this.log.warn({ err: e.message }, 'suppression list: a change was not sent to the other nodes (Redis); it holds here'));
  }

  /** Apply what the stream holds past this node's position (bounded per turn). */
  private async read(): Promise<void> {
    if (this.reading || this.redis.status !== 'ready') return;
    this.reading = true;
    try {
      for (let turn = 0; turn < 10; turn++) {
        const from = this.list.meta('stream') ?? '0-0';
        const r = (await this.redis.xread('COUNT', READ_COUNT, 'STREAMS', this.key, from)) as [string, [string, string[]][]][] | null;
        const entries = r?.[0]?.[1] ?? [];
        if (!entries.length) return;
        const changes: unknown[] = [];
        let bad = 0;
        for (const [, fields] of entries) {
          try {
            changes.push(JSON.parse(String(fields[fields.indexOf('op') + 1])));
          } catch {
            bad++;
          }
        }
        bad += this.list.applyRemote(changes, entries[entries.length - 1][0]);
        if (bad) this.log.warn({ skipped: bad, stream: this.key }, `suppression list: ${bad} change(s) from the stream were not what a node writes; skipped`);
        if (entries.length < READ_COUNT) return;
      }
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'suppression list: reading the other nodes\' changes failed; again at the next sync');
    } finally {
      this.reading = false;
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.list.onChange = undefined;
    this.redis.disconnect();
  }
}

/** A process's view of the node's list, following the cluster's changes when there is one (`consume`: this process applies them for the node). */
export function openNodeList(spool: string, cluster: ConstructorParameters<typeof SuppressionSync>[1] | undefined, log: Logger, consume: boolean): { list: SuppressionList; sync?: SuppressionSync; close(): void } {
  const list = new SuppressionList(spool);
  const sync = cluster ? new SuppressionSync(list, cluster, log, consume) : undefined;
  if (sync) void sync.start();
  // Expired entries go in bounded steps (one process per node does it).
  const purge = consume ? setInterval(() => {
    try {
      list.purgeExpired();
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'suppression list: expired entries not removed');
    }
  }, 600_000) : undefined;
  purge?.unref();
  return { list, sync, close: () => (clearInterval(purge), sync?.stop(), list.close()) };
}
