// The admin HTTP listener: /metrics and /healthz for machines, a token-protected JSON API for
// people and the CLI (status, drain / enable / disable / weight of a server).
import http from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { Pool } from '../balancing/pool.js';
import type { AdminState } from '../balancing/eligible.js';
import type { Metrics } from './metrics.js';
import type { HostPort } from '../config/units.js';

export interface AdminContext {
  token?: string;
  metrics: Metrics;
  log: Logger;
  pools(): Map<string, Pool>;
  status(): unknown;
  /** Apply an admin action to a server everywhere (all worker processes). */
  serverAction(pool: string, server: string, action: AdminState | { weight: number }): void;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, params: string[]) => Promise<void> | void;

function json(res: http.ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(text);
}

export function tokenMatches(expected: string | undefined, header: string | undefined): boolean {
  if (!expected) return true;
  const given = header?.replace(/^Bearer\s+/i, '') ?? '';
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export class AdminServer {
  readonly server: http.Server;
  private routes: { method: string; re: RegExp; open?: boolean; handler: Handler }[] = [];

  constructor(private ctx: AdminContext) {
    this.route('GET', /^\/metrics$/, async (_req, res) => {
      const body = await ctx.metrics.text();
      res.writeHead(200, { 'content-type': ctx.metrics.registry.contentType });
      res.end(body);
    }, true);
    this.route('GET', /^\/healthz$/, (_req, res) => json(res, 200, { ok: true }), true);
    this.route('GET', /^\/readyz$/, (_req, res) => {
      const anyUp = [...ctx.pools().values()].some((p) => p.servers.some((s) => s.health.up));
      json(res, anyUp ? 200 : 503, { ready: anyUp });
    }, true);
    this.route('GET', /^\/api\/status$/, (_req, res) => json(res, 200, ctx.status()));
    this.route('POST', /^\/api\/pools\/([^/]+)\/servers\/([^/]+)\/(drain|enable|disable|weight)$/, async (req, res, [pool, server, action]) => {
      const p = ctx.pools().get(pool);
      const s = p?.find(server);
      if (!p || !s) return json(res, 404, { error: `no server ${server} in pool ${pool}` });
      if (action === 'weight') {
        const body = await readBody(req);
        const weight = Number((JSON.parse(body || '{}') as { weight?: unknown }).weight);
        if (!Number.isInteger(weight) || weight < 0 || weight > 256) return json(res, 400, { error: 'weight must be a whole number 0-256' });
        ctx.serverAction(pool, server, { weight });
      } else {
        ctx.serverAction(pool, server, action === 'enable' ? 'ready' : (action as AdminState));
      }
      ctx.log.info({ pool, server, action }, `admin: ${action} ${pool}/${server}`);
      json(res, 200, { ok: true, pool, server, admin: s.admin, weight: s.weight });
    });
    this.server = http.createServer((req, res) => void this.dispatch(req, res));
  }

  private route(method: string, re: RegExp, handler: Handler, open = false): void {
    this.routes.push({ method, re, handler, open });
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    for (const r of this.routes) {
      const m = r.re.exec(url.pathname);
      if (!m) continue;
      if (req.method !== r.method) return json(res, 405, { error: 'method not allowed' });
      if (!r.open && !tokenMatches(this.ctx.token, req.headers.authorization)) return json(res, 401, { error: 'a valid token is required (Authorization: Bearer TOKEN)' });
      try {
        await r.handler(req, res, m.slice(1).map(decodeURIComponent));
      } catch (e) {
        this.ctx.log.error({ err: e }, 'admin request failed');
        if (!res.headersSent) json(res, 500, { error: (e as Error).message });
      }
      return;
    }
    json(res, 404, { error: 'not found' });
  }

  listen(addr: HostPort): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(addr.port, addr.host, () => {
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

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
      if (body.length > 65536) req.destroy(new Error('body too large'));
    });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}
