// What every listener does with raw sockets, whatever it speaks: bind, count and track the
// connections it holds against the global budget, refuse with an SMTP 421 (never a bare
// reset), stop accepting, and cut what is left at the end of a drain.
import net from 'node:net';
import type { ListenerCounters } from './counters.js';
import type { ListenerConfig } from '../config/schema.js';

export interface ConnectionBudget {
  admit(): boolean;
  leave(): void;
}

const ignore = () => {};

export abstract class SocketListener {
  readonly server: net.Server;
  protected sockets = new Set<net.Socket>();
  /** The listener's own address when it is bound to one (not a wildcard): every accepted socket's local address, known without asking the kernel. */
  protected bound?: { address: string; port: number };
  /**
   * TCP_NODELAY is set on the listening socket, and Linux copies it to every socket it
   * accepts: no setsockopt system call per connection.
   */
  protected nodelayInherited = false;
  /**
   * Right after the listening socket got TCP_NODELAY, each connection gets it itself too: one
   * whose handshake ended before the listening socket had it did not inherit it. Such a
   * connection is already waiting to be accepted, so the next poll of the event loop takes
   * it, and the loop passes that poll before a second immediate runs.
   */
  private nodelayEarly = false;

  constructor(public cfg: ListenerConfig, protected base: { hostname: string; metrics: ListenerCounters } & ConnectionBudget) {
    // Replies go out as they are written (no Nagle delay behind an unacknowledged reply):
    // TCP_NODELAY, on the listening socket when it can be (listen()), else per connection.
    this.server = net.createServer({ pauseOnConnect: true }, (sock) => this.onSocket(sock));
  }

  protected abstract accept(sock: net.Socket): void;

  /** Extra admission rule of the listener kind (e.g. its own max_connections). */
  protected full(): boolean {
    return false;
  }

  /** The listener's series, looked up once: a label lookup on every connection adds up. */
  private series?: { connections: { inc(): void }; active: { inc(): void; dec(): void }; full: { inc(): void } };

  private onSocket(sock: net.Socket): void {
    const m = this.base.metrics;
    const series = (this.series ??= {
      connections: m.listenerConnections.labels(this.cfg.name),
      active: m.listenerActive.labels(this.cfg.name),
      full: m.listenerRejected.labels(this.cfg.name, 'max_connections'),
    });
    series.connections.inc();
    if (this.full() || !this.base.admit()) {
      series.full.inc();
      this.refuse(sock, 'Too many connections, try again later');
      return;
    }
    if (!this.nodelayInherited || this.nodelayEarly) sock.setNoDelay(true);
    this.sockets.add(sock);
    series.active.inc();
    sock.on('error', ignore);
    sock.once('close', () => this.released(sock));
    this.accept(sock);
  }

  /**
   * A connection is over: its counts are given back, once. Called on the socket's 'close',
   * and by subclasses whose sessions outlive that event's reach (a socket taken over by TLS
   * after STARTTLS never emits it on the original object).
   */
  protected released(sock: net.Socket): void {
    if (!this.sockets.delete(sock)) return;
    this.series?.active.dec();
    this.base.leave();
  }

  /** Answer 421 4.3.2 and close, reading and dropping whatever the client still sends. */
  protected refuse(sock: net.Socket, why: string): void {
    sock.on('error', () => {});
    // Closing with unread data makes the kernel send a reset and the 421 would be lost.
    sock.on('data', () => {});
    sock.resume();
    sock.setTimeout(10_000, () => sock.destroy());
    sock.end(`421 4.3.2 ${this.base.hostname} ${why}\r\n`);
  }

  async listen(): Promise<void> {
    await listenOn(this.server, this.cfg.listen.host, this.cfg.listen.port);
    const a = this.server.address();
    if (a && typeof a === 'object' && !['0.0.0.0', '::'].includes(a.address)) this.bound = { address: a.address, port: a.port };
    // The listening socket's libuv handle (`_handle`, internal: Node has no socket options for a
    // server). Where it cannot take the option (not Linux, not a TCP handle), each connection
    // gets it instead.
    const h = (this.server as unknown as { _handle?: { setNoDelay?: (on: boolean) => number } })._handle;
    this.nodelayInherited = process.platform === 'linux' && typeof h?.setNoDelay === 'function' && h.setNoDelay(true) === 0;
    if (this.nodelayInherited) {
      this.nodelayEarly = true;
      setImmediate(() => setImmediate(() => (this.nodelayEarly = false)));
    }
  }

  get connections(): number {
    return this.sockets.size;
  }

  /** Stop accepting; established sessions carry on. */
  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  destroyAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  abstract update(cfg: ListenerConfig): void;
}

/** Bind a server, rejecting with the bind error (EADDRINUSE…) instead of emitting it. */
export function listenOn(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    server.once('error', onError);
    server.listen({ host, port, backlog: 4096 }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
