// One smtplb process: builds pools, health checks, discovery, listeners and the admin API from
// a config, and applies reloads without dropping established sessions.
import type { GatewayStatus } from '../admin/api-types.js';
import type { Logger } from 'pino';
import { AdminServer } from '../admin/server.js';
import { Metrics } from '../admin/metrics.js';
import { Pool, PoolSet, specsFromConfig, type ServerSpec } from '../balancing/pool.js';
import { configWarnings, loadConfig, locateKey, type LoadedConfig } from '../config/load.js';
import type { Config, ListenerConfig } from '../config/schema.js';
import { formatAddress } from '../config/units.js';
import { DnsDiscovery } from '../discovery/dns.js';
import { HealthMonitor, logHealthChanges } from '../health/monitor.js';
import type { Ejection, HealthState } from '../health/state.js';
import { TcpProxyListener } from '../listeners/tcp-proxy.js';
import { nativeRelayUnavailable } from '../listeners/native-relay.js';
import { SmtpListener } from '../listeners/smtp-listener.js';
import { verifyPassword } from '../policy/password.js';
import { loadKeys, type DkimKey } from '../signing/dkim.js';
import { Relay } from './relay.js';
import { StartError } from './start-error.js';
import type { SuppressionList } from '../suppression/list.js';
import { openNodeList } from '../suppression/sync.js';
import { describeListenError } from '../listeners/listen-error.js';
import { IdentityMonitor } from '../identity/monitor.js';
import { HistorySampler } from '../admin/history.js';
import { poolsStatus, type WorkerStats } from './pool-status.js';
import type { IpcStoreClient } from '../cluster/ipc-client.js';
import { ServerControl, describeAction, type ServerAction, type ServerShare, type ServerState } from '../control/servers.js';

/** What the gateway needs from any listener, whatever its mode. */
interface Listener {
  cfg: ListenerConfig;
  readonly connections: number;
  listen(): Promise<void>;
  update(cfg: ListenerConfig, hostname?: string): void;
  /** Build what `cfg` needs (TLS context…) without applying it; throws when it cannot be built; the result applies it. */
  stage?(cfg: ListenerConfig, hostname?: string): () => void;
  close(): Promise<void>;
  destroyAll(): void;
}

export type Role = 'single' | 'primary' | 'worker';

export interface GatewayOptions {
  role?: Role;
  /** Called when a discovery result changes a pool's servers (the cluster primary forwards it). */
  onServers?: (pool: string, specs: ServerSpec[]) => void;
  /** The primary of `workers: N`: where a drain or weight change made at it goes (its workers, over IPC). */
  shareServers?: ServerShare;
  /** A worker: server states it read from the cluster's store (shard 0 passes them to its primary). */
  onClusterServers?: (states: ServerState[]) => void;
  /** Called for every pool this gateway creates (at start and on reload). */
  onPool?: (pool: Pool) => void;
  /** A worker of `workers: N`: its shard of the spool, and its primary's store of shared limits. */
  worker?: { shard: number; store?: IpcStoreClient };
}

export type { WorkerStats };

/** State the cluster primary pushes to its workers. */
export type ControlMessage =
  | { t: 'health'; pool: string; key: string; health: HealthState }
  | { t: 'servers'; pool: string; specs: ServerSpec[] }
  /** A server's drain or weight as the primary has it; `share`: an operator's change, for the first worker to write to the cluster's store. */
  | { t: 'admin'; state: ServerState; share: boolean }
  | { t: 'eject'; pool: string; key: string; ejection: Ejection }
  | { t: 'reload' };

const listenerKey = (l: ListenerConfig) => `${l.name}|${formatAddress(l.listen)}|${l.mode}`;

export class Gateway {
  readonly metrics = new Metrics();
  pools = new Map<string, Pool>();
  poolSet = new PoolSet(this.pools);
  private listeners = new Map<string, Listener>();
  relay?: Relay;
  private monitor?: HealthMonitor;
  private identity?: IdentityMonitor;
  private discoveries = new Map<string, DnsDiscovery>();
  private admin?: AdminServer;
  /** The dashboard's last hour, sampled while the admin API runs. */
  private charts?: HistorySampler;
  private connections = 0;
  readonly role: Role;
  config: Config;
  private workersAtStart: Config['workers']; // as the node started: a reload cannot change the processes running
  private shuttingDown = false;

  constructor(private loaded: LoadedConfig, readonly log: Logger, private opts: GatewayOptions = {}) {
    this.config = loaded.config;
    this.workersAtStart = loaded.config.workers;
    this.role = opts.role ?? 'single';
    this.metrics.watchPools(() => this.pools.values());
    this.metrics.lastReloadSuccess.set(1);
  }

  private get runsListeners(): boolean {
    return this.role !== 'primary';
  }

  private get runsControl(): boolean {
    return this.role !== 'worker';
  }

  async start(): Promise<void> {
    this.applyPools(this.config);
    if (this.runsListeners && this.config.listeners.some((l) => l.mode === 'smtp')) {
      try {
        this.relay = new Relay(() => this.config, () => this.pools, this.poolSet, this.log, this.metrics, this.opts.worker);
        this.metrics.watchRelay(() => this.relay);
      } catch (e) {
        throw new StartError(`${locateKey(this.loaded.text, this.loaded.file, ['spool'])}: cannot open the spool at ${this.config.spool}: ${(e as Error).message}`);
      }
      await this.startRelay(this.relay);
    }
    // Shared limits are the relay's (shaping, warm-up, suspensions): a layer-4-only node has none.
    if (this.config.cluster && !this.relay && this.runsControl) this.log.warn('cluster: set, but no mode: smtp listener here: nothing is shared (shaping and warm-up apply to the relay)');
    if (this.runsListeners) {
      for (const [i, l] of this.config.listeners.entries()) this.listeners.set(listenerKey(l), await this.openListener(l, i));
    }
    if (this.runsControl) {
      this.monitor = new HealthMonitor(this.pools, () => this.config.hostname);
      this.monitor.sync();
      // SPF / DKIM / DMARC / PTR checks of the sending identity (smtplb doctor), hourly and on reload.
      this.identity = new IdentityMonitor(() => this.config, this.log);
      this.relay?.compliance.useMonitor(this.identity); // one run of the checks per process
      this.metrics.watchIdentity(() => this.identity?.problems() ?? []);
      this.identity.start();
      if (this.config.admin) {
        this.charts = new HistorySampler({ metrics: this.metrics, relay: () => this.relay, pools: () => this.pools, events: () => this.history, deliveryLog: () => this.config.delivery_log.file });
        this.charts.start();
        this.admin = new AdminServer({
          history: this.charts,
          token: this.config.admin.token,
          metrics: this.metrics,
          log: this.log,
          pools: () => this.pools,
          status: () => this.status(),
          relay: () => this.relay, suppressions: () => this.suppressionList(),
          shards: this.role === 'primary' ? () => this.shardAdmins() : undefined,
          serverAction: (p, s, a) => void this.servers.change(p, s, a),
        });
        try {
          await this.admin.listen(this.config.admin.listen);
        } catch (e) {
          throw new StartError(`${locateKey(this.loaded.text, this.loaded.file, ['admin', 'listen'])}: cannot listen on ${formatAddress(this.config.admin.listen)}: ${describeListenError(e)}`);
        }
      }
    }
  }

  private applyPools(config: Config): void {
    const fresh = new Map<string, Pool>();
    for (const [name, cfg] of Object.entries(config.pools)) {
      const existing = this.pools.get(name);
      const specs = specsFromConfig(cfg);
      let pool: Pool;
      if (existing) {
        existing.cfg = cfg;
        // Discovered pools keep their discovered servers until the next resolution.
        if (!cfg.discover) existing.setServers(specs);
        pool = existing;
      } else {
        pool = new Pool(name, cfg, specs);
        if (this.runsControl) logHealthChanges([pool], this.log);
        pool.on('health', ({ server, up, reason }) => this.remember({ pool: name, server: server.name, event: up ? 'up' : 'down', detail: reason ?? null }));
        pool.on('ejected', ({ server, until }) => this.remember({ pool: name, server: server.name, event: 'ejected', detail: `until ${new Date(until).toISOString()}` }));
        this.opts.onPool?.(pool);
      }
      fresh.set(name, pool);
      const disc = this.discoveries.get(name);
      if (disc) {
        disc.stop();
        this.discoveries.delete(name);
      }
      if (cfg.discover && this.runsControl) {
        const d = new DnsDiscovery(pool, cfg.discover, specs, this.log, () => {
          this.monitor?.sync();
          this.opts.onServers?.(name, pool.servers.map(serverSpec));
        });
        this.discoveries.set(name, d);
        void d.start();
      }
    }
    for (const [name, pool] of this.pools) if (!fresh.has(name)) pool.close();
    this.pools.clear();
    for (const [k, v] of fresh) this.pools.set(k, v);
  }

  /** Build and bind a listener (`staged`: for a reload, before its config is swapped in). */
  private async openListener(l: ListenerConfig, index: number, staged?: { relay?: Relay; config: LoadedConfig }): Promise<Listener> {
    const budget = this.budget;
    const loaded = staged?.config ?? this.loaded;
    let listener: Listener;
    try {
      listener =
        l.mode === 'tcp'
          ? new TcpProxyListener(l, { pools: this.poolSet, hostname: loaded.config.hostname, log: this.log, metrics: this.metrics, ...budget })
          : this.smtpListener(l, staged ? staged.relay : this.relay, loaded.config.hostname);
    } catch (e) {
      throw new StartError(`${locateKey(loaded.text, loaded.file, ['listeners', index, 'tls'])}: cannot set up listener ${l.name}: ${(e as Error).message}`);
    }
    try {
      await listener.listen();
    } catch (e) {
      throw new StartError(`${locateKey(loaded.text, loaded.file, ['listeners', index, 'listen'])}: cannot listen on ${formatAddress(l.listen)}: ${describeListenError(e)}`);
    }
    const noNative = l.mode === 'tcp' ? nativeRelayUnavailable() : '';
    if (noNative) this.log.warn(`mode tcp copies bytes with Node streams, not the native relay: ${noNative}`);
    this.log.info({ listener: l.name, listen: formatAddress(l.listen), mode: l.mode, pool: l.pool }, `listening on ${formatAddress(l.listen)} (${l.name}, mode ${l.mode})`);
    return listener;
  }

  /** The global connection limit (max_connections), shared by every listener. */
  private budget = {
    admit: (): boolean => {
      if (this.connections >= this.config.max_connections) return false;
      this.connections++;
      return true;
    },
    leave: (): void => {
      this.connections--;
    },
  };

  private smtpListener(l: ListenerConfig, relay: Relay | undefined, hostname: string): SmtpListener {
    if (!relay) throw new Error('no relay for a mode: smtp listener');
    return new SmtpListener(l, {
      hostname, log: this.log, metrics: this.metrics,
      users: () => new Map(this.config.users.map((u) => [u.name, u])),
      verifyPassword,
      route: (q) => relay.route(q),
      classes: () => this.config.classes,
      signatureFor: (file, domains, prefix) => relay.signatureFor(file, domains, prefix),
      ...relay.intakeHooks(), receive: (size) => relay.receive(size),
      accept: (m, mode, fallback) => relay.accept(m, mode, fallback),
      spoolRefusal: (listener) => relay.spoolRefusal(listener),
      spoolRefused: (m, e) => relay.spoolRefused(m, e),
      suppressed: (rcpt, sender) => relay.suppressionVerdict(rcpt, sender, l.name),
      dropped: (d) => relay.noteDropped(d),
      tagsHeader: () => this.config.events?.tags_header ?? 'X-Smtplb-Tags',
      ...this.budget,
    });
  }

  /**
   * Re-read the config file, transactionally. Everything the new file needs that can fail is
   * built and checked first, while the running config keeps serving: the file parsed and
   * validated (loadConfig reads every TLS certificate and key and every DKIM key it names),
   * the DKIM keys loaded, each kept listener's TLS context and SMTP server built, the relay
   * created when the first mode: smtp listener arrives, and new listeners bound. Any failure
   * undoes what was built, keeps the running config, logs file, line and key, and counts
   * (smtplb_config_reloads_total{result="refused"}, smtplb_config_last_reload_success 0).
   * Only then is anything swapped; the swap itself cannot fail. Sessions already open keep
   * the settings (and TLS certificate) they started with.
   */
  reload(): Promise<boolean> {
    // One at a time: a second SIGHUP during a reload waits for it, then reads the file again.
    const run = this.reloading.then(() => this.reloadNow());
    this.reloading = run.catch(() => false);
    return run;
  }

  private reloading: Promise<unknown> = Promise.resolve();

  private async reloadNow(): Promise<boolean> {
    const refuse = (message: string, problems?: string[]) => {
      this.metrics.reloads.labels('refused').inc();
      this.metrics.lastReloadSuccess.set(0);
      this.log.error({ problems: problems ?? message.split('\n') }, `reload refused, keeping the running config:\n${message}`);
      return false;
    };
    let next: LoadedConfig;
    try {
      next = loadConfig(this.loaded.file);
    } catch (e) {
      return refuse((e as Error).message, (e as { problems?: string[] }).problems);
    }
    const where = (p: (string | number)[]) => locateKey(next.text, next.file, p);
    for (const w of configWarnings(next)) this.log.warn(w);
    // The keys are read once, here: what was checked is what signs after the swap.
    const keys = new Map<string, DkimKey>();
    if (next.config.dkim) {
      for (const [domain, k] of Object.entries(next.config.dkim.domains)) {
        try {
          for (const [d, key] of loadKeys({ ...next.config.dkim, domains: { [domain]: k } })) keys.set(d, key);
        } catch (e) {
          return refuse(`${where(['dkim', 'domains', domain, 'key_file'])}: cannot read ${k.key_file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
      }
    }
    // Kept listeners: their new TLS contexts and SMTP servers, built but not yet in use.
    const commits: (() => void)[] = [];
    const wanted = new Map(next.config.listeners.map((l, i) => [listenerKey(l), { l, i }]));
    const removed: Listener[] = [];
    if (this.runsListeners) {
      for (const [key, listener] of this.listeners) {
        const w = wanted.get(key);
        if (!w) {
          removed.push(listener);
          continue;
        }
        try {
          commits.push(listener.stage ? listener.stage(w.l, next.config.hostname) : () => listener.update(w.l, next.config.hostname));
        } catch (e) {
          return refuse(`${where(['listeners', w.i, 'tls'])}: listener ${w.l.name}: ${(e as Error).message}`);
        }
      }
    }
    // The first mode: smtp listener brings the relay it needs (reading the new config until the swap).
    let staged: Config | undefined = next.config;
    let relay = this.relay;
    const needsRelay = this.runsListeners && next.config.listeners.some((l) => l.mode === 'smtp');
    if (needsRelay && !relay) {
      try {
        relay = new Relay(() => staged ?? this.config, () => this.pools, this.poolSet, this.log, this.metrics, this.opts.worker);
      } catch (e) {
        return refuse(`${where(['spool'])}: cannot open the spool at ${next.config.spool}: ${(e as Error).message}`);
      }
    }
    // New listeners are bound now, unless their address is still held by one this reload removes.
    const opened: [string, Listener][] = [];
    const later: { l: ListenerConfig; i: number }[] = [];
    const held = new Set(removed.map((l) => formatAddress(l.cfg.listen)));
    if (this.runsListeners) {
      for (const [key, w] of wanted) {
        if (this.listeners.has(key)) continue;
        if (held.has(formatAddress(w.l.listen))) {
          later.push(w);
          continue;
        }
        try {
          opened.push([key, await this.openListener(w.l, w.i, { relay, config: next })]);
        } catch (e) {
          for (const [, l] of opened) void l.close();
          if (relay && relay !== this.relay) await relay.shutdown().catch(() => {});
          return refuse((e as Error).message);
        }
      }
    }
    // The swap: nothing below can fail the reload.
    this.loaded = next;
    this.config = next.config;
    staged = undefined;
    this.applyPools(next.config);
    if (relay && relay !== this.relay) {
      this.relay = relay;
      this.metrics.watchRelay(() => this.relay);
      await this.startRelay(relay);
    }
    this.relay?.reloadKeys(keys);
    for (const commit of commits) commit();
    for (const listener of removed) {
      void listener.close();
      this.listeners.delete(listenerKey(listener.cfg));
      this.log.info({ listener: listener.cfg.name }, `listener ${listener.cfg.name} closed by reload`);
    }
    for (const [key, l] of opened) this.listeners.set(key, l);
    for (const { l, i } of later) {
      // Taking over the address of a listener this reload closed: bound once it let go (the
      // one step after the swap that can fail; then it is logged, and the rest stays applied).
      try {
        this.listeners.set(listenerKey(l), await this.openListener(l, i));
      } catch (e) {
        this.log.error(`reload: ${(e as Error).message}`);
      }
    }
    this.monitor?.sync(this.pools);
    this.metrics.reloads.labels('applied').inc();
    this.metrics.lastReloadSuccess.set(1);
    if (this.relay?.cluster && JSON.stringify(next.config.cluster ?? null) !== JSON.stringify(this.relay.cluster.cfg)) this.log.warn('cluster: changed settings take effect at the next restart (the running node keeps its link to Redis)');
    if (next.config.workers !== this.workersAtStart) this.log.warn('workers: a changed number of worker processes takes effect at the next restart (the running ones keep their shards and their share of each limit)');
    this.log.info('configuration reloaded');
    this.identity?.rerun();
    return true;
  }

  /** Recent health and admin changes, newest last, for status and the dashboard. */
  readonly history: { at: string; pool: string; server: string; event: string; detail: string | null }[] = [];

  private remember(e: { pool: string; server: string; event: string; detail: string | null }): void {
    this.history.push({ at: new Date().toISOString(), ...e });
    if (this.history.length > 200) this.history.splice(0, this.history.length - 200);
  }

  /**
   * Drains and weights: applied here, handed on to the workers (primary) or the cluster (a node
   * with a relay and `cluster:`); a worker only follows its primary and the cluster's store.
   */
  readonly servers = new ServerControl(
    {
      find: (pool, server) => this.pools.get(pool)?.find(server),
      apply: (pool, server, action) => this.applyServerAction(pool, server, action),
      node: () => this.config.cluster?.node ?? this.config.hostname,
    },
    () => (this.role === 'primary' ? this.opts.shareServers : this.role === 'single' ? this.relay?.shaper.store() : undefined),
  );

  private applyServerAction(pool: string, server: string, action: ServerAction): void {
    const p = this.pools.get(pool);
    const s = p?.find(server);
    if (!p || !s) return;
    this.remember({ pool, server, ...describeAction(action) });
    if (typeof action === 'string') p.setAdmin(s, action);
    else {
      s.weight = action.weight;
      p.setAdmin(s, s.admin);
    }
  }

  private async startRelay(relay: Relay): Promise<void> {
    relay.onClusterServers = (states) => {
      this.servers.follow(states);
      // The primary is the node's authority for its workers: the first worker tells it.
      if (this.opts.worker?.shard === 0) this.opts.onClusterServers?.(states);
    };
    relay.onPeerDown = (servers) => {
      for (const x of servers) {
        const [pool, server] = x.split('/');
        const p = this.pools.get(pool);
        const s = p?.find(server);
        if (p && s?.health.up) {
          this.log.info({ pool, server }, `cluster: another node finds ${pool}/${server} down; checking it now and sending it mail only when no other server is up`);
          this.monitor?.checkNow(p, s);
        }
      }
    };
    await relay.start();
  }

  /** Counters from worker processes (primary only), by worker id. */
  readonly workerStats = new Map<number, WorkerStats>();

  /** The private admin API of each worker that runs a relay (primary only), by worker id. */
  readonly shardAdmin = new Map<number, { shard: number; port: number }>();

  /** The node's suppression list: the relay's, or on a primary (no relay) the file its workers check; its changes go to other nodes. */
  private primaryList?: ReturnType<typeof openNodeList>;
  suppressionList(): SuppressionList | undefined {
    if (this.relay || this.role !== 'primary' || !this.config.listeners.some((l) => l.mode === 'smtp')) return this.relay?.suppressions;
    return (this.primaryList ??= openNodeList(this.config.spool, this.config.cluster, this.log, false)).list;
  }

  shardAdmins(): { shard: number; port: number }[] {
    return [...this.shardAdmin.values()].sort((a, b) => a.shard - b.shard);
  }

  /**
   * A worker's own admin API on a loopback port of the system's choosing, for its primary to
   * ask about this worker's shard of the queue (the primary answers users for all shards).
   */
  async listenShardAdmin(): Promise<number | undefined> {
    if (this.role !== 'worker' || !this.relay) return undefined;
    this.admin = new AdminServer({
      token: this.config.admin?.token,
      metrics: this.metrics,
      log: this.log,
      pools: () => this.pools,
      status: () => this.status(),
      relay: () => this.relay,
      deliveryLog: () => this.config.delivery_log.file,
      // Drains and weights are the primary's to decide and push; a shard has no say.
      serverAction: () => {},
    });
    await this.admin.listen({ host: '127.0.0.1', port: 0 });
    const a = this.admin.server.address();
    return typeof a === 'object' && a ? a.port : undefined;
  }

  localStats(): WorkerStats {
    const servers = [...this.pools.values()].flatMap((p) => p.servers.map((s) => ({ pool: p.name, key: s.key, active: s.active, connections: s.connections, failures: s.failures })));
    const listeners: Record<string, number> = {};
    for (const l of this.listeners.values()) listeners[l.cfg.name] = l.connections;
    return { servers, listeners };
  }

  /** Apply state pushed by the cluster primary (worker only). */
  applyControl(m: ControlMessage): void {
    if (m.t === 'reload') {
      void this.reload();
      return;
    }
    if (m.t === 'admin') {
      this.servers.follow([m.state]);
      if (!m.share) return;
      // An operator's change at the primary: this worker's older reads of Redis do not undo it,
      // and the first worker writes it there.
      this.servers.expect(m.state);
      if (this.opts.worker?.shard === 0 && this.relay?.cluster?.acrossNodes) this.relay.cluster.putServer(m.state);
      return;
    }
    const pool = this.pools.get(m.pool);
    if (!pool) return;
    switch (m.t) {
      case 'health': {
        const s = pool.byKey(m.key);
        if (s) pool.setHealth(s, m.health);
        break;
      }
      case 'servers':
        pool.setServers(m.specs);
        break;
      case 'eject': {
        const s = pool.byKey(m.key);
        if (s) s.ejection = m.ejection;
        break;
      }
    }
  }

  /** What a newly started worker needs to share the primary's view. */
  snapshot(): ControlMessage[] {
    const out: ControlMessage[] = [];
    for (const p of this.pools.values()) {
      if (p.cfg.discover) out.push({ t: 'servers', pool: p.name, specs: p.servers.map(serverSpec) });
      for (const s of p.servers) {
        out.push({ t: 'health', pool: p.name, key: s.key, health: s.health });
        // Every server, also those as configured: a worker may have read other states from Redis as it started.
        out.push({ t: 'admin', state: this.servers.state(p.name, s.name)!, share: false });
        if (s.ejection.until > Date.now()) out.push({ t: 'eject', pool: p.name, key: s.key, ejection: s.ejection });
      }
    }
    return out;
  }

  status(): GatewayStatus {
    const now = Date.now();
    const listenerConns = (name: string) => [...this.workerStats.values()].reduce((n, w) => n + (w.listeners[name] ?? 0), 0);
    return {
      hostname: this.config.hostname,
      pid: process.pid,
      role: this.role,
      workers: this.role === 'primary' ? this.workerStats.size : undefined,
      listeners: this.config.listeners.map((l) => ({ name: l.name, listen: formatAddress(l.listen), mode: l.mode, pool: l.pool, connections: this.role === 'primary' ? listenerConns(l.name) : this.listeners.get(listenerKey(l))?.connections })),
      pools: poolsStatus(this.pools.values(), now, { workers: this.role === 'primary' ? this.workerStats.values() : undefined, warmup: (pool, s) => this.relay?.shaper.serverWarmup(pool, s, now) ?? null }),
      ...(this.config.listeners.some((l) => l.mode === 'tcp') ? { tcp_relay: tcpRelayMode() } : {}),
      health_history: this.history.slice(-50),
      ...(this.identity ? { identity: this.identity.status() } : {}),
      ...(this.relay ? this.relay.status(now) : {}),
    };
  }

  get activeConnections(): number {
    let n = 0;
    for (const l of this.listeners.values()) n += l.connections;
    return n;
  }

  /** Stop accepting, let sessions finish up to shutdown_timeout, then cut what is left. */
  async shutdown(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.charts?.stop();
    await Promise.all([...this.listeners.values()].map((l) => l.close()));
    this.monitor?.stop();
    this.identity?.stop();
    for (const d of this.discoveries.values()) d.stop();
    const deadline = Date.now() + this.config.shutdown_timeout;
    while (this.activeConnections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (this.activeConnections > 0) {
      this.log.warn({ sessions: this.activeConnections }, 'shutdown deadline reached, closing remaining sessions');
      for (const l of this.listeners.values()) l.destroyAll();
    }
    await this.relay?.shutdown();
    this.admin?.close();
    this.primaryList?.close();
    for (const p of this.pools.values()) p.close();
  }
}

/** How `mode: tcp` copies bytes in this process: "native", or "stream (why)". */
function tcpRelayMode(): string {
  const why = nativeRelayUnavailable();
  return why ? `stream (${why})` : 'native';
}

export function serverSpec(s: { name: string; address: { host: string; port: number }; configuredWeight: number; backup: boolean; maxconn?: number; source?: string }): ServerSpec {
  return { name: s.name, address: s.address, weight: s.configuredWeight, backup: s.backup, max_connections: s.maxconn, source: s.source };
}
