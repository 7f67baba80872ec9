// The connect-and-copy half of `mode: tcp`, handed to the native relay thread
// (native/relay.c, which says why it exists). This module loads it, gives each pair an id and
// turns the thread's reports back into promises and callbacks for the listener.
//
// The accepted client socket stays open in Node but is taken off libuv's read list while the
// native thread works on its own duplicate of the descriptor; when the pair ends it is
// destroyed here, which is what ends the listener's count of it. Where the addon is missing
// (a platform other than Linux, a failed build) or SMTPLB_RELAY=stream is set,
// `nativeRelay()` is null and the listener connects and pipes with Node streams instead:
// slower, same behaviour.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import type net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type RelayEnd = 'closed' | 'client_error' | 'server_error' | 'client_timeout' | 'server_timeout' | 'aborted';
type Event = RelayEnd | 'connected' | 'connect_failed';

interface Addon {
  start(onEvent: (id: number, event: Event, a: number, b: number, detail: string) => void): void;
  connect(id: number, clientFd: number, ip: string, port: number, localIp: string, connectTimeoutMs: number, clientTimeoutMs: number, serverTimeoutMs: number, toServer?: Buffer): boolean;
  add(id: number, clientFd: number, serverFd: number, clientTimeoutMs: number, serverTimeoutMs: number, toServer?: Buffer, toClient?: Buffer): void;
  abort(id: number): void;
}

export interface PairEnd {
  reason: RelayEnd;
  bytesToServer: number;
  bytesToClient: number;
}

export interface PairOptions {
  clientTimeout: number;
  serverTimeout: number;
  /** Bytes to send to the server before anything from the client (a PROXY header). */
  header?: Buffer;
}

export interface ConnectOptions extends PairOptions {
  ip: string;
  port: number;
  localIp?: string;
  connectTimeout: number;
}

export type Connected = { ok: true; seconds: number } | { ok: false; error: string };

interface Pair {
  client: net.Socket;
  server?: net.Socket;
  /** Set while the native thread connects. */
  connecting?: (r: Connected) => void;
  ended: (end: PairEnd) => void;
}

export class NativeRelay {
  private pairs = new Map<number, Pair>();
  private nextId = 1;

  constructor(private addon: Addon) {
    addon.start((id, event, a, b, detail) => this.report(id, event, a, b, detail));
  }

  /**
   * Connect to ip:port from the relay thread and relay the client to it. Resolves once the
   * connection is up (the pair then runs until `ended`) or has failed (the client is JS's
   * again, to try another server); null when ip or localIp is not an IP literal.
   */
  connect(client: net.Socket, o: ConnectOptions, ended: (end: PairEnd) => void): Promise<Connected> | null {
    const cfd = descriptor(client);
    if (cfd === undefined) return null;
    const early = takeOver(client);
    const id = this.id();
    const toServer = joined(o.header, early);
    if (!this.addon.connect(id, cfd, o.ip, o.port, o.localIp ?? '', o.connectTimeout, o.clientTimeout, o.serverTimeout, toServer)) {
      if (early) client.unshift(early);
      return null;
    }
    return new Promise((resolve) => this.pairs.set(id, { client, connecting: resolve, ended }));
  }

  /** Relay between two sockets connected by Node; false when they cannot be handed over. */
  add(client: net.Socket, server: net.Socket, o: PairOptions, ended: (end: PairEnd) => void): boolean {
    const cfd = descriptor(client);
    const sfd = descriptor(server);
    if (cfd === undefined || sfd === undefined) return false;
    const early = takeOver(client);
    const toClient = takeOver(server);
    // Node no longer does I/O on it, but an error event without a listener would be fatal.
    server.on('error', () => {});
    const id = this.id();
    this.pairs.set(id, { client, server, ended });
    this.addon.add(id, cfd, sfd, o.clientTimeout, o.serverTimeout, joined(o.header, early), toClient);
    return true;
  }

  /** Cut the pairs of these clients now (the end of a drain). */
  abortAll(clients: Set<net.Socket>): void {
    for (const [id, p] of this.pairs) if (clients.has(p.client)) this.addon.abort(id);
  }

  private id(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffff_ffff ? 1 : this.nextId + 1;
    return id;
  }

  private report(id: number, event: Event, a: number, b: number, detail: string): void {
    const p = this.pairs.get(id);
    if (!p) return;
    if (event === 'connected') {
      p.connecting?.({ ok: true, seconds: a / 1e6 });
      p.connecting = undefined;
      return;
    }
    this.pairs.delete(id);
    if (event === 'connect_failed') {
      p.connecting?.({ ok: false, error: detail });
      return;
    }
    // Ended. Told first, while the client socket can still say its addresses.
    if (p.connecting) p.connecting({ ok: false, error: event });
    else p.ended({ reason: event, bytesToServer: a, bytesToClient: b });
    p.client.destroy();
    p.server?.destroy();
  }
}

function joined(header: Buffer | undefined, early: Buffer | undefined): Buffer | undefined {
  return header && early ? Buffer.concat([header, early]) : (header ?? early);
}

/**
 * From here on only the native thread reads this socket. Bytes Node already holds (read
 * after a PROXY header, say) are returned to go first, so the hand-over loses and reorders
 * nothing; then libuv stops reading. All of it runs before libuv polls again.
 */
function takeOver(sock: net.Socket): Buffer | undefined {
  sock.pause();
  const early = sock.readableLength > 0 ? ((sock.read() as Buffer | null) ?? undefined) : undefined;
  // What `pause()` does not do for a plain socket: take it off libuv's read list.
  const h = (sock as unknown as { _handle?: { reading?: boolean; readStop?: () => number } })._handle;
  if (h?.reading && h.readStop) {
    h.reading = false;
    h.readStop();
  }
  return early;
}

function descriptor(sock: net.Socket): number | undefined {
  // `_handle.fd` is libuv's descriptor of a TCP socket (TCPWrap): not public API, but stable
  // since Node 0.x; a missing or negative value means "use streams".
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

let addon: Addon | string | undefined;
let relay: NativeRelay | null | undefined;

/** The addon, or why it cannot be used. */
function loadAddon(): Addon | string {
  if (addon !== undefined) return addon;
  if (process.env.SMTPLB_RELAY === 'stream') return (addon = 'SMTPLB_RELAY=stream');
  const file = addonPath();
  if (!file) return (addon = 'build/Release/relay.node is not built');
  try {
    return (addon = createRequire(import.meta.url)(file) as Addon);
  } catch (e) {
    return (addon = (e as Error).message);
  }
}

/** The process's relay thread, started on first use; null when streams must do. */
export function nativeRelay(): NativeRelay | null {
  if (relay !== undefined) return relay;
  const a = loadAddon();
  relay = null;
  if (typeof a === 'string') return relay;
  try {
    relay = new NativeRelay(a);
  } catch (e) {
    addon = `the relay thread did not start: ${(e as Error).message}`;
  }
  return relay;
}

/** Why the native relay cannot be used ('' when it can); starts nothing. */
export function nativeRelayUnavailable(): string {
  const a = loadAddon();
  return typeof a === 'string' ? a : '';
}

function addonPath(): string | undefined {
  // dist/src/listeners/ → the package root, where node-gyp builds at `npm install`.
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const f = path.join(dir, 'build', 'Release', 'relay.node');
    if (fs.existsSync(f)) return f;
    dir = path.dirname(dir);
  }
  return undefined;
}
