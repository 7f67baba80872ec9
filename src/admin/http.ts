// The admin server's HTTP pieces, shared by its route modules (routes/*.ts): JSON answers, request
// bodies, the dashboard's security headers, and the registry each module adds its routes to.
import type http from 'node:http';
import type { Relay } from '../runtime/relay.js';
import type { Logger } from 'pino';
import type { AdminState } from '../balancing/eligible.js';
import type { Pool } from '../balancing/pool.js';
import type { Answer, Shard } from './fanout.js';
import type { ShardReader } from './history.js';
import type { Metrics } from './metrics.js';
import type { SuppressionList } from '../suppression/list.js';

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
  /** The node's suppression list (shared by all its processes), when it has a relay. */
  suppressions?: () => SuppressionList | undefined;
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, params: string[]) => Promise<void> | void;

/** What a route module registers with (server.ts AdminServer). */
export interface Routes {
  /** A route; `open`: no token needed (metrics, health, the dashboard's files). */
  route(method: string, re: RegExp, handler: Handler, open?: boolean): void;
  /**
   * A relay route: answered by this process's relay, or under workers by the shards through
   * `remote` (given the path and query as received, and the request's body).
   */
  relayRoute(method: string, re: RegExp, local: Handler, remote: (shards: Shard[], path: string, body: string | undefined) => Promise<Answer>): void;
  /** The workers' private admin APIs, when this is a primary whose workers hold the queue (else empty). */
  shards(): Shard[];
  /** The relay, or a 404 saying there is none (an smtplb with mode: tcp listeners only). */
  relayOr404(res: http.ServerResponse): Relay | undefined;
  answer(res: http.ServerResponse, a: Answer): void;
}

/**
 * On every dashboard response: scripts and styles only from the admin server's own files (none
 * inline), the page never framed (clickjacking of drain and flush buttons), types never sniffed,
 * and no Referer leaving with the page's address.
 */
export const PAGE_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export function json(res: http.ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(text);
}

/** The path and query a request was sent to, for forwarding it to a shard as received. */
export function forwardPath(req: http.IncomingMessage): string {
  const u = new URL(req.url ?? '/', 'http://admin');
  return `${u.pathname}${u.search}`;
}

/** A request body as a JSON object ('' is {}); null for anything else (bad JSON, null, an array, a number). */
export function jsonObject(text: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(text || '{}');
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export function readBody(req: http.IncomingMessage): Promise<string> {
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
