// GET /api/throttles: the adaptive backoff state per (server, destination).
import { json, type AdminContext, type Routes } from '../http.js';
import { fanOut, mergeThrottleAnswers } from '../fanout.js';

export function register(r: Routes, ctx: AdminContext): void {
  r.relayRoute('GET', /^\/api\/throttles$/, (_req, res) => {
    const relay = r.relayOr404(res);
    if (relay) json(res, 200, { throttles: relay.shaper.throttles() });
  }, async (shards, path) => mergeThrottleAnswers(await fanOut(shards, ctx.token, 'GET', path)));
}
