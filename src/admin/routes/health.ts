// /metrics, /healthz and /readyz: for machines, no token.
import { json, type AdminContext, type Routes } from '../http.js';

export function register(r: Routes, ctx: AdminContext): void {
  r.route('GET', /^\/metrics$/, async (_req, res) => {
    const body = await ctx.metrics.text();
    res.writeHead(200, { 'content-type': ctx.metrics.registry.contentType });
    res.end(body);
  }, true);
  r.route('GET', /^\/healthz$/, (_req, res) => json(res, 200, { ok: true }), true);
  r.route('GET', /^\/readyz$/, (_req, res) => {
    const anyUp = [...ctx.pools().values()].some((p) => p.servers.some((s) => s.health.up));
    json(res, anyUp ? 200 : 503, { ready: anyUp });
  }, true);
}
