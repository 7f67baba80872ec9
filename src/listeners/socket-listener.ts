// What every listener does with raw sockets, whatever it speaks: bind, count and track the
// connections it holds against the global budget, refuse with an SMTP 421 (never a bare
// reset), stop accepting, and cut what is left at the end of a drain.
import net from 'node:net';
import type { Metrics } from '../admin/metrics.js';
import type { ListenerConfig } from '../config/schema.js';
import { listenOn } from './proxy-protocol.js';

export interface ConnectionBudget {
  admit(): boolean;
  leave(): void;
}

const ignore = () => {};

export abstract class SocketListener {
  readonly server: net.Server;
  protected sockets = new Set<net.Socket>();

  constructor(public cfg: ListenerConfig, protected base: { hostname: string; metrics: Metrics } & ConnectionBudget) {
    this.server = net.createServer({ pauseOnConnect: true, noDelay: true }, (sock) => this.onSocket(sock));
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

  listen(): Promise<void> {
    return listenOn(this.server, this.cfg.listen.host, this.cfg.listen.port);
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
