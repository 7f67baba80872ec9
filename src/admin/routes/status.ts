// GET /api/status: the node's status; under workers the relay's part merged over the shards.
import { json, type AdminContext, type Routes } from '../http.js';
import { fanOut, mergeStatus } from '../fanout.js';

export function register(r: Routes, ctx: AdminContext): void {
  r.route('GET', /^\/api\/status$/, async (_req, res) => {
    const shards = r.shards();
    if (!shards.length) return json(res, 200, ctx.status());
    const a = mergeStatus(ctx.status() as Record<string, unknown>, shards, await fanOut(shards, ctx.token, 'GET', '/api/status'));
    json(res, a.status, a.body);
  });
}
