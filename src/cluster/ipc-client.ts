// A worker's client of its primary's store (primary-store.ts): the part of ioredis's interface
// the cluster uses (pipelines of a few commands, the three scripts, connect/disconnect), sent
// over the cluster IPC channel. Like the Redis client it gives up after `timeout`, so a busy or
// gone primary puts the worker on its share of each limit rather than making it wait.
import { EventEmitter } from 'node:events';
import type { StoreCommand, StoreReply } from './primary-store.js';

export interface StoreRequest { t: 'store'; id: number; cmds: StoreCommand[] }
export interface StoreAnswer { t: 'store-reply'; id: number; res: StoreReply[] }

const COMMANDS = ['hset', 'hsetnx', 'hget', 'hgetall', 'hdel', 'get', 'set', 'zadd', 'zrem', 'pexpire'] as const;

type Pipeline = { [K in (typeof COMMANDS)[number]]: (...a: (string | number)[]) => Pipeline } & { exec(): Promise<StoreReply[]> };

export class IpcStoreClient extends EventEmitter {
  status: 'wait' | 'ready' | 'end' = 'wait';
  private seq = 0;
  private waiting = new Map<number, { resolve: (r: StoreReply[]) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private onMessage = (m: StoreAnswer) => {
    if (m?.t !== 'store-reply') return;
    const w = this.waiting.get(m.id);
    if (!w) return;
    this.waiting.delete(m.id);
    clearTimeout(w.timer);
    w.resolve(m.res);
  };

  constructor(private timeout: number) {
    super();
    for (const c of COMMANDS) (this as unknown as Record<string, unknown>)[c] = (...a: (string | number)[]) => this.one([c, ...a]);
  }

  async connect(): Promise<void> {
    if (!process.send || !process.connected) throw new Error('no primary process to share limits with');
    process.on('message', this.onMessage);
    this.status = 'ready';
  }

  disconnect(): void {
    this.status = 'end';
    process.off('message', this.onMessage);
    for (const [id, w] of this.waiting) {
      clearTimeout(w.timer);
      w.reject(new Error('disconnected'));
      this.waiting.delete(id);
    }
  }

  /** Scripts run in the primary under the same names: the Lua text is Redis's, not needed here. */
  defineCommand(name: string, _def: { numberOfKeys: number; lua: string }): void {
    (this as unknown as Record<string, unknown>)[name] = (...a: (string | number)[]) => this.one([name, ...a]);
  }

  pipeline(): Pipeline {
    const cmds: StoreCommand[] = [];
    const p = { exec: () => this.send(cmds) } as Pipeline;
    for (const c of COMMANDS) p[c] = (...a) => (cmds.push([c, ...a]), p);
    return p;
  }

  private async one(cmd: StoreCommand): Promise<unknown> {
    const [[err, v]] = await this.send([cmd]);
    if (err) throw new Error(err);
    return v;
  }

  private send(cmds: StoreCommand[]): Promise<StoreReply[]> {
    return new Promise((resolve, reject) => {
      if (this.status !== 'ready' || !process.connected) return reject(new Error('the primary process is not reachable'));
      const id = ++this.seq;
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`the primary process did not answer within ${this.timeout}ms`));
      }, this.timeout);
      this.waiting.set(id, { resolve, reject, timer });
      process.send!({ t: 'store', id, cmds } satisfies StoreRequest, undefined, undefined, (e: Error | null) => {
        if (!e) return;
        const w = this.waiting.get(id);
        if (!w) return;
        this.waiting.delete(id);
        clearTimeout(w.timer);
        reject(e);
      });
    });
  }
}
