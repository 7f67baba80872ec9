// The dashboard: its page and its own script and style (no data in them: the page asks for the
// token and calls the API), and the charting library from node_modules.
import { json, PAGE_HEADERS, type AdminContext, type Routes } from '../http.js';
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS, dashboardAsset } from '../dashboard.js';

export function register(r: Routes, ctx: AdminContext): void {
  // The dashboard page itself holds no data: it asks for the token and calls the API.
  r.route('GET', /^\/(dashboard\/?)?$/, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...PAGE_HEADERS });
    res.end(DASHBOARD_HTML);
  }, true);
  r.route('GET', /^\/dashboard\/(dashboard\.js|dashboard\.css)$/, (_req, res, [name]) => {
    const js = name.endsWith('.js');
    res.writeHead(200, { 'content-type': js ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8', 'cache-control': 'no-store', ...PAGE_HEADERS });
    res.end(js ? DASHBOARD_JS : DASHBOARD_CSS);
  }, true);
  // The charting library, from node_modules: a fixed allow-list of two names, no path from the request.
  r.route('GET', /^\/dashboard\/(uplot\.js|uplot\.css)$/, (_req, res, [name]) => {
    const a = dashboardAsset(name);
    if (!a) return json(res, 404, { error: `${name} is not installed (npm install uplot)` });
    res.writeHead(200, { 'content-type': a.type, 'cache-control': 'max-age=3600', ...PAGE_HEADERS });
    res.end(a.body);
  }, true);
}
