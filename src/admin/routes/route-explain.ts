// GET /api/route?address=...: which route and pools a recipient would take now, and why
// (`smtplb route explain`).
import { json, type AdminContext, type Routes } from '../http.js';
import { eligible } from '../../balancing/eligible.js';
import { domainOf } from '../../routing/route.js';
import { firstAnswer } from '../fanout.js';

export function register(r: Routes, ctx: AdminContext): void {
  r.relayRoute('GET', /^\/api\/route$/, async (req, res) => {
    const relay = r.relayOr404(res);
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
      // The MX site (looked up now when the pool counts limits per site) and the key its limits use.
      const site = await relay.sites.resolve(pool, domain);
      chain.push({
        site: site.site,
        shaping_key: site.key,
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
