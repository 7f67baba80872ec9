// `mode: tcp`: a layer-4 proxy for SMTP ports, like HAProxy `mode tcp`. Bytes are piped
// untouched (STARTTLS passes end to end). When no server can be had the client reads an SMTP
// `421 4.3.2` greeting, never a bare reset.
import net from 'node:net';
import type { Logger } from 'pino';
import type { ListenerCounters } from './counters.js';
import type { PoolSet, Server, Pool } from '../balancing/pool.js';
import type { ListenerConfig } from '../config/schema.js';
import { inNetworks } from '../config/units.js';
import { encodeProxy, plainIp, readProxyHeader, type ProxyAddresses } from '../protocol/proxy-protocol.js';
import { nativeRelay, type PairEnd, type RelayEnd } from './native-relay.js';
import { SocketListener, type ConnectionBudget } from './socket-listener.js';

export interface TcpProxyContext extends ConnectionBudget {
  pools: PoolSet;
  hostname: string;
  log: Logger;
  metrics: ListenerCounters;
}

const PROXY_HEADER_TIMEOUT = 5000;

export class TcpProxyListener extends SocketListener {
  private counters;

  constructor(cfg: ListenerConfig, private ctx: TcpProxyContext) {
    super(cfg, ctx);
    this.counters = this.bindCounters();
  }

  private bindCounters() {
    const l = this.cfg.name;
    const m = this.ctx.metrics;
    return {
      noServer: m.listenerRejected.labels(l, 'no_server'),
      badProxy: m.listenerRejected.labels(l, 'bad_proxy_header'),
      toServer: m.proxyBytes.labels(l, 'to_server'),
      toClient: m.proxyBytes.labels(l, 'to_client'),
    };
  }

  private ends = new Map<string, { inc(): void }>();

  private endCounter(reason: string) {
    let c = this.ends.get(reason);
    if (!c) this.ends.set(reason, (c = this.ctx.metrics.proxyEnds.labels(this.cfg.name, reason)));
    return c;
  }

  /** New settings from a reload; they apply to new connections. */
  update(cfg: ListenerConfig): void {
    this.cfg = cfg;
  }

  protected override full(): boolean {
    return this.cfg.max_connections !== undefined && this.sockets.size >= this.cfg.max_connections;
  }

  protected accept(client: net.Socket): void {
    // The socket's addresses cost two system calls; most connections never need them (only
    // PROXY headers, `balance: source` and warnings do).
    let own: ProxyAddresses | undefined;
    const addrs = () => (own ??= ownAddresses(client));
    const trusted = this.cfg.accept_proxy;
    if (trusted && inNetworks(trusted, addrs().source)) void this.forwardAfterProxyHeader(client, addrs);
    else void this.forward(client, addrs);
  }

  private async forwardAfterProxyHeader(client: net.Socket, own: () => ProxyAddresses): Promise<void> {
    const r = await readProxyHeader(client, PROXY_HEADER_TIMEOUT);
    if (!r.ok) {
      this.counters.badProxy.inc();
      this.ctx.log.warn({ listener: this.cfg.name, client: own().source, error: r.error }, 'bad PROXY header');
      client.destroy();
      return;
    }
    const told = r.addresses;
    await this.forward(client, told ? () => told : own);
  }

  private async forward(client: net.Socket, addrs: () => ProxyAddresses): Promise<void> {
    const cfg = this.cfg;
    const poolName = cfg.pool!;
    const tried = new Set<string>();
    let attempts = 0;
    while (!client.destroyed) {
      const { pool, result } = await this.ctx.pools.acquire(poolName, {
        get source() {
          return addrs().source;
        },
        exclude: tried,
      });
      if (result.kind !== 'lease') {
        this.counters.noServer.inc();
        if (tried.size === 0) this.ctx.log.warn({ listener: cfg.name, pool: poolName, client: addrs().source, reason: result.kind }, 'no server available');
        else this.ctx.log.warn({ listener: cfg.name, pool: poolName, client: addrs().source, tried: [...tried] }, 'every server tried failed');
        this.refuse(client, 'Service not available');
        return;
      }
      const server = result.server;
      const outcome = await this.open(client, pool, server, addrs);
      if (outcome === 'relayed') return;
      pool.release(server);
      if (outcome === 'gone') return;
      tried.add(server.key);
      if (++attempts > pool.cfg.retries) {
        this.counters.noServer.inc();
        this.refuse(client, 'Service not available');
        return;
      }
    }
  }

  /** Pre-bound metric series per server: label lookups are not free on every connection. */
  private serverCounters = new WeakMap<Server, { ok: { inc(): void }; failed: { inc(): void }; connectSeconds: { observe(v: number): void } }>();

  private countersFor(pool: Pool, server: Server) {
    let c = this.serverCounters.get(server);
    if (!c) {
      const m = this.ctx.metrics;
      c = { ok: m.serverConnections.labels(pool.name, server.name), failed: m.serverConnectFailures.labels(pool.name, server.name), connectSeconds: m.connectSeconds.labels(pool.name) };
      this.serverCounters.set(server, c);
    }
    return c;
  }

  /**
   * Connect the client to the server and start relaying: 'relayed' (the pair runs and
   * releases the server when it ends), 'failed' (already reported to the pool) or 'gone'
   * (the client left meanwhile).
   */
  private async open(client: net.Socket, pool: Pool, server: Server, addrs: () => ProxyAddresses): Promise<'relayed' | 'failed' | 'gone'> {
    const cfg = this.cfg;
    const sendProxy = cfg.send_proxy ?? pool.cfg.send_proxy;
    const header = sendProxy ? encodeProxy(sendProxy, addrs()) : undefined;
    const timeouts = { clientTimeout: cfg.client_timeout, serverTimeout: cfg.server_timeout, header };
    const ended = (end: PairEnd) => this.ended(end, pool, server, addrs);
    const relay = nativeRelay();
    if (relay && net.isIP(server.address.host)) {
      const { host, port } = server.address;
      const pending = relay.connect(client, { ...timeouts, ip: host, port, localIp: server.source, connectTimeout: pool.cfg.connect_timeout }, ended);
      if (pending) {
        const r = await pending;
        if (r.ok) {
          this.connectSucceeded(pool, server, r.seconds);
          return 'relayed';
        }
        if (client.destroyed) return 'gone';
        this.connectFailed(pool, server, r.error);
        return 'failed';
      }
    }
    // A server named by host name (Node resolves it), or no native relay.
    const upstream = await this.connect(pool, server);
    if (!upstream) return client.destroyed ? 'gone' : 'failed';
    if (client.destroyed) {
      upstream.destroy();
      return 'gone';
    }
    if (relay?.add(client, upstream, timeouts, ended)) return 'relayed';
    if (header) upstream.write(header);
    this.pipe(client, upstream, ended);
    return 'relayed';
  }

  /** Connect with Node; null on failure (already reported to the pool). */
  private connect(pool: Pool, server: Server): Promise<net.Socket | null> {
    const started = performance.now();
    return new Promise((resolve) => {
      const up = new net.Socket();
      // Paused before it connects, so Node never reads the greeting the relay must pass on.
      up.pause();
      up.connect({ host: server.address.host, port: server.address.port, localAddress: server.source, noDelay: true });
      const timer = setTimeout(() => fail('timeout'), pool.cfg.connect_timeout);
      const fail = (why: string) => {
        clearTimeout(timer);
        up.off('connect', onConnect);
        up.destroy();
        this.connectFailed(pool, server, why);
        resolve(null);
      };
      const onError = (e: NodeJS.ErrnoException) => fail(e.code ?? e.message);
      const onConnect = () => {
        clearTimeout(timer);
        up.off('error', onError);
        this.connectSucceeded(pool, server, (performance.now() - started) / 1000);
        resolve(up);
      };
      up.once('error', onError);
      up.once('connect', onConnect);
    });
  }

  private connectSucceeded(pool: Pool, server: Server, seconds: number): void {
    const counters = this.countersFor(pool, server);
    counters.connectSeconds.observe(seconds);
    counters.ok.inc();
    if (server.ejection.consecutive > 0 || server.ejection.count > 0) pool.passiveResult(server, true);
  }

  private connectFailed(pool: Pool, server: Server, why: string): void {
    this.countersFor(pool, server).failed.inc();
    pool.passiveResult(server, false);
    const error = why === 'timeout' ? 'connect timeout' : why;
    this.ctx.log.warn({ pool: pool.name, server: server.name, error }, `connect to ${server.label} failed: ${error}`);
  }

  /** A relayed pair has ended. */
  private ended(end: PairEnd, pool: Pool, server: Server, addrs: () => ProxyAddresses): void {
    pool.release(server);
    this.counters.toServer.inc(end.bytesToServer);
    this.counters.toClient.inc(end.bytesToClient);
    this.endCounter(end.reason).inc();
    if (end.reason !== 'closed' && this.ctx.log.isLevelEnabled('debug')) {
      this.ctx.log.debug({ listener: this.cfg.name, pool: pool.name, server: server.name, client: addrs().source, reason: end.reason }, 'proxied connection ended');
    }
  }

  /** The stream fallback of the native relay: the same behaviour, more CPU per byte. */
  private pipe(client: net.Socket, upstream: net.Socket, ended: (end: PairEnd) => void): void {
    let reason: RelayEnd | undefined;
    const teardown = (why: RelayEnd) => {
      reason ??= why;
      client.destroy();
      upstream.destroy();
    };
    client.setTimeout(this.cfg.client_timeout, () => teardown('client_timeout'));
    upstream.setTimeout(this.cfg.server_timeout, () => teardown('server_timeout'));
    // A clean close on one side ends the other after its pending bytes are flushed (the
    // server's 221 must reach the client); an error or timeout tears both down.
    upstream.on('error', () => teardown('server_error'));
    client.on('error', () => teardown('client_error'));
    // The server's side closing is the end of the pair: its slot is free again.
    upstream.once('close', () => {
      client.end();
      ended({ reason: reason ?? 'closed', bytesToServer: upstream.bytesWritten, bytesToClient: client.bytesWritten });
    });
    client.once('close', () => upstream.end());
    client.pipe(upstream);
    upstream.pipe(client);
  }

  override destroyAll(): void {
    nativeRelay()?.abortAll(this.sockets);
    super.destroyAll();
  }
}

function ownAddresses(client: net.Socket): ProxyAddresses {
  const remote = plainIp(client.remoteAddress ?? '');
  return {
    family: net.isIPv6(remote) ? 6 : 4,
    source: remote,
    sourcePort: client.remotePort ?? 0,
    dest: plainIp(client.localAddress ?? ''),
    destPort: client.localPort ?? 0,
  };
}
