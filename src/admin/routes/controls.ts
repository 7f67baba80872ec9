// Operators' suspensions (no delivery to a destination until a time) and overrides (temporary
// shaping limits): list, add, cancel. Kept in the control store (control/types.ts).
import type http from 'node:http';
import { json, jsonObject, readBody, type AdminContext, type Routes } from '../http.js';
import { parseDuration, parseRate } from '../../config/units.js';
import type { Suspension } from '../../control/types.js';
import { firstAnswer } from '../fanout.js';

export function register(r: Routes, ctx: AdminContext): void {
  r.relayRoute('GET', /^\/api\/suspensions$/, (_req, res) => {
    const relay = r.relayOr404(res);
    if (relay) json(res, 200, { suspensions: relay.shaper.suspensions().map(controlView) });
  }, (shards, path, body) => firstAnswer(shards, ctx.token, 'GET', path, body));
  r.relayRoute('POST', /^\/api\/suspensions$/, async (req, res) => {
    const relay = r.relayOr404(res);
    const c = relay && (await readControl(ctx, req, res));
    if (!relay || !c) return;
    const s = await relay.shaper.suspend({ pool: c.pool, destination: c.destination, until: c.until, reason: c.reason, who: c.who });
    ctx.log.warn({ suspension: s.id, pool: s.pool, destination: s.destination, until: new Date(s.until).toISOString(), who: s.who, reason: s.reason }, `suspension ${s.id}: ${s.pool} → ${s.destination} by ${s.who}: ${s.reason}`);
    json(res, 200, { ok: true, suspension: controlView(s) });
  }, (shards, path, body) => firstAnswer(shards, ctx.token, 'POST', path, body));
  r.relayRoute('GET', /^\/api\/overrides$/, (_req, res) => {
    const relay = r.relayOr404(res);
    if (relay) json(res, 200, { overrides: relay.shaper.overrides().map(controlView) });
  }, (shards, path, body) => firstAnswer(shards, ctx.token, 'GET', path, body));
  r.relayRoute('POST', /^\/api\/overrides$/, async (req, res) => {
    const relay = r.relayOr404(res);
    const c = relay && (await readControl(ctx, req, res));
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
  r.relayRoute('DELETE', /^\/api\/overrides\/([A-Za-z0-9]+)$/, async (_req, res, [id]) => {
    const relay = r.relayOr404(res);
    if (!relay) return;
    if (!(await relay.shaper.cancelOverride(id))) return json(res, 404, { error: `no override ${id}` });
    // Mail spaced out under the override's limits is looked at again under the configured ones.
    relay.scheduler.unblockAll();
    ctx.log.info({ override: id }, `override ${id} cancelled`);
    json(res, 200, { ok: true, cancelled: id });
  }, (shards, path, body) => firstAnswer(shards, ctx.token, 'DELETE', path, body));
  r.relayRoute('DELETE', /^\/api\/suspensions\/([A-Za-z0-9]+)$/, async (_req, res, [id]) => {
    const relay = r.relayOr404(res);
    if (!relay) return;
    if (!(await relay.shaper.cancel(id))) return json(res, 404, { error: `no suspension ${id}` });
    relay.scheduler.unblockAll();
    ctx.log.info({ suspension: id }, `suspension ${id} cancelled`);
    json(res, 200, { ok: true, cancelled: id });
  }, (shards, path, body) => firstAnswer(shards, ctx.token, 'DELETE', path, body));
}

/** The fields suspensions and overrides share: what, where, for how long, who and why. */
async function readControl(ctx: AdminContext, req: http.IncomingMessage, res: http.ServerResponse) {
  const body = jsonObject(await readBody(req));
  if (!body) {
    json(res, 400, { error: 'the body must be a JSON object' });
    return null;
  }
  const destination = typeof body.destination === 'string' ? body.destination.trim().toLowerCase() : '';
  const pool = typeof body.pool === 'string' ? body.pool : '';
  if (!/^((\*\.|site:|class:)?[a-z0-9._-]+|tag:[a-z0-9_.-]{1,64}=[\x21-\x7e]{0,256})$/.test(destination)) {
    json(res, 400, { error: 'destination must be a domain, *.domain, site:NAME (an MX site), class:NAME or tag:KEY=VALUE (new mail of it paused)' });
    return null;
  }
  if (pool !== '*' && !ctx.pools().has(pool)) {
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

function controlView<T extends Suspension>(s: T) {
  return { ...s, until: new Date(s.until).toISOString(), created: new Date(s.created).toISOString() };
}
