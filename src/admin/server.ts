// The admin HTTP listener: /metrics and /healthz for machines, a token-protected JSON API for
// people and the CLI (status, drain / enable / disable / weight of a server).
import http from 'node:http';
import { ClusterUnavailableError } from '../cluster/errors.js';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { Pool } from '../balancing/pool.js';
import type { AdminState } from '../balancing/eligible.js';
import type { Metrics } from './metrics.js';
import type { HostPort } from '../config/units.js';
import type { Relay } from '../runtime/relay.js';
import { parseDuration, parseRate } from '../config/units.js';
import { eligible } from '../balancing/eligible.js';
import { domainOf } from '../routing/route.js';
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS, dashboardAsset } from './dashboard.js';
import { recipientProgress } from './views.js';
import { destinationView, relayReading, type RelayReading, type ShardReader } from './history.js';
import { fanOut, firstAnswer, mergeDestinationAnswers, mergeFlush, mergeQueueList, mergeStatus, mergeThrottleAnswers, ownerAnswer, type Answer, type Shard } from './fanout.js';

export interface AdminContext {
  token?: string;
  metrics: Metrics;
  log: Logger;
  pools(): Map<string, Pool>;
  status(): unknown;
  /** Apply an admin action to a server everywhere (all worker processes). */
  serverAction(pool: string, server: string, action: AdminState | { weight: number }): void;
  relay(): Relay | undefined;
  /** The dashboard's last hour (charts and marks) and destination pages, when this process samples them. */
  history?: { snapshot(): unknown; destination(domain: string): Promise<unknown | null>; attachShards?(read: ShardReader): void };
  /**
   * The cluster primary under `workers: N` with mode: smtp listeners: the live workers' private
   * admin ports (127.0.0.1), by shard. Non-empty: the relay routes are answered by asking
   * every shard and merging (fanout.ts). Empty or absent: this process's own relay answers.
   */
  shards?: () => Shard[];
  /** The delivery log file, for destination pages answered without a sampler (a worker's private admin API). */
  deliveryLog?: () => string | undefined;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, params: string[]) => Promise<void> | void;

/**
 * On every dashboard response: scripts and styles only from the admin server's own files (none
 * inline), the page never framed (clickjacking of drain and flush buttons), types never sniffed,
 * and no Referer leaving with the page's address.
 */
const PAGE_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

function json(res: http.ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
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
    this.route('GET', /^\/api\/status$/, async (_req, res) => {
      const shards = this.shards();
      if (!shards.length) return json(res, 200, ctx.status());
      const a = mergeStatus(ctx.status() as Record<string, unknown>, shards, await fanOut(shards, ctx.token, 'GET', '/api/status'));
      json(res, a.status, a.body);
    });
    this.route('POST', /^\/api\/pools\/([^/]+)\/servers\/([^/]+)\/(drain|enable|disable|weight)$/, async (req, res, [pool, server, action]) => {
      const p = ctx.pools().get(pool);
      const s = p?.find(server);
      if (!p || !s) return json(res, 404, { error: `no server ${server} in pool ${pool}` });
      if (action === 'weight') {
        const body = jsonObject(await readBody(req));
        if (!body) return json(res, 400, { error: 'the body must be a JSON object' });
        const weight = Number(body.weight);
        if (!Number.isInteger(weight) || weight < 0 || weight > 256) return json(res, 400, { error: 'weight must be a whole number 0-256' });
        ctx.serverAction(pool, server, { weight });
      } else {
        ctx.serverAction(pool, server, action === 'enable' ? 'ready' : (action as AdminState));
      }
      ctx.log.info({ pool, server, action }, `admin: ${action} ${pool}/${server}`);
      json(res, 200, { ok: true, pool, server, admin: s.admin, weight: s.weight });
    });
    this.queueRoutes();
    this.shapingRoutes();
    // The dashboard page itself holds no data: it asks for the token and calls the API.
    this.route('GET', /^\/(dashboard\/?)?$/, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...PAGE_HEADERS });
      res.end(DASHBOARD_HTML);
    }, true);
    this.route('GET', /^\/dashboard\/(dashboard\.js|dashboard\.css)$/, (_req, res, [name]) => {
      const js = name.endsWith('.js');
      res.writeHead(200, { 'content-type': js ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8', 'cache-control': 'no-store', ...PAGE_HEADERS });
      res.end(js ? DASHBOARD_JS : DASHBOARD_CSS);
    }, true);
    // The charting library, from node_modules: a fixed allow-list of two names, no path from the request.
    this.route('GET', /^\/dashboard\/(uplot\.js|uplot\.css)$/, (_req, res, [name]) => {
      const a = dashboardAsset(name);
      if (!a) return json(res, 404, { error: `${name} is not installed (npm install uplot)` });
      res.writeHead(200, { 'content-type': a.type, 'cache-control': 'max-age=3600', ...PAGE_HEADERS });
      res.end(a.body);
    }, true);
    // Compact JSON: the charts' columns are long.
    this.route('GET', /^\/api\/history$/, (_req, res) => {
      if (!ctx.history) return json(res, 404, { error: 'no history is sampled in this process' });
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(ctx.history.snapshot()));
    });
    // The relay numbers of a primary's history step, from this process's relay (a worker's shard).
    this.route('GET', /^\/api\/history\/relay$/, async (_req, res) => {
      const relay = this.relayOr404(res);
      if (relay) json(res, 200, await relayReading(relay, ctx.metrics));
    });
    this.route('GET', /^\/api\/destinations\/([^/]+)$/, async (req, res, [domain]) => {
      // A recipient domain: a host name (letters, digits, hyphens; dots between labels of 1-63; at most 253, a trailing dot allowed).
      const name = domain.endsWith('.') ? domain.slice(0, -1) : domain;
      if (name.length > 253 || !name.split('.').every((l) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l))) {
        return json(res, 400, { error: 'not a destination: give a domain name of at most 253 characters (letters, digits, hyphens and dots)' });
      }
      // Under workers: every shard's page of this destination, merged (the same request, forwarded).
      const shards = this.shards();
      if (shards.length) return this.answer(res, mergeDestinationAnswers(await fanOut(shards, ctx.token, 'GET', forwardPath(req))));
      const relay = ctx.relay();
      // A worker's private admin API: its shard's page, without a sampler.
      if (!ctx.history && relay) return json(res, 200, await destinationView(relay, ctx.pools(), name, ctx.deliveryLog?.()));
      if (!ctx.history) return json(res, 404, { error: 'no history is sampled in this process, so there are no destination pages' });
      const v = await ctx.history.destination(name);
      if (!v) return json(res, 404, { error: 'this smtplb has no mode: smtp listener, so no queue or shaping' });
      json(res, 200, v);
    });
    // The primary's charts: the relay numbers come from the shards at each step.
    if (ctx.shards && ctx.history?.attachShards) {
      ctx.history.attachShards(async () => {
        const shards = this.shards();
        if (!shards.length) return null;
        const answers = await fanOut(shards, ctx.token, 'GET', '/api/history/relay');
        return answers.flatMap((a) => (a.ok && a.status === 200 ? [{ shard: a.shard, reading: a.body as RelayReading }] : []));
      });
    }
    this.server = http.createServer((req, res) =>
      this.dispatch(req, res).catch((e: Error) => {
        this.ctx.log.error({ err: e }, 'admin request failed');
        res.destroy();
      }),
    );
    // A client that sends garbage before any request: answered 400 by Node and closed, never thrown.
    this.server.on('clientError', (_e, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  /** The workers' private admin APIs, when this is a primary whose workers hold the queue (else empty). */
  private shards(): Shard[] {
    try {
      return this.ctx.shards?.() ?? [];
    } catch {
      return [];
    }
  }

  private answer(res: http.ServerResponse, a: Answer): void {
    json(res, a.status, a.body);
  }

  /**
   * A relay route: answered by this process's relay, or under workers by the shards through
   * `remote` (given the path and query as received, and the request's body).
   */
  private relayRoute(method: string, re: RegExp, local: Handler, remote: (shards: Shard[], path: string, body: string | undefined) => Promise<Answer>): void {
    this.route(method, re, async (req, res, params) => {
      const shards = this.shards();
      if (!shards.length) return local(req, res, params);
      const body = method === 'GET' ? undefined : await readBody(req);
      this.answer(res, await remote(shards, forwardPath(req), body));
    });
  }

  /** The relay, or a 404 saying there is none (an smtplb with mode: tcp listeners only). */
  private relayOr404(res: http.ServerResponse): Relay | undefined {
    const r = this.ctx.relay();
    if (!r) json(res, 404, { error: 'this smtplb has no mode: smtp listener, so no queue or shaping' });
    return r;
  }

  /** Queue tools (postqueue / postsuper) and route explanation, for the relay. */
  private queueRoutes(): void {
    const ctx = this.ctx;
    const relayOr404 = (res: http.ServerResponse) => this.relayOr404(res);
    this.relayRoute('GET', /^\/api\/queue$/, (req, res) => {
      const relay = relayOr404(res);
      if (!relay) return;
      const q = new URL(req.url ?? '/', 'http://admin').searchParams;
      let olderThanMs: number | undefined;
      if (q.get('older_than')) {
        try {
          olderThanMs = parseDuration(q.get('older_than')!);
        } catch (e) {
          return json(res, 400, { error: (e as Error).message });
        }
      }
      const list = relay.spool.view.list({ domain: q.get('domain') ?? undefined, pool: q.get('pool') ?? undefined, state: q.get('state') ?? undefined, olderThanMs });
      json(res, 200, { messages: list.map((m) => messageView(m, (r) => relay.waitingFor(r))), counts: relay.spool.counts() });
    }, (shards, path) => fanOut(shards, ctx.token, 'GET', path).then((a) => mergeQueueList(a)));
    this.relayRoute('GET', /^\/api\/queue\/([A-Za-z0-9]+)$/, (_req, res, [id]) => {
      const relay = relayOr404(res);
      if (!relay) return;
      const m = relay.spool.message(id);
      if (!m) return json(res, 404, { error: `no message ${id} in the queue` });
      json(res, 200, { ...messageView({ ...m, recipients: relay.spool.recipients(id) }, (r) => relay.waitingFor(r)), history: relay.spool.view.events(id).map((e) => ({ ...e, at: new Date(e.at).toISOString() })) });
    }, async (shards, path) => ownerAnswer(await fanOut(shards, ctx.token, 'GET', path)));
    this.relayRoute('POST', /^\/api\/queue\/flush$/, async (req, res) => {
      const relay = relayOr404(res);
      if (!relay) return;
      const q = new URL(req.url ?? '/', 'http://admin').searchParams;
      const ids = relay.spool.view.list({ domain: q.get('domain') ?? undefined, state: 'queued' }).map((m) => m.id);
      for (const id of ids) await relay.spool.setState(id, ['queued'], 'queued', Date.now(), 'flushed');
      relay.scheduler.wake();
      json(res, 200, { ok: true, flushed: ids.length });
    }, async (shards, path, body) => mergeFlush(await fanOut(shards, ctx.token, 'POST', path, body)));
    this.relayRoute('POST', /^\/api\/queue\/([A-Za-z0-9]+)\/(hold|release|delete|bounce|flush)$/, async (_req, res, [id, action]) => {
      const relay = relayOr404(res);
      if (!relay) return;
      const m = relay.spool.message(id);
      if (!m) return json(res, 404, { error: `no message ${id} in the queue` });
      let changed = 0;
      switch (action) {
        case 'hold':
          changed = await relay.spool.setState(id, ['queued'], 'held', Date.now(), 'held by operator');
          break;
        case 'release':
          changed = await relay.spool.setState(id, ['held'], 'queued', Date.now(), 'released by operator');
          break;
        case 'flush':
          changed = await relay.spool.setState(id, ['queued'], 'queued', Date.now(), 'flushed by operator');
          break;
        case 'delete':
          changed = relay.spool.recipients(id).length;
          await relay.spool.remove(id);
          break;
        case 'bounce': {
          changed = await relay.scheduler.bounceNow(id);
          break;
        }
      }
      relay.scheduler.wake();
      ctx.log.info({ queue_id: id, action }, `admin: queue ${action} ${id}`);
      json(res, 200, { ok: true, id, action, recipients: changed });
    }, async (shards, path, body) => ownerAnswer(await fanOut(shards, ctx.token, 'POST', path, body)));
    this.relayRoute('GET', /^\/api\/route$/, (req, res) => {
      const relay = relayOr404(res);
      if (!relay) return;
      const q = new URL(req.url ?? '/', 'http://admin').searchParams;
      const address = q.get('address') ?? '';
      const domain = domainOf(address);
      if (!domain) return json(res, 400, { error: 'give address=user@domain' });
      const from = q.get('from') ?? undefined;
      const query = { domain, class: q.get('class') ?? undefined, senderDomain: from ? domainOf(from) : undefined, user: q.get('user') ?? undefined, listener: q.get('listener') ?? undefined };
      const choice = relay.route(query);
      if (!choice) return json(res, 200, { address, query, route: null, why: ['no route matches: mail to this address is refused with 550 5.4.4'] });
      const pools = ctx.pools();
      const chain: unknown[] = [];
      let poolName: string | undefined = choice.rule.pool;
      for (let hops = 0; poolName && hops <= pools.size; hops++) {
        const pool = pools.get(poolName);
        if (!pool) break;
        const el = eligible(pool.servers, Date.now(), pool.cfg.slowstart);
        chain.push({
          pool: pool.name,
          balance: pool.cfg.balance,
          status: el.status,
          candidates: el.status === 'ok' ? el.indices.map((i) => pool.servers[i].name) : [],
          servers: pool.servers.map((s) => ({ name: s.name, up: s.health.up, admin: s.admin, backup: s.backup, weight: s.weight, ejected: s.ejection.until > Date.now(), active: s.active })),
        });
        if (el.status !== 'down') break;
        poolName = pool.cfg.fallback;
      }
      json(res, 200, { address, query, route: { index: choice.index, ...choice.rule }, why: choice.why, pools: chain });
    }, (shards, path) => firstAnswer(shards, ctx.token, 'GET', path));
  }

  /** Throttles (adaptive backoff state) and operators' named suspensions. */
  private shapingRoutes(): void {
    const ctx = this.ctx;
    const relayOr404 = (res: http.ServerResponse) => this.relayOr404(res);
    this.relayRoute('GET', /^\/api\/throttles$/, (_req, res) => {
      const relay = relayOr404(res);
      if (relay) json(res, 200, { throttles: relay.shaper.throttles() });
    }, async (shards, path) => mergeThrottleAnswers(await fanOut(shards, ctx.token, 'GET', path)));
    this.relayRoute('GET', /^\/api\/suspensions$/, (_req, res) => {
      const relay = relayOr404(res);
      if (relay) json(res, 200, { suspensions: relay.shaper.suspensions().map(controlView) });
    }, (shards, path, body) => firstAnswer(shards, ctx.token, 'GET', path, body));
    this.relayRoute('POST', /^\/api\/suspensions$/, async (req, res) => {
      const relay = relayOr404(res);
      const c = relay && (await this.readControl(req, res));
      if (!relay || !c) return;
      const s = await relay.shaper.suspend({ pool: c.pool, destination: c.destination, until: c.until, reason: c.reason, who: c.who });
      ctx.log.warn({ suspension: s.id, pool: s.pool, destination: s.destination, until: new Date(s.until).toISOString(), who: s.who, reason: s.reason }, `suspension ${s.id}: ${s.pool} → ${s.destination} by ${s.who}: ${s.reason}`);
      json(res, 200, { ok: true, suspension: controlView(s) });
    }, (shards, path, body) => firstAnswer(shards, ctx.token, 'POST', path, body));
    this.relayRoute('GET', /^\/api\/overrides$/, (_req, res) => {
      const relay = relayOr404(res);
      if (relay) json(res, 200, { overrides: relay.shaper.overrides().map(controlView) });
    }, (shards, path, body) => firstAnswer(shards, ctx.token, 'GET', path, body));
    this.relayRoute('POST', /^\/api\/overrides$/, async (req, res) => {
      const relay = relayOr404(res);
      const c = relay && (await this.readControl(req, res));
      if (!relay || !c) return;
      const concurrency = c.body.concurrency === undefined ? null : Number(c.body.concurrency);
      if (concurrency !== null && (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 10_000)) return json(res, 400, { error: 'concurrency must be a whole number 1-10000' });
      let rate: string | null = null;
      if (c.body.rate !== undefined) {
        try {
          parseRate(String(c.body.rate));
          rate = String(c.body.rate);
        } catch (e) {
          return json(res, 400, { error: `rate: ${(e as Error).message}` });
        }
      }
      if (rate === null && concurrency === null) return json(res, 400, { error: 'give rate, concurrency or both' });
      const o = await relay.shaper.addOverride({ pool: c.pool, destination: c.destination, until: c.until, reason: c.reason, who: c.who, rate, concurrency });
      ctx.log.warn({ override: o.id, pool: o.pool, destination: o.destination, rate, concurrency, until: new Date(o.until).toISOString(), who: o.who, reason: o.reason }, `override ${o.id}: ${o.pool} → ${o.destination} by ${o.who}: ${o.reason}`);
      relay.scheduler.wake();
      json(res, 200, { ok: true, override: controlView(o) });
    }, (shards, path, body) => firstAnswer(shards, ctx.token, 'POST', path, body));
    this.relayRoute('DELETE', /^\/api\/overrides\/([A-Za-z0-9]+)$/, async (_req, res, [id]) => {
      const relay = relayOr404(res);
      if (!relay) return;
      if (!(await relay.shaper.cancelOverride(id))) return json(res, 404, { error: `no override ${id}` });
      // Mail spaced out under the override's limits is looked at again under the configured ones.
      relay.scheduler.unblockAll();
      ctx.log.info({ override: id }, `override ${id} cancelled`);
      json(res, 200, { ok: true, cancelled: id });
    }, (shards, path, body) => firstAnswer(shards, ctx.token, 'DELETE', path, body));
    this.relayRoute('DELETE', /^\/api\/suspensions\/([A-Za-z0-9]+)$/, async (_req, res, [id]) => {
      const relay = relayOr404(res);
      if (!relay) return;
      if (!(await relay.shaper.cancel(id))) return json(res, 404, { error: `no suspension ${id}` });
      relay.scheduler.unblockAll();
      ctx.log.info({ suspension: id }, `suspension ${id} cancelled`);
      json(res, 200, { ok: true, cancelled: id });
    }, (shards, path, body) => firstAnswer(shards, ctx.token, 'DELETE', path, body));
  }

  /** The fields suspensions and overrides share: what, where, for how long, who and why. */
  private async readControl(req: http.IncomingMessage, res: http.ServerResponse) {
    const body = jsonObject(await readBody(req));
    if (!body) {
      json(res, 400, { error: 'the body must be a JSON object' });
      return null;
    }
    const destination = typeof body.destination === 'string' ? body.destination.trim().toLowerCase() : '';
    const pool = typeof body.pool === 'string' ? body.pool : '';
    if (!/^(\*\.)?[a-z0-9.-]+$/.test(destination)) {
      json(res, 400, { error: 'destination must be a domain or *.domain' });
      return null;
    }
    if (pool !== '*' && !this.ctx.pools().has(pool)) {
      json(res, 400, { error: `no pool named "${pool}" (use * for every pool)` });
      return null;
    }
    let ms: number;
    try {
      ms = parseDuration(String(body.for ?? ''));
    } catch (e) {
      json(res, 400, { error: `for: ${(e as Error).message}` });
      return null;
    }
    const reason = typeof body.reason === 'string' && body.reason.trim() ? body.reason.trim().slice(0, 500) : 'no reason given';
    const who = typeof body.who === 'string' && body.who.trim() ? body.who.trim().slice(0, 100) : 'admin API';
    return { body, destination, pool, until: Date.now() + ms, reason, who };
  }

  private route(method: string, re: RegExp, handler: Handler, open = false): void {
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

function messageView(m: import('../spool/spool.js').MessageRow & { recipients: import('../spool/spool.js').RecipientRow[] }, waitingFor: (r: import('../spool/spool.js').RecipientRow) => string | null) {
  return {
    id: m.id,
    created: new Date(m.created).toISOString(),
    age_seconds: Math.round((Date.now() - m.created) / 1000),
    sender: m.sender,
    size: m.size,
    message_id: m.message_id,
    listener: m.listener,
    user: m.user,
    class: m.class,
    client: m.client,
    dsn_of: m.dsn_of,
    recipients: m.recipients.map((r) => ({
      address: r.rcpt,
      domain: r.domain,
      ...recipientProgress(r),
      waiting_for: waitingFor(r),
    })),
  };
}

function controlView<T extends import('../control/types.js').Suspension>(s: T) {
  return { ...s, until: new Date(s.until).toISOString(), created: new Date(s.created).toISOString() };
}

/** The path and query a request was sent to, for forwarding it to a shard as received. */
function forwardPath(req: http.IncomingMessage): string {
  const u = new URL(req.url ?? '/', 'http://admin');
  return `${u.pathname}${u.search}`;
}

/** A request body as a JSON object ('' is {}); null for anything else (bad JSON, null, an array, a number). */
function jsonObject(text: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(text || '{}');
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
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
