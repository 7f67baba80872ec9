// Runs smtplb in the foreground: one process, or (workers > 1) a primary with worker
// processes sharing the listening sockets. Signals: SIGHUP reloads, SIGTERM/SIGINT drain.
//
// Cluster layout: the primary owns control (health checks, DNS discovery, admin API) and
// pushes state to the workers, so every worker sees the same health; workers own the data
// path. SCHED_NONE lets the kernel hand out accepted connections: with the default
// round-robin the primary accepts and passes every socket on, which costs more than it
// gains on small machines.
//
// With mode: smtp listeners each worker also owns a shard of the spool (src/spool/shards.ts):
// it accepts, spools, schedules and delivers its own mail. A worker keeps its shard number
// across restarts (a replacement takes the dead one's), shards left without a worker are merged
// into the others before any worker starts, and the workers share limits and operator state
// through a store in the primary (src/cluster/primary-store.ts).
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { installLastResort } from './last-resort.js';
import type { LoadedConfig } from '../config/load.js';
import { Gateway, type ControlMessage, type WorkerStats } from './gateway.js';
import { StartError } from './start-error.js';
import { PrimaryStore } from '../cluster/primary-store.js';
import { IpcStoreClient, type StoreAnswer, type StoreRequest } from '../cluster/ipc-client.js';
import { adoptShards } from '../spool/shards.js';
import { workerCount } from './worker-count.js';
import type { ServerState } from '../control/servers.js';

type WorkerMessage =
  | { t: 'ready'; admin?: number }
  | StoreRequest
  | { t: 'fatal'; message: string }
  | ({ t: 'stats' } & WorkerStats)
  | { t: 'ejected'; pool: string; key: string; ejection: import('../health/state.js').Ejection }
  /** Server drains and weights the first worker read from the cluster's store. */
  | { t: 'cluster-servers'; states: ServerState[] };

/** The gateway of this process, once there is one: the last resort counts into its metrics. */
let current: Gateway | undefined;

export async function runProcess(loaded: LoadedConfig, log: Logger): Promise<void> {
  installLastResort(log, (kind) => current?.metrics.internalErrors.labels(kind).inc());
  const n = workerCount(loaded.config.workers);
  if (cluster.isWorker) return runWorker(loaded, log);
  // Shards left by more workers than this start has are merged before anything delivers.
  if (loaded.config.listeners.some((l) => l.mode === 'smtp')) {
    try {
      adoptShards(loaded.config.spool, n, log);
    } catch (e) {
      throw new StartError(`cannot merge the spool shards of ${loaded.config.spool} left by more workers: ${(e as Error).message}`);
    }
  }
  if (n > 1) return runPrimary(loaded, log, n);
  const gw = (current = new Gateway(loaded, log));
  await gw.start();
  process.on('SIGHUP', () => void gw.reload());
  // logrotate's postrotate: start a new delivery log file at the configured path.
  process.on('SIGUSR1', () => gw.relay?.deliveryLog.reopen());
  const stop = async (sig: string) => {
    log.info(`${sig}: no longer accepting, draining sessions (up to ${gw.config.shutdown_timeout}ms)`);
    await gw.shutdown();
    log.info('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}

async function runPrimary(loaded: LoadedConfig, log: Logger, n: number): Promise<void> {
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  let stopping = false;
  const relays = loaded.config.listeners.some((l) => l.mode === 'smtp');
  // In a Redis cluster as started (a reload cannot change the workers' link to it).
  const clustered = !!loaded.config.cluster;
  // Always there, so a reload that adds the first mode: smtp listener finds it.
  const store = new PrimaryStore(relays ? PrimaryStore.fileIn(loaded.config.spool) : undefined);
  store.emitter.on('error', (e: Error) => log.warn({ err: e.message }, 'workers: shared state not saved (retrying)'));
  store.start();
  const broadcast = (m: ControlMessage, except?: Worker) => {
    for (const w of Object.values(cluster.workers ?? {})) if (w && w !== except && w.isConnected()) w.send(m);
  };
  const gw = (current = new Gateway(loaded, log, {
    role: 'primary',
    onPool: (pool) => pool.on('health', ({ server }) => broadcast({ t: 'health', pool: pool.name, key: server.key, health: server.health })),
    onServers: (pool, specs) => broadcast({ t: 'servers', pool, specs }),
    // A drain or weight change at the primary: every worker applies it; on a cluster the first also writes it to Redis.
    shareServers: { putServer: (state) => broadcast({ t: 'admin', state, share: clustered }) },
  }));
  gw.metrics.aggregateWorkers();
  await gw.start();

  const fork = (shard: number) =>
    new Promise<void>((resolve, reject) => {
      const w = cluster.fork({ SMTPLB_SHARD: String(shard) });
      let ready = false;
      w.on('message', (m: WorkerMessage) => {
        switch (m.t) {
          case 'store':
            if (w.isConnected()) w.send({ t: 'store-reply', id: m.id, res: store.exec(m.cmds, w.id) } satisfies StoreAnswer);
            break;
          case 'ready':
            ready = true;
            if (m.admin) gw.shardAdmin.set(w.id, { shard, port: m.admin });
            for (const c of gw.snapshot()) w.send(c);
            // Changes made at the primary that Redis does not show yet (the first worker was not
            // there to write them): the first worker writes them now.
            if (clustered && shard === 0) for (const state of gw.servers.unconfirmed()) w.send({ t: 'admin', state, share: true });
            resolve();
            break;
          case 'fatal':
            reject(new StartError(m.message));
            break;
          case 'stats':
            gw.workerStats.set(w.id, { servers: m.servers, listeners: m.listeners });
            break;
          case 'cluster-servers':
            // Another node's drain or weight change: the primary's view, then every worker's.
            for (const state of gw.servers.follow(m.states)) broadcast({ t: 'admin', state, share: false });
            break;
          case 'ejected': {
            const pool = gw.pools.get(m.pool);
            const s = pool?.byKey(m.key);
            if (s) s.ejection = m.ejection;
            broadcast({ t: 'eject', pool: m.pool, key: m.key, ejection: m.ejection }, w);
            break;
          }
        }
      });
      w.on('exit', (code, signal) => {
        gw.workerStats.delete(w.id);
        gw.shardAdmin.delete(w.id);
        // Its deliveries ended with it: their concurrency slots are free now, not at lease expiry.
        store.forget(w.id);
        if (!ready) return reject(new StartError(`worker process exited during start (${signal ?? code})`));
        if (stopping) return;
        log.error({ worker: w.id, shard, code, signal }, 'worker process died, starting a new one on its shard of the spool');
        restart(shard, 0);
      });
    });

  // A shard is never left without a worker: a replacement that fails to start is tried again,
  // at growing intervals (up to 30 s), so its mail waits rather than staying stranded.
  const restart = (shard: number, delay: number) => {
    setTimeout(() => {
      if (stopping) return;
      fork(shard).catch((e) => {
        const next = Math.min(30_000, Math.max(1000, delay * 2));
        log.error({ shard, retry_ms: next }, `could not restart the worker of shard ${shard}: ${(e as Error).message}`);
        restart(shard, next);
      });
    }, delay);
  };

  try {
    await Promise.all(Array.from({ length: n }, (_, shard) => fork(shard)));
  } catch (e) {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
    store.stop();
    await gw.shutdown();
    throw e;
  }
  log.info({ workers: n }, `started ${n} worker processes`);

  process.on('SIGHUP', async () => {
    if (await gw.reload()) broadcast({ t: 'reload' });
  });
  // logrotate's postrotate signals the primary: each worker reopens the delivery log it writes.
  process.on('SIGUSR1', () => {
    for (const w of Object.values(cluster.workers ?? {})) if (w && !w.isDead()) w.process.kill('SIGUSR1');
  });
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${sig}: draining ${n} worker processes (up to ${gw.config.shutdown_timeout}ms)`);
    const exits = Object.values(cluster.workers ?? {}).map(
      (w) =>
        new Promise<void>((resolve) => {
          if (!w || w.isDead()) return resolve();
          w.once('exit', () => resolve());
          w.process.kill('SIGTERM');
        }),
    );
    await Promise.all(exits);
    store.stop();
    await gw.shutdown();
    log.info('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}

async function runWorker(loaded: LoadedConfig, log: Logger): Promise<void> {
  const send = (m: WorkerMessage) => {
    if (process.connected) process.send!(m);
  };
  const shard = Number(process.env.SMTPLB_SHARD ?? 0);
  const relays = loaded.config.listeners.some((l) => l.mode === 'smtp');
  const gw = (current = new Gateway(loaded, log.child({ worker: cluster.worker!.id, ...(relays ? { shard } : {}) }), {
    role: 'worker',
    worker: { shard, store: new IpcStoreClient(500) },
    onPool: (pool) => pool.on('ejected', ({ server }) => send({ t: 'ejected', pool: pool.name, key: server.key, ejection: server.ejection })),
    onClusterServers: (states) => send({ t: 'cluster-servers', states }),
  }));
  gw.metrics.serveToPrimary();
  // The primary coordinates reloads and shutdown; a terminal's Ctrl-C reaches the whole
  // process group, so workers wait for the primary's SIGTERM instead.
  process.on('SIGHUP', () => {});
  process.on('SIGINT', () => {});
  process.on('SIGUSR1', () => gw.relay?.deliveryLog.reopen());
  let admin: number | undefined;
  try {
    await gw.start();
    admin = await gw.listenShardAdmin();
  } catch (e) {
    send({ t: 'fatal', message: (e as Error).message });
    process.exit(1);
  }
  process.on('message', (m: ControlMessage | StoreAnswer) => {
    if (m.t !== 'store-reply') gw.applyControl(m);
  });
  send({ t: 'ready', admin });
  setInterval(() => send({ t: 'stats', ...gw.localStats() }), 1000).unref();
  process.once('SIGTERM', async () => {
    await gw.shutdown();
    process.exit(0);
  });
  // Orphaned (primary killed): stop instead of serving with a frozen view of health.
  process.on('disconnect', () => process.exit(0));
}
