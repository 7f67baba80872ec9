// The admin HTTP listener: /metrics and /healthz for machines, a token-protected JSON API for
// people and the CLI, the dashboard. The routes are in routes/*.ts, one module per resource;
// this file dispatches (token, 400/404/405/500/503) and fans relay routes out to workers' shards.
import http from 'node:http';
import { ClusterUnavailableError } from '../cluster/errors.js';
import { timingSafeEqual } from 'node:crypto';
import type { HostPort } from '../config/units.js';
import type { Relay } from '../runtime/relay.js';
import type { RelayReading } from './history.js';
import { fanOut, type Answer, type Shard } from './fanout.js';
import { forwardPath, json, readBody, type AdminContext, type Handler, type Routes } from './http.js';
import { register as controls } from './routes/controls.js';
import { register as dashboard } from './routes/dashboard.js';
import { register as health } from './routes/health.js';
import { register as history } from './routes/history.js';
import { register as queue } from './routes/queue.js';
import { register as routeExplain } from './routes/route-explain.js';
import { register as servers } from './routes/servers.js';
import { register as status } from './routes/status.js';
import { register as throttles } from './routes/throttles.js';
import { register as suppressions } from './routes/suppressions.js';

export type { AdminContext } from './http.js';

export function tokenMatches(expected: string | undefined, header: string | undefined): boolean {
  if (!expected) return true;
  const given = header?.replace(/^Bearer\s+/i, '') ?? '';
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export class AdminServer implements Routes {
  readonly server: http.Server;
  private routes: { method: string; re: RegExp; open?: boolean; handler: Handler }[] = [];

  constructor(private ctx: AdminContext) {
    // Each module adds its routes (routes/*.ts); the order is the order they are matched in.
    for (const register of [health, status, servers, queue, routeExplain, throttles, controls, suppressions, dashboard, history]) register(this, ctx);
    // The primary's charts: the relay numbers come from the shards at each step.
    if (ctx.shards && ctx.history?.attachShards) {
      ctx.history.attachShards(async () => {
        const shards = this.shards();
        if (!shards.length) return null;
        const answers = await fanOut(shards, ctx.token, 'GET', '/api/history/relay');
        return answers.flatMap((a) => (a.ok && a.status === 200 ? [{ shard: a.shard, reading: a.body as RelayReading }] : []));
      });
    }
    this.server = http.createServer((req, res) => {
      // Each connection closes after its answer: a client that keeps connections open would
      // otherwise, now and then, send a request on one the server is closing at its idle
      // timeout and get "socket hang up" (the suite's fetch met it under load). Admin and
      // scrape traffic is a few requests a second; a new connection each costs nothing.
      res.setHeader('Connection', 'close');
      return this.dispatch(req, res).catch((e: Error) => {
        this.ctx.log.error({ err: e }, 'admin request failed');
        res.destroy();
      });
    });
    // A client that sends garbage before any request: answered 400 by Node and closed, never thrown.
    this.server.on('clientError', (_e, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  /** The workers' private admin APIs, when this is a primary whose workers hold the queue (else empty). */
  shards(): Shard[] {
    try {
      return this.ctx.shards?.() ?? [];
    } catch {
      return [];
    }
  }

  answer(res: http.ServerResponse, a: Answer): void {
    json(res, a.status, a.body);
  }

  /**
   * A relay route: answered by this process's relay, or under workers by the shards through
   * `remote` (given the path and query as received, and the request's body).
   */
  relayRoute(method: string, re: RegExp, local: Handler, remote: (shards: Shard[], path: string, body: string | undefined) => Promise<Answer>): void {
    this.route(method, re, async (req, res, params) => {
      const shards = this.shards();
      if (!shards.length) return local(req, res, params);
      const body = method === 'GET' ? undefined : await readBody(req);
      this.answer(res, await remote(shards, forwardPath(req), body));
    });
  }

  /** The relay, or a 404 saying there is none (an smtplb with mode: tcp listeners only). */
  relayOr404(res: http.ServerResponse): Relay | undefined {
    const r = this.ctx.relay();
    if (!r) json(res, 404, { error: 'this smtplb has no mode: smtp listener, so no queue or shaping' });
    return r;
  }

  route(method: string, re: RegExp, handler: Handler, open = false): void {
    this.routes.push({ method, re, handler, open });
  }

  /** Every request ends here, whatever it holds: a malformed one gets 400, a failing handler 500; nothing escapes. */
  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let url: URL;
    let params: (m: RegExpExecArray) => string[];
    try {
      url = new URL(req.url ?? '/', 'http://admin');
      params = (m) => m.slice(1).map(decodeURIComponent);
    } catch {
      return json(res, 400, { error: 'malformed request target' });
    }
    let pathMatched = false;
    for (const r of this.routes) {
      const m = r.re.exec(url.pathname);
      if (!m) continue;
      pathMatched = true;
      if (req.method !== r.method) continue;
      if (!r.open && !tokenMatches(this.ctx.token, req.headers.authorization)) return json(res, 401, { error: 'a valid token is required (Authorization: Bearer TOKEN)' });
      let args: string[];
      try {
        args = params(m);
      } catch {
        return json(res, 400, { error: 'malformed percent-encoding in the path' });
      }
      try {
        await r.handler(req, res, args);
      } catch (e) {
        // A cluster change Redis cannot take now: the operator tries again, nothing half-applied.
        if (e instanceof ClusterUnavailableError) {
          this.ctx.log.warn({ err: e.message }, 'admin change refused: cluster store unreachable');
          if (!res.headersSent) return json(res, 503, { error: e.message });
        }
        this.ctx.log.error({ err: e }, 'admin request failed');
        if (!res.headersSent) json(res, 500, { error: (e as Error).message });
        else res.destroy();
      }
      return;
    }
    if (pathMatched) return json(res, 405, { error: 'method not allowed' });
    json(res, 404, { error: 'not found' });
  }

  listen(addr: HostPort): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      // exclusive: in a cluster worker (its private admin API on port 0), a socket of its own;
      // without it the workers would share one port and each request reach any of them.
      this.server.listen({ port: addr.port, host: addr.host, exclusive: true }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  close(): void {
    this.server.close();
    this.server.closeAllConnections();
  }
}
