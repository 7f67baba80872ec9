// The dashboard's data: the last hour's samples and marks, the relay numbers of one step (a
// worker's shard, asked by its primary), and one destination's page.
import { forwardPath, json, type AdminContext, type Routes } from '../http.js';
import { destinationView, relayReading } from '../history.js';
import { fanOut, mergeDestinationAnswers } from '../fanout.js';

export function register(r: Routes, ctx: AdminContext): void {
  // Compact JSON: the charts' columns are long.
  r.route('GET', /^\/api\/history$/, (_req, res) => {
    if (!ctx.history) return json(res, 404, { error: 'no history is sampled in this process' });
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(ctx.history.snapshot()));
  });
  // The relay numbers of a primary's history step, from this process's relay (a worker's shard).
  r.route('GET', /^\/api\/history\/relay$/, async (_req, res) => {
    const relay = r.relayOr404(res);
    if (relay) json(res, 200, await relayReading(relay, ctx.metrics));
  });
  r.route('GET', /^\/api\/destinations\/([^/]+)$/, async (req, res, [domain]) => {
    // A recipient domain: a host name (letters, digits, hyphens; dots between labels of 1-63; at most 253, a trailing dot allowed).
    const name = domain.endsWith('.') ? domain.slice(0, -1) : domain;
    if (name.length > 253 || !name.split('.').every((l) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l))) {
      return json(res, 400, { error: 'not a destination: give a domain name of at most 253 characters (letters, digits, hyphens and dots)' });
    }
    // Under workers: every shard's page of this destination, merged (the same request, forwarded).
    const shards = r.shards();
    if (shards.length) return r.answer(res, mergeDestinationAnswers(await fanOut(shards, ctx.token, 'GET', forwardPath(req))));
    const relay = ctx.relay();
    // A worker's private admin API: its shard's page, without a sampler.
    if (!ctx.history && relay) return json(res, 200, await destinationView(relay, ctx.pools(), name, ctx.deliveryLog?.()));
    if (!ctx.history) return json(res, 404, { error: 'no history is sampled in this process, so there are no destination pages' });
    const v = await ctx.history.destination(name);
    if (!v) return json(res, 404, { error: 'this smtplb has no mode: smtp listener, so no queue or shaping' });
    json(res, 200, v);
  });
}
