// The operator's dashboard: one self-contained page (no build step) that polls /api/status and
// /api/history with the admin token and offers drain / enable per server. Tables are
// filterable and scroll, so 50 servers and 1,000 destinations stay readable. Charts (uPlot,
// served from node_modules by the admin server: two fixed files, nothing from the request)
// show the last hour: outcomes per second, queue depth and oldest age per pool and for the
// largest destinations, with server state changes, throttles and suspensions marked on the
// time axis. #dest=DOMAIN opens a destination's page. Render times are kept in
// window.__smtplbCharts (with the chart data) for tests and for the curious. Page, style sheet and
// script are three responses, so the Content-Security-Policy allows no inline script or style.
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The only files the admin server serves from disk besides the page: name → module path and type. */
const ASSETS: Record<string, { module: string; type: string }> = {
  'uplot.js': { module: 'uplot/dist/uPlot.iife.min.js', type: 'text/javascript; charset=utf-8' },
  'uplot.css': { module: 'uplot/dist/uPlot.min.css', type: 'text/css; charset=utf-8' },
};
const assetCache = new Map<string, { type: string; body: Buffer } | null>();

/** A dashboard asset by its fixed name (uplot.js, uplot.css); undefined for any other name or when uPlot is not installed. */
export function dashboardAsset(name: string): { type: string; body: Buffer } | undefined {
  const a = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined;
  if (!a) return undefined;
  if (!assetCache.has(name)) {
    try {
      assetCache.set(name, { type: a.type, body: fs.readFileSync(require.resolve(a.module)) });
    } catch {
      assetCache.set(name, null);
    }
  }
  return assetCache.get(name) ?? undefined;
}

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>smtplb dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/dashboard/uplot.css">
<link rel="stylesheet" href="/dashboard/dashboard.css"></head><body>
<header><h1>smtplb</h1><span class="meta" id="host"></span><span class="meta" id="updated"></span><span id="err"></span></header>
<div id="login" hidden><p>Admin token</p><input id="token" type="password" autocomplete="off"> <button id="go">Open</button></div>
<main id="main" hidden>
<section class="wide" id="destpage" hidden>
<h2>Destination <span id="dname"></span> <span class="note" id="droute"></span> <a href="#" id="dback">back to the overview</a></h2>
<div class="dgrid">
<div><h3>Queue</h3><table id="dqueue"></table><div id="c-dest" class="chart"></div></div>
<div><h3>Throttle state</h3><div id="dthrottle"></div><h3>Warm-up against the plan</h3><div id="dwarm"></div></div>
</div>
<h3>Last replies <span class="note" id="dsource"></span></h3><div class="scroll short"><table id="dreplies"></table></div>
<h3>Its queue</h3><div class="scroll"><table id="dmsgs"></table></div>
</section>
<section class="wide" id="charts"><h2>Last hour <select id="cpool"><option value="">all pools</option></select><span class="totals" id="ctotals"></span></h2>
<div id="cnote" class="note"></div>
<div class="charts"><div><h3>Outcomes per second</h3><div id="c-rate" class="chart"></div></div><div><h3>Queue depth (recipients)</h3><div id="c-queue" class="chart"></div></div><div><h3>Oldest waiting (seconds)</h3><div id="c-age" class="chart"></div></div><div><h3>Failures per second by reply class (all pools)</h3><div id="c-class" class="chart"></div></div></div>
<div class="legend" id="mlegend"></div>
<div class="scroll short"><table id="marks"></table></div>
</section>
<section class="wide"><h2>Pools and servers</h2><input id="sf" placeholder="filter servers"><div class="scroll"><table id="servers"></table></div></section>
<section><h2>Queue by destination</h2><div id="qcounts"></div><input id="df" placeholder="filter destinations"><div class="scroll"><table id="dests"></table></div></section>
<section><h2>Last errors</h2><div class="scroll"><table id="errors"></table></div></section>
<section><h2>Throttles and suspensions</h2><div class="scroll"><table id="throttles"></table><table id="susp"></table></div></section>
<section><h2>Health history</h2><div class="scroll"><table id="history"></table></div></section>
<section class="wide" id="compl" hidden><h2>Complaint rates, last 24 hours</h2><div class="scroll"><table id="rates"></table></div></section>
<section class="wide" id="gate" hidden><h2>Compliance <span class="note" id="gnote"></span></h2><div class="scroll"><table id="gdomains"></table><table id="gdaily"></table></div></section>
<section class="wide" id="suppr"><h2>Suppression list <span class="note" id="snote"></span></h2><input id="sq" placeholder="an address, or text of the reason"><div class="scroll"><table id="supp"></table></div></section>
<section class="wide" id="cluster" hidden><h2>Cluster <span class="note" id="cstate"></span></h2><div class="scroll"><table id="cnodes"></table><table id="climits"></table></div></section>
</main>
<script src="/dashboard/uplot.js"></script>
<script src="/dashboard/dashboard.js"></script>
</body></html>`;

/** The page's style sheet (served as /dashboard/dashboard.css: the policy allows no inline style). */
export const DASHBOARD_CSS = `body{font:14px system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 16px;display:flex;gap:16px;align-items:center}
header h1{font-size:17px;margin:0}header .meta{opacity:.8;font-size:12px}
main{padding:12px 16px;display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:12px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:8px 12px;overflow:hidden}
section.wide{grid-column:1/3}h2{font-size:15px;margin:4px 0 8px}h3{font-size:13px;margin:6px 0 4px;color:#4a5263}
.scroll{max-height:420px;overflow:auto;contain:content}
#dests,#dests tbody{display:block}#dests tr{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,1.3fr) 72px 72px}
#dests tr+tr{content-visibility:auto;contain-intrinsic-size:auto 23px}#dests td,#dests th{overflow:hidden;text-overflow:ellipsis}#dests tr:first-child{position:sticky;top:0;z-index:1;background:#fff}.scroll.short{max-height:160px}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eef0f3;white-space:nowrap}th{position:sticky;top:0;background:#fff}
.up{color:#127a2e;font-weight:600}.down{color:#b3261e;font-weight:600}.drain{color:#a36200;font-weight:600}.disabled{color:#777;font-weight:600}
button{font-size:12px;padding:2px 8px;margin-right:4px;cursor:pointer}input,select{font-size:13px;padding:3px 6px}
#login{padding:40px;text-align:center}#err{color:#b3261e;margin-left:12px}.num{text-align:right}
.charts{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:10px}.chart{min-height:230px}
.totals{font-size:12px;font-weight:normal;color:#4a5263;margin-left:10px}.totals b{color:#1d2330}
.note{color:#777;font-size:12px}.kind{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:middle}
.legend span{margin-right:12px;font-size:12px}td.wrap{white-space:normal;max-width:520px}
.dgrid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:10px}
.bar{display:inline-block;width:120px;height:8px;background:#eef0f3;border-radius:4px;vertical-align:middle;margin:0 6px}.bar i{display:block;height:8px;background:#2a6fdb;border-radius:4px}
.plan b{background:#2a6fdb;color:#fff;padding:0 3px;border-radius:3px}
a{color:#2a6fdb}
`;

/** The page's script (served as /dashboard/dashboard.js: the policy allows no inline script). */
export const DASHBOARD_JS = `const $ = (id) => document.getElementById(id);
// Colours and widths set through the CSSOM: the page's policy allows no inline style attribute.
const paint = (el) => { for (const e of el.querySelectorAll('[data-bg]')) e.style.background = e.dataset.bg; for (const e of el.querySelectorAll('[data-w]')) e.style.width = e.dataset.w + '%'; };
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const hashToken = location.hash.match(/token=([^&]+)/);
let token = (hashToken || [])[1] || sessionStorage.getItem('smtplb-token') || '';
if (hashToken) history.replaceState(null, '', location.pathname + location.hash.replace(/[#&]?token=[^&]+/, '').replace(/^&/, '#'));
let last = null, prev = new Map(), timer = null, hist = null, histTimer = null, destTimer = null;
const C = window.__smtplbCharts = { history: null, data: null, totals: null, marks: [], plots: {}, renders: [], pool: '', destination: null };
function timing(kind, fetchMs, renderMs, parts) {
  C.renders.push({ kind, at: Date.now(), fetch_ms: +fetchMs.toFixed(2), render_ms: +renderMs.toFixed(2), total_ms: +(fetchMs + renderMs).toFixed(2), parts });
  if (C.renders.length > 200) C.renders.splice(0, C.renders.length - 200);
}
async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' } });
  if (r.status === 401) { showLogin('the token was refused'); throw new Error('401'); }
  return r.json();
}
function showLogin(msg) { $('login').hidden = false; $('main').hidden = true; $('err').textContent = msg || ''; clearTimeout(timer); clearTimeout(histTimer); clearTimeout(destTimer); }
function state(s) { if (s.admin === 'drain') return 'drain'; if (s.admin === 'disabled') return 'disabled'; return s.up && !s.ejected_until ? 'up' : 'down'; }
/** Replace an element's HTML only when it changed. */
function setHTML(el, html) { if (el._html !== html) { el.innerHTML = html; el._html = html; } }
/**
 * A table kept in step with rows of [class, html, attributes] cells: rebuilt when the rows
 * (their keys, in order) change, else only the cells whose content changed are touched, so
 * 1,000 destinations refresh every second without re-parsing the table.
 */
function syncTable(el, head, rows) {
  const sig = rows.map((r) => r.key).join(' '), before = el._rows;
  if (!before || el._sig !== sig) {
    C.rebuilt = (C.rebuilt || 0) + 1;
    el.innerHTML = head + rows.map((r) => '<tr' + (r.attrs || '') + '>' + r.cells.map((c) => '<td' + (c[0] ? ' class="' + c[0] + '"' : '') + (c[2] || '') + '>' + c[1] + '</td>').join('') + '</tr>').join('');
  } else {
    const trs = el.rows;
    for (let i = 0; i < rows.length; i++) {
      const a = rows[i].cells, b = before[i].cells;
      for (let j = 0; j < a.length; j++) if (a[j][0] !== b[j][0] || a[j][1] !== b[j][1]) { const td = trs[i + 1].cells[j], v = a[j][1]; td.className = a[j][0] || ''; if (v.indexOf('<') < 0 && v.indexOf('&') < 0) td.textContent = v; else td.innerHTML = v; }
    }
  }
  el._rows = rows; el._sig = sig; el._html = null;
}
/** The destinations table, the largest one: while its rows stay the same only the numbers that changed are written. */
function renderDests(list, f) {
  const el = $('dests'), rows = f ? list.filter((d) => d.destination.includes(f)) : list;
  const sig = rows.map((d) => d.pool + '|' + d.destination).join(' ');
  const vals = rows.map((d) => [String(d.queued), age(d.oldest_seconds)]);
  if (el._sig !== sig || !el._vals) {
    C.rebuilt = (C.rebuilt || 0) + 1;
    el.innerHTML = '<tr><th>destination</th><th>pool</th><th class=num>waiting</th><th class=num>oldest</th></tr>' +
      rows.map((d, i) => '<tr><td>' + destLink(d.destination) + '</td><td>' + esc(d.pool) + '</td><td class=num>' + vals[i][0] + '</td><td class=num>' + vals[i][1] + '</td></tr>').join('');
  } else {
    const trs = el.rows, before = el._vals;
    for (let i = 0; i < vals.length; i++) {
      if (vals[i][0] !== before[i][0]) trs[i + 1].cells[2].textContent = vals[i][0];
      if (vals[i][1] !== before[i][1]) trs[i + 1].cells[3].textContent = vals[i][1];
    }
  }
  el._sig = sig; el._vals = vals;
}
function renderServers(st) {
  const f = $('sf').value.toLowerCase(), now = Date.now(), rows = [];
  for (const p of st.pools) for (const s of p.servers) {
    const key = p.name + '/' + s.name;
    if (f && !key.toLowerCase().includes(f) && !s.address.includes(f)) continue;
    const before = prev.get(key), rate = before ? ((s.connections - before.n) * 1000 / Math.max(1, now - before.t)) : 0;
    prev.set(key, { n: s.connections, t: now });
    const w = s.warmup ? (s.warmup.cap === null ? 'warm' : s.warmup.sent + ' / ' + s.warmup.cap + ' today') : '';
    rows.push({ key, attrs: ' data-server="' + esc(key) + '"', cells: [['', esc(p.name)], ['', esc(s.name) + (s.backup ? ' (backup)' : '')], ['', esc(s.address)],
      [state(s), state(s).toUpperCase(), ' data-testid="state"'], ['num', esc(s.active)], ['num', rate.toFixed(1)], ['num', esc(s.weight)], ['', esc(w)], ['', esc(s.last_error || '')],
      ['', '<button data-act="drain" data-pool="' + esc(p.name) + '" data-name="' + esc(s.name) + '">drain</button>' +
      '<button data-act="enable" data-pool="' + esc(p.name) + '" data-name="' + esc(s.name) + '">enable</button>']] });
  }
  syncTable($('servers'), '<tr><th>pool</th><th>server</th><th>address</th><th>state</th><th class=num>active</th><th class=num>conn/s</th><th class=num>weight</th><th>warm-up</th><th>last error</th><th></th></tr>', rows);
}
const destLink = (d) => '<a href="#dest=' + esc(encodeURIComponent(d)) + '">' + esc(d) + '</a>';
function renderQueue(st) {
  // Under workers: the queue is the sum of the workers' shards, each listed (a silent one said so).
  const shards = st.shards ? ' · by worker shard: ' + st.shards.map((s) => s.shard + ': ' + (s.reachable ? s.queue : 'NO ANSWER')).join(', ') : '';
  if (!st.queue) { $('qcounts').textContent = st.shards ? 'no worker answered' + shards : 'no relay (mode tcp only)'; $('dests').innerHTML = ''; $('dests')._sig = null; return; }
  $('qcounts').textContent = (Object.entries(st.queue.counts).map(([k, v]) => k + ': ' + v).join(' · ') || 'empty') + shards;
  renderDests(st.queue.destinations, $('df').value.toLowerCase());
  setHTML($('errors'), '<tr><th>when</th><th>server</th><th>reply</th></tr>' + (st.last_errors || []).map((e) => '<tr><td>' + esc(e.at.slice(11, 19)) + '</td><td>' + esc(e.pool + '/' + e.server) + '</td><td>' + esc(reply(e.code, e.reply)) + '</td></tr>').join(''));
  setHTML($('throttles'), '<tr><th>throttled pair</th><th class=num>factor</th><th class=num>rate/min</th><th>suspended until</th></tr>' + (st.throttles || []).map((t) => '<tr><td>' + esc(t.pool + '/' + t.server + ' → ') + destLink(t.destination) + '</td><td class=num>' + t.factor + '</td><td class=num>' + esc(t.rate_per_minute ?? '-') + '</td><td>' + esc(t.suspended_until || '') + '</td></tr>').join(''));
  setHTML($('susp'), '<tr><th>suspension / override</th><th>by</th><th>until</th><th>why</th></tr>' +
    (st.suspensions || []).map((s) => '<tr><td>' + esc(s.pool + ' → ' + s.destination) + ' suspended</td><td>' + esc(s.who) + '</td><td>' + esc(s.until) + '</td><td>' + esc(s.reason) + '</td></tr>').join('') +
    (st.overrides || []).map((o) => '<tr><td>' + esc(o.pool + ' → ' + o.destination + ' ' + [o.rate ? 'rate ' + o.rate : '', o.concurrency ? 'concurrency ' + o.concurrency : ''].filter(Boolean).join(', ')) + '</td><td>' + esc(o.who) + '</td><td>' + esc(o.until) + '</td><td>' + esc(o.reason) + '</td></tr>').join(''));
  // Complaint rates (feedback: set): per sender domain, class and tag; 0.3% is the providers' line.
  $('compl').hidden = !st.complaints;
  // The compliance gate: domains whose bulk mail waits for their records, and today's bulk volume per provider site.
  $('gate').hidden = !st.compliance;
  if (st.compliance) {
    $('gnote').textContent = 'mode ' + st.compliance.mode + ' · classes ' + st.compliance.classes.join(', ');
    setHTML($('gdomains'), '<tr><th>sending domain</th><th>bulk mail</th><th>why</th></tr>' + st.compliance.domains.map((d) => '<tr><td>' + esc(d.domain) + '</td><td class="' + (d.held ? 'down' : '') + '">' + (d.held ? 'WAITS' : 'sent (warn)') + '</td><td class="wrap">' + esc(d.reason) + '</td></tr>').join(''));
    setHTML($('gdaily'), '<tr><th>sending domain → site</th><th class=num>today</th><th>bulk sender (5,000/day)</th></tr>' + st.compliance.daily.map((d) => '<tr><td>' + esc(d.sender_domain + ' → ' + d.site) + '</td><td class=num>' + d.today + '</td><td>' + (d.bulk_sender ? 'yes' : '') + '</td></tr>').join(''));
  }
  if (st.complaints) setHTML($('rates'), '<tr><th>sender domain / class / tag</th><th class=num>delivered</th><th class=num>complaints</th><th class=num>rate</th></tr>' + st.complaints.map((c) => '<tr><td>' + esc(c.kind + ' ' + c.key) + '</td><td class=num>' + c.delivered + '</td><td class=num>' + c.complaints + '</td><td class="num' + (c.rate >= 0.003 ? ' down' : '') + '">' + (c.rate * 100).toFixed(2) + '%</td></tr>').join(''));
}
/** Every node of the cluster (heartbeat, queue, rate) and the limits they share. */
function renderCluster(c) {
  $('cluster').hidden = !c;
  if (!c) return;
  $('cstate').textContent = 'this node ' + c.node + ' · ' + c.redis + ' · ' + (c.state === 'shared' ? 'limits shared' : 'LOCAL SHARE (1/' + c.nodes_live + ') since ' + c.since.slice(11, 19) + ': ' + (c.error || ''));
  const lim = (x) => [x.concurrency != null ? 'concurrency ' + x.concurrency : '', x.rate_per_minute != null ? x.rate_per_minute + '/min' : ''].filter(Boolean).join(', ') || '-';
  setHTML($('cnodes'), '<tr><th>node</th><th>state</th><th class=num>last heartbeat</th><th class=num>queue</th><th class=num>msg/s</th><th>sees down</th></tr>' +
    c.nodes.map((n) => '<tr data-node="' + esc(n.node) + '"><td>' + esc(n.node) + '</td><td class="' + (n.live ? 'up' : 'down') + '">' + (n.live ? (n.shared ? 'live' : 'live, local share') : 'GONE') + '</td><td class=num>' + age(Math.round(n.age_ms / 1000)) + ' ago</td><td class=num>' + esc(n.queue) + '</td><td class=num>' + esc(n.delivery_rate) + '</td><td class="wrap">' + esc(n.down.join(', ')) + '</td></tr>').join(''));
  setHTML($('climits'), '<tr><th>destination</th><th>cluster-wide limit</th><th>in force at this node</th></tr>' +
    c.limits.map((l) => '<tr><td>' + destLink(l.destination) + '</td><td>' + esc(lim(l)) + '</td><td>' + esc(lim(l.in_force)) + '</td></tr>').join(''));
}
/** A reply as the server gave it: its code once (some texts carry it, some do not). */
function reply(code, text) { text = String(text ?? ''); return /^[245][0-9][0-9][ -]/.test(text) ? text : (code ?? '-') + ' ' + text; }
function age(s) { return s == null ? '-' : s < 120 ? s + 's' : s < 7200 ? Math.round(s / 60) + 'm' : Math.round(s / 3600) + 'h'; }
async function refresh() {
  try {
    const t0 = performance.now();
    const st = await api('/api/status');
    const t1 = performance.now();
    last = st; $('login').hidden = true; $('main').hidden = false; $('err').textContent = '';
    $('host').textContent = st.hostname; $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    renderServers(st);
    const t2 = performance.now();
    renderQueue(st);
    const t3 = performance.now();
    renderCluster(st.cluster);
    setHTML($('history'), '<tr><th>when</th><th>server</th><th>event</th></tr>' + st.health_history.slice().reverse().map((e) => '<tr><td>' + esc(e.at.slice(11, 19)) + '</td><td>' + esc(e.pool + '/' + e.server) + '</td><td>' + esc(e.event + (e.detail ? ': ' + e.detail : '')) + '</td></tr>').join(''));
    const t4 = performance.now();
    void document.body.offsetHeight; // the layout belongs to the refresh's cost
    const t5 = performance.now();
    timing('status', t1 - t0, t5 - t1, { servers: +(t2 - t1).toFixed(1), queue: +(t3 - t2).toFixed(1), rest: +(t4 - t3).toFixed(1), layout: +(t5 - t4).toFixed(1), rebuilt: C.rebuilt });
    C.rebuilt = 0;
  } catch (e) { if (e.message !== '401') $('err').textContent = 'cannot reach smtplb: ' + e.message; }
  if ($('login').hidden) timer = setTimeout(refresh, 1000);
}

// ---- charts ----
const COLORS = { delivered: '#127a2e', deferred: '#e07b00', bounced: '#b3261e', no_reply: '#7b3fb0' };
const PALETTE = ['#2a6fdb', '#e07b00', '#127a2e', '#b3261e', '#7b3fb0', '#00838f', '#8d6e63'];
const KINDS = { down: '#b3261e', ejected: '#7a1410', up: '#127a2e', drain: '#a36200', disabled: '#777777', enable: '#4a6fa5', weight: '#4a6fa5', throttle: '#e07b00', 'throttle-end': '#e07b00', suspend: '#7b3fb0', 'suspend-end': '#7b3fb0', override: '#2a6fdb', 'override-end': '#2a6fdb' };
const markColor = (k) => KINDS[k] || '#555555';
let xRange = null;
function sumCol(cols, key, n) {
  const out = new Array(n).fill(null);
  for (const c of cols) { const a = c[key]; for (let i = 0; i < n; i++) if (a[i] != null) out[i] = (out[i] || 0) + a[i]; }
  return out;
}
function maxCol(cols, key, n) {
  const out = new Array(n).fill(null);
  for (const c of cols) { const a = c[key]; for (let i = 0; i < n; i++) if (a[i] != null && (out[i] == null || a[i] > out[i])) out[i] = a[i]; }
  return out;
}
/** The chart data for one pool ('' for all): per-second rates, totals, queue, oldest, the largest destinations. */
function chartData(h, pool) {
  const n = h.t.length, x = h.t.map((t) => t / 1000);
  const cols = pool ? (h.pools[pool] ? [h.pools[pool]] : []) : Object.values(h.pools);
  const rates = {}, totals = {};
  for (const k of ['delivered', 'deferred', 'bounced', 'no_reply']) {
    const c = sumCol(cols, k, n);
    totals[k] = c.reduce((a, v) => a + (v || 0), 0);
    rates[k] = c.map((v, i) => (v == null ? null : Math.round((v * 1000 / Math.max(1, h.dt[i])) * 1000) / 1000));
  }
  const lastOf = (a) => { for (let i = a.length - 1; i >= 0; i--) if (a[i] != null) return a[i]; return 0; };
  const dests = h.destinations.filter((d) => !pool || d.pool === pool)
    .map((d) => ({ d, last: lastOf(d.queued), peak: d.queued.reduce((m, v) => Math.max(m, v || 0), 0) }))
    .sort((a, b) => b.last - a.last || b.peak - a.peak).slice(0, 5).map((e) => e.d);
  const multi = Object.keys(h.pools).length > 1;
  return { x, rates, totals, queued: sumCol(cols, 'queued', n), oldest: maxCol(cols, 'oldest', n), dests: dests.map((d) => ({ label: d.destination + (multi && !pool ? ' (' + d.pool + ')' : ''), queued: d.queued, oldest: d.oldest })) };
}
function marksPlugin() {
  return { hooks: { draw: [(u) => {
    const ctx = u.ctx, b = u.bbox;
    ctx.save();
    ctx.lineWidth = Math.max(1, devicePixelRatio);
    for (const m of C.marks) {
      const x = Math.round(u.valToPos(m.at / 1000, 'x', true));
      if (x < b.left || x > b.left + b.width) continue;
      ctx.strokeStyle = markColor(m.kind);
      ctx.setLineDash(m.kind.endsWith('-end') || m.kind === 'up' || m.kind === 'enable' ? [4 * devicePixelRatio, 3 * devicePixelRatio] : []);
      ctx.beginPath(); ctx.moveTo(x, b.top); ctx.lineTo(x, b.top + b.height); ctx.stroke();
      ctx.fillStyle = markColor(m.kind);
      ctx.beginPath(); ctx.moveTo(x - 4 * devicePixelRatio, b.top); ctx.lineTo(x + 4 * devicePixelRatio, b.top); ctx.lineTo(x, b.top + 6 * devicePixelRatio); ctx.fill();
    }
    ctx.restore();
  }] } };
}
function plot(id, series, data, height) {
  const el = $(id);
  if (!el) return;
  const sig = series.map((s) => s.label + '/' + (s.scale || 'y')).join('|'), w = Math.max(240, el.clientWidth), hgt = height || 200;
  let p = C.plots[id];
  if (p && p.sig !== sig) { p.u.destroy(); p = null; }
  if (!p) {
    const scales = { x: { time: true, range: (u, min, max) => xRange || [min, max] } };
    const axes = [{}, { size: 52 }];
    if (series.some((s) => s.scale === 's')) { scales.s = { auto: true }; axes.push({ scale: 's', side: 1, size: 52, grid: { show: false } }); }
    const u = new uPlot({ width: w, height: hgt, series: [{}].concat(series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, scale: s.scale || 'y', points: { show: false } }))), scales, axes, plugins: [marksPlugin()], legend: { live: true } }, data, el);
    C.plots[id] = p = { u, sig };
  } else {
    if (p.u.width !== w) p.u.setSize({ width: w, height: hgt });
    p.u.setData(data);
  }
}
function drawCharts() {
  const h = hist;
  if (!h) return;
  const pool = $('cpool').value;
  C.pool = pool;
  const names = Object.keys(h.pools).sort();
  const have = [...$('cpool').options].slice(1).map((o) => o.value).join('|');
  if (have !== names.join('|')) $('cpool').innerHTML = '<option value="">all pools</option>' + names.map((n) => '<option' + (n === pool ? ' selected' : '') + ' value="' + esc(n) + '">pool ' + esc(n) + '</option>').join('');
  const d = chartData(h, $('cpool').value);
  C.data = d; C.totals = d.totals;
  C.marks = h.marks.filter((m) => !pool || m.pool === pool || m.pool === '*');
  const firstMark = C.marks.length ? C.marks[0].at / 1000 : Infinity;
  xRange = d.x.length ? [Math.min(d.x[0], firstMark), Math.max(d.x[d.x.length - 1], h.now / 1000)] : null;
  const t = $('ctotals');
  for (const k of ['delivered', 'deferred', 'bounced', 'no_reply']) t.dataset[k.replace('_r', 'R')] = d.totals[k];
  t.innerHTML = 'in the window: <b>' + d.totals.delivered + '</b> delivered · <b>' + d.totals.deferred + '</b> deferred (4xx) · <b>' + d.totals.bounced + '</b> bounced · <b>' + d.totals.no_reply + '</b> without reply';
  $('mlegend').innerHTML = [['down', 'server down'], ['up', 'server up'], ['drain', 'admin change'], ['throttle', 'throttle'], ['suspend', 'suspension'], ['override', 'override']].map(([k, l]) => '<span><i class="kind" data-bg="' + markColor(k) + '"></i>' + l + '</span>').join('');
  paint($('mlegend'));
  $('marks').innerHTML = '<tr><th>when</th><th>mark</th><th>what</th></tr>' + C.marks.slice(-100).reverse().map((m) => '<tr data-kind="' + esc(m.kind) + '"><td>' + esc(new Date(m.at).toLocaleTimeString()) + '</td><td><i class="kind" data-bg="' + markColor(m.kind) + '"></i>' + esc(m.kind) + '</td><td class="wrap">' + esc(m.text) + '</td></tr>').join('');
  paint($('marks'));
  if (!window.uPlot) { $('cnote').textContent = 'charts need the uplot package beside smtplb (npm install); totals and marks are above and below'; return; }
  if (!d.x.length) { $('cnote').textContent = 'collecting: the first sample comes ' + Math.round(h.step_ms / 1000) + ' s after start'; return; }
  $('cnote').textContent = '';
  plot('c-rate', [{ label: 'delivered', color: COLORS.delivered }, { label: 'deferred', color: COLORS.deferred }, { label: 'bounced', color: COLORS.bounced }, { label: 'no reply', color: COLORS.no_reply }], [d.x, d.rates.delivered, d.rates.deferred, d.rates.bounced, d.rates.no_reply]);
  plot('c-queue', [{ label: pool || 'all pools', color: '#1d2330' }].concat(d.dests.map((x, i) => ({ label: x.label, color: PALETTE[i] }))), [d.x, d.queued].concat(d.dests.map((x) => x.queued)));
  plot('c-age', [{ label: pool || 'all pools', color: '#1d2330' }].concat(d.dests.map((x, i) => ({ label: x.label, color: PALETTE[i] }))), [d.x, d.oldest].concat(d.dests.map((x) => x.oldest)));
  classChart(h, d.x);
  if (C.destination) destChart(C.destination);
  C.drawn = (C.drawn || 0) + 1;
}
/** Failed outcomes by reply class, per second: the classes seen in the window, largest first. */
function classChart(h, x) {
  const cls = h.classes || {};
  const total = (k) => cls[k].reduce((a, v) => a + (v || 0), 0);
  const names = Object.keys(cls).filter((k) => total(k) > 0).sort((a, b) => total(b) - total(a)).slice(0, PALETTE.length);
  C.classes = names.map((k) => ({ label: k, total: total(k) }));
  if (!names.length) return;
  const rate = (k) => cls[k].map((v, i) => (v == null ? null : Math.round((v * 1000 / Math.max(1, h.dt[i])) * 1000) / 1000));
  plot('c-class', names.map((k, i) => ({ label: k, color: PALETTE[i] })), [x].concat(names.map(rate)));
}
// ---- the suppression list: the first 100 entries, or those of an address or reason ----
let suppTimer = null;
async function refreshSuppressions() {
  clearTimeout(suppTimer);
  const q = $('sq').value.trim();
  const query = !q ? '' : q.indexOf('@') > 0 ? '&address=' + encodeURIComponent(q) : '&reason=' + encodeURIComponent(q);
  try {
    const r = await api('/api/suppressions?limit=100' + query);
    if (r.error) { $('snote').textContent = r.error; setHTML($('supp'), ''); }
    else {
      $('snote').textContent = r.suppressions.length ? (r.next ? 'the first 100' : r.suppressions.length + ' shown') + (q ? ' for "' + q + '"' : '') : 'none' + (q ? ' for "' + q + '"' : '');
      setHTML($('supp'), '<tr><th>address</th><th>scope</th><th>source</th><th>class</th><th>since</th><th>until</th><th>reason</th></tr>' + r.suppressions.map((e) => '<tr><td>' + esc(e.address) + '</td><td>' + esc(e.scope) + '</td><td>' + esc(e.source) + '</td><td>' + esc(e.class || '') + '</td><td>' + esc(e.created.slice(0, 19).replace('T', ' ')) + '</td><td>' + esc(e.expires ? e.expires.slice(0, 19).replace('T', ' ') : '') + '</td><td class="wrap">' + esc(e.reason) + '</td></tr>').join(''));
    }
  } catch (e) { if (e.message !== '401') $('snote').textContent = 'suppression list: ' + e.message; }
  if ($('login').hidden) suppTimer = setTimeout(refreshSuppressions, 10000);
}
$('sq').addEventListener('input', () => { clearTimeout(suppTimer); suppTimer = setTimeout(refreshSuppressions, 300); });
async function refreshHistory() {
  clearTimeout(histTimer);
  try {
    const t0 = performance.now();
    const h = await api('/api/history');
    const t1 = performance.now();
    if (h && h.t) { hist = C.history = h; drawCharts(); void document.body.offsetHeight; timing('history', t1 - t0, performance.now() - t1); }
    else $('cnote').textContent = (h && h.error) || 'no history';
  } catch (e) { if (e.message !== '401') $('cnote').textContent = 'history: ' + e.message; }
  if ($('login').hidden) histTimer = setTimeout(refreshHistory, Math.max(1000, Math.min(10000, (hist && hist.step_ms) || 10000)));
}

// ---- a destination's page ----
function destChart(name) {
  if (!window.uPlot || !hist || !hist.t.length) return;
  const series = [], data = [hist.t.map((t) => t / 1000)];
  hist.destinations.filter((d) => d.destination === name).forEach((d, i) => {
    series.push({ label: 'queued (' + d.pool + ')', color: PALETTE[i % PALETTE.length] }); data.push(d.queued);
    series.push({ label: 'oldest s (' + d.pool + ')', color: PALETTE[(i + 3) % PALETTE.length], scale: 's' }); data.push(d.oldest);
  });
  if (!series.length) { if (C.plots['c-dest']) { C.plots['c-dest'].u.destroy(); delete C.plots['c-dest']; } $('c-dest').innerHTML = '<p class="note">not among the ' + 20 + ' largest queues in the last hour: no chart</p>'; return; }
  if (!C.plots['c-dest']) $('c-dest').innerHTML = '';
  plot('c-dest', series, data, 170);
}
function renderDest(v) {
  $('dname').textContent = v.destination;
  $('droute').textContent = v.routed_pool ? 'routed to pool ' + v.routed_pool : 'no route takes it';
  $('dqueue').innerHTML = '<tr><th>pool</th><th class=num>waiting</th><th class=num>held</th><th class=num>failed</th><th class=num>oldest</th><th>waiting for</th></tr>' +
    v.queue.map((q) => '<tr><td>' + esc(q.pool) + '</td><td class=num>' + q.queued + '</td><td class=num>' + q.held + '</td><td class=num>' + q.failed + '</td><td class=num>' + age(q.oldest_seconds) + '</td><td class="wrap">' + esc(q.waiting_for || '') + '</td></tr>').join('');
  const thr = v.throttles.map((t) => '<tr><td>' + esc(t.pool + '/' + t.server) + '</td><td class=num>' + Math.round(t.factor * 100) + '%</td><td class=num>' + esc(t.inflight) + (t.concurrency ? ' / ' + t.concurrency : '') + '</td><td class=num>' + esc(t.rate_per_minute ?? '-') + (t.configured_rate_per_minute ? ' of ' + t.configured_rate_per_minute : '') + '</td><td>' + esc(t.suspended_until || '') + '</td><td class="wrap">' + esc(t.last_throttle_reply || '') + '</td></tr>').join('');
  const ctl = v.suspensions.map((s) => '<li>suspended for ' + esc(s.pool) + ' until ' + esc(s.until) + ' by ' + esc(s.who) + ': ' + esc(s.reason) + '</li>').join('') +
    v.overrides.map((o) => '<li>override for ' + esc(o.pool) + ': ' + esc([o.rate ? 'rate ' + o.rate : '', o.concurrency ? 'concurrency ' + o.concurrency : ''].filter(Boolean).join(', ')) + ' until ' + esc(o.until) + ' by ' + esc(o.who) + ': ' + esc(o.reason) + '</li>').join('');
  $('dthrottle').innerHTML = (thr ? '<table><tr><th>server</th><th class=num>speed</th><th class=num>in flight</th><th class=num>rate/min</th><th>suspended until</th><th>last throttle reply</th></tr>' + thr + '</table>' : '<p class="note" data-testid="not-throttled">no server is throttled for this destination: full configured speed</p>') + (ctl ? '<ul>' + ctl + '</ul>' : '');
  $('dwarm').innerHTML = v.warmup.length ? v.warmup.map((w) => {
    const pct = w.cap ? Math.min(100, Math.round(w.sent * 100 / w.cap)) : 100;
    const plan = w.schedule.map((c, i) => (i === w.day ? '<b>' + c + '</b>' : String(c))).join(' · ');
    const what = w.state === 'warm' ? 'warm (the ' + w.plan_days + '-day plan is over)' : w.state === 'not started' ? 'plan not started: cap 0' : 'day ' + (w.day + 1) + ' of ' + w.plan_days + ': ' + w.sent + ' / ' + w.cap + ' today, ' + w.remaining + ' left (' + w.overflow + ' when reached)';
    return '<div>' + esc(w.pool + '/' + w.server) + ' <span class="bar"><i data-w="' + pct + '"></i></span>' + esc(what) + '<div class="note plan">plan: ' + plan + '</div></div>';
  }).join('') : '<p class="note">no server of ' + esc(v.queue.map((q) => q.pool).join(', ') || 'its pool') + ' has a warm-up plan</p>';
  paint($('dwarm'));
  $('dsource').textContent = v.replies_source === 'delivery_log' ? '(from the delivery log)' : '(from the queue: set delivery_log.file for delivered mail too)';
  $('dreplies').innerHTML = '<tr><th>when</th><th>event</th><th>server</th><th>recipient / queue id</th><th>reply</th></tr>' + v.replies.map((r) => '<tr><td>' + esc((r.at || '').slice(11, 19)) + '</td><td>' + esc(r.event) + '</td><td>' + esc(r.pool + '/' + (r.server || '-')) + '</td><td>' + esc(r.recipient || r.queue_id || '') + '</td><td class="wrap">' + esc(reply(r.code, r.reply)) + '</td></tr>').join('');
  $('dmsgs').innerHTML = '<tr><th>queue id</th><th>recipient</th><th>state</th><th class=num>age</th><th class=num>attempts</th><th>next attempt</th><th>waiting for</th><th>last reply</th></tr>' +
    v.messages.map((m) => '<tr><td>' + esc(m.id) + '</td><td>' + esc(m.recipient) + '</td><td>' + esc(m.state) + '</td><td class=num>' + age(m.age_seconds) + '</td><td class=num>' + m.attempts + '</td><td>' + esc((m.next_attempt || '').slice(11, 19)) + '</td><td class="wrap">' + esc(m.waiting_for || '') + '</td><td class="wrap">' + esc(m.last_reply ? (m.last_server ? m.last_server + ': ' : '') + m.last_reply : '') + '</td></tr>').join('');
  destChart(v.destination);
}
async function refreshDest() {
  clearTimeout(destTimer);
  const name = C.destination;
  if (!name) return;
  try {
    const v = await api('/api/destinations/' + encodeURIComponent(name));
    if (C.destination !== name) return;
    if (v.error) { $('dname').textContent = name; $('dqueue').innerHTML = '<tr><td>' + esc(v.error) + '</td></tr>'; }
    else renderDest(v);
  } catch (e) { if (e.message !== '401') $('err').textContent = 'destination: ' + e.message; }
  if ($('login').hidden && C.destination === name) destTimer = setTimeout(refreshDest, 2000);
}
function route() {
  const m = location.hash.match(/^#dest=([^&]+)/);
  // A hand-typed or cut link (#dest=%E0%A4) is taken as written rather than breaking the page.
  let d = null;
  if (m) { try { d = decodeURIComponent(m[1]); } catch { d = m[1]; } }
  C.destination = d ? d.toLowerCase() : null;
  $('destpage').hidden = !C.destination;
  if (C.destination) { $('dname').textContent = C.destination; $('droute').textContent = ''; refreshDest(); window.scrollTo(0, 0); }
  else clearTimeout(destTimer);
}
addEventListener('hashchange', route);
addEventListener('resize', () => { clearTimeout(C.resizing); C.resizing = setTimeout(drawCharts, 150); });
document.addEventListener('click', async (ev) => {
  const b = ev.target.closest('button[data-act]');
  if (!b) return;
  await api('/api/pools/' + encodeURIComponent(b.dataset.pool) + '/servers/' + encodeURIComponent(b.dataset.name) + '/' + b.dataset.act, { method: 'POST' });
  clearTimeout(timer); refresh();
});
$('go').onclick = () => { token = $('token').value; sessionStorage.setItem('smtplb-token', token); refresh(); refreshHistory(); refreshSuppressions(); route(); };
$('sf').oninput = () => last && renderServers(last);
$('df').oninput = () => last && renderQueue(last);
$('cpool').onchange = drawCharts;
$('dback').onclick = (ev) => { ev.preventDefault(); history.pushState(null, '', location.pathname); route(); };
if (token) { sessionStorage.setItem('smtplb-token', token); refresh(); refreshHistory(); refreshSuppressions(); route(); } else showLogin();
`;
