// POST /api/pools/<pool>/servers/<server>/(drain|enable|disable|weight): an operator's change to
// one server, applied by every worker.
import { json, jsonObject, readBody, type AdminContext, type Routes } from '../http.js';
import type { AdminState } from '../../balancing/eligible.js';

export function register(r: Routes, ctx: AdminContext): void {
  r.route('POST', /^\/api\/pools\/([^/]+)\/servers\/([^/]+)\/(drain|enable|disable|weight)$/, async (req, res, [pool, server, action]) => {
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
}
