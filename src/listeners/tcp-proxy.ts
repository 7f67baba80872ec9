// `mode: tcp`: a layer-4 proxy for SMTP ports, like HAProxy `mode tcp`. Bytes are piped
// untouched (STARTTLS passes end to end). When no server can be had the client reads an SMTP
// `421 4.3.2` greeting, never a bare reset.
import net from 'node:net';
import type { Logger } from 'pino';
import type { Metrics } from '../admin/metrics.js';
import type { PoolSet, Server, Pool } from '../balancing/pool.js';
import type { ListenerConfig } from '../config/schema.js';
import { inNetworks } from '../config/units.js';
import { encodeProxy, plainIp, readProxyHeader, type ProxyAddresses } from './proxy-protocol.js';
import { SocketListener, type ConnectionBudget } from './socket-listener.js';

export interface TcpProxyContext extends ConnectionBudget {
  pools: PoolSet;
  hostname: string;
  log: Logger;
  metrics: Metrics;
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
    };
  }

  /** New settings from a reload; they apply to new connections. */
  update(cfg: ListenerConfig): void {
    this.cfg = cfg;
  }

  protected override full(): boolean {
    return this.cfg.max_connections !== undefined && this.sockets.size >= this.cfg.max_connections;
  }

  protected accept(client: net.Socket): void {
    const cfg = this.cfg;
    const remote = plainIp(client.remoteAddress ?? '');
    const own: ProxyAddresses = {
      family: net.isIPv6(remote) ? 6 : 4,
      source: remote,
      sourcePort: client.remotePort ?? 0,
      dest: plainIp(client.localAddress ?? ''),
      destPort: client.localPort ?? 0,
    };
    if (cfg.accept_proxy && inNetworks(cfg.accept_proxy, remote)) {
      void this.forwardAfterProxyHeader(client, own);
    } else {
      void this.forward(client, own);
    }
  }

  private async forwardAfterProxyHeader(client: net.Socket, own: ProxyAddresses): Promise<void> {
    const r = await readProxyHeader(client, PROXY_HEADER_TIMEOUT);
    if (!r.ok) {
      this.counters.badProxy.inc();
      this.ctx.log.warn({ listener: this.cfg.name, client: own.source, error: r.error }, 'bad PROXY header');
      client.destroy();
      return;
    }
    await this.forward(client, r.addresses ?? own);
  }

  private async forward(client: net.Socket, addrs: ProxyAddresses): Promise<void> {
    const cfg = this.cfg;
    const poolName = cfg.pool!;
    const tried = new Set<string>();
    let attempts = 0;
    while (!client.destroyed) {
      const { pool, result } = await this.ctx.pools.acquire(poolName, { source: addrs.source, exclude: tried });
      if (result.kind !== 'lease') {
        this.counters.noServer.inc();
        if (tried.size === 0) this.ctx.log.warn({ listener: cfg.name, pool: poolName, client: addrs.source, reason: result.kind }, 'no server available');
        else this.ctx.log.warn({ listener: cfg.name, pool: poolName, client: addrs.source, tried: [...tried] }, 'every server tried failed');
        this.refuse(client, 'Service not available');
        return;
      }
      const server = result.server;
      const upstream = await this.connect(pool, server);
      if (client.destroyed) {
        upstream?.destroy();
        if (!upstream) pool.release(server);
        return;
      }
      if (upstream) {
        this.splice(client, upstream, pool, server, addrs);
        return;
      }
      pool.release(server);
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

  /** Connect to the server; null on failure (already reported to the pool). */
  private connect(pool: Pool, server: Server): Promise<net.Socket | null> {
    const counters = this.countersFor(pool, server);
    const started = performance.now();
    return new Promise((resolve) => {
      const up = net.connect({ host: server.address.host, port: server.address.port, localAddress: server.source, noDelay: true });
      const timer = setTimeout(() => fail('connect timeout'), pool.cfg.connect_timeout);
      const fail = (why: string) => {
        clearTimeout(timer);
        up.destroy();
        counters.failed.inc();
        pool.passiveResult(server, false);
        this.ctx.log.warn({ pool: pool.name, server: server.name, error: why }, `connect to ${server.label} failed: ${why}`);
        resolve(null);
      };
      up.once('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
      up.once('connect', () => {
        clearTimeout(timer);
        up.removeAllListeners('error');
        counters.connectSeconds.observe((performance.now() - started) / 1000);
        counters.ok.inc();
        if (server.ejection.consecutive > 0 || server.ejection.count > 0) pool.passiveResult(server, true);
        resolve(up);
      });
    });
  }

  private splice(client: net.Socket, upstream: net.Socket, pool: Pool, server: Server, addrs: ProxyAddresses): void {
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      pool.release(server);
    };
    const sendProxy = this.cfg.send_proxy ?? pool.cfg.send_proxy;
    if (sendProxy) upstream.write(encodeProxy(sendProxy, addrs));
    const teardown = () => {
      client.destroy();
      upstream.destroy();
    };
    client.setTimeout(this.cfg.client_timeout, teardown);
    upstream.setTimeout(this.cfg.server_timeout, teardown);
    // A clean close on one side ends the other after its pending bytes are flushed (the
    // server's 221 must reach the client); an error or timeout tears both down.
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.once('close', (hadError) => {
      release();
      if (hadError) client.destroy();
      else client.end();
    });
    client.once('close', (hadError) => {
      if (hadError) upstream.destroy();
      else upstream.end();
    });
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  }
}
