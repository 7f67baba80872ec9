// The operator's dashboard: one self-contained page (no build step, no external assets) that
// polls /api/status with the admin token and offers drain / enable per server. Tables are
// filterable and scroll, so 50 servers and 1,000 destinations stay readable.
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>smtplb dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 16px;display:flex;gap:16px;align-items:center}
header h1{font-size:17px;margin:0}header .meta{opacity:.8;font-size:12px}
main{padding:12px 16px;display:grid;grid-template-columns:1fr 1fr;gap:12px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:8px 12px;overflow:hidden}
section.wide{grid-column:1/3}h2{font-size:15px;margin:4px 0 8px}
.scroll{max-height:420px;overflow:auto}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eef0f3;white-space:nowrap}th{position:sticky;top:0;background:#fff}
.up{color:#127a2e;font-weight:600}.down{color:#b3261e;font-weight:600}.drain{color:#a36200;font-weight:600}.disabled{color:#777;font-weight:600}
button{font-size:12px;padding:2px 8px;margin-right:4px;cursor:pointer}input{font-size:13px;padding:3px 6px}
#login{padding:40px;text-align:center}#err{color:#b3261e;margin-left:12px}.num{text-align:right}
</style></head><body>
<header><h1>smtplb</h1><span class="meta" id="host"></span><span class="meta" id="updated"></span><span id="err"></span></header>
<div id="login" hidden><p>Admin token</p><input id="token" type="password" autocomplete="off"> <button id="go">Open</button></div>
<main id="main" hidden>
<section class="wide"><h2>Pools and servers</h2><input id="sf" placeholder="filter servers"><div class="scroll"><table id="servers"></table></div></section>
<section><h2>Queue by destination</h2><div id="qcounts"></div><input id="df" placeholder="filter destinations"><div class="scroll"><table id="dests"></table></div></section>
<section><h2>Last errors</h2><div class="scroll"><table id="errors"></table></div></section>
<section><h2>Throttles and suspensions</h2><div class="scroll"><table id="throttles"></table><table id="susp"></table></div></section>
<section><h2>Health history</h2><div class="scroll"><table id="history"></table></div></section>
</main>
<script>
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
let token = (location.hash.match(/token=([^&]+)/) || [])[1] || sessionStorage.getItem('smtplb-token') || '';
if (location.hash) history.replaceState(null, '', location.pathname);
let last = null, prev = new Map(), timer = null;
async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' } });
  if (r.status === 401) { showLogin('the token was refused'); throw new Error('401'); }
  return r.json();
}
function showLogin(msg) { $('login').hidden = false; $('main').hidden = true; $('err').textContent = msg || ''; clearTimeout(timer); }
function state(s) { if (s.admin === 'drain') return 'drain'; if (s.admin === 'disabled') return 'disabled'; return s.up && !s.ejected_until ? 'up' : 'down'; }
function renderServers(st) {
  const f = $('sf').value.toLowerCase(), now = Date.now();
  let h = '<tr><th>pool</th><th>server</th><th>address</th><th>state</th><th class=num>active</th><th class=num>conn/s</th><th class=num>weight</th><th>warm-up</th><th>last error</th><th></th></tr>';
  for (const p of st.pools) for (const s of p.servers) {
    const key = p.name + '/' + s.name;
    if (f && !key.toLowerCase().includes(f) && !s.address.includes(f)) continue;
    const before = prev.get(key), rate = before ? ((s.connections - before.n) * 1000 / Math.max(1, now - before.t)) : 0;
    prev.set(key, { n: s.connections, t: now });
    const w = s.warmup ? (s.warmup.cap === null ? 'warm' : s.warmup.sent + ' / ' + s.warmup.cap + ' today') : '';
    h += '<tr data-server="' + esc(key) + '"><td>' + esc(p.name) + '</td><td>' + esc(s.name) + (s.backup ? ' (backup)' : '') + '</td><td>' + esc(s.address) +
      '</td><td class="' + state(s) + '" data-testid="state">' + state(s).toUpperCase() + '</td><td class=num>' + esc(s.active) + '</td><td class=num>' + rate.toFixed(1) +
      '</td><td class=num>' + esc(s.weight) + '</td><td>' + esc(w) + '</td><td>' + esc(s.last_error || '') + '</td><td>' +
      '<button data-act="drain" data-pool="' + esc(p.name) + '" data-name="' + esc(s.name) + '">drain</button>' +
      '<button data-act="enable" data-pool="' + esc(p.name) + '" data-name="' + esc(s.name) + '">enable</button></td></tr>';
  }
  $('servers').innerHTML = h;
}
function renderQueue(st) {
  if (!st.queue) { $('qcounts').textContent = 'no relay (mode tcp only)'; $('dests').innerHTML = ''; return; }
  $('qcounts').textContent = Object.entries(st.queue.counts).map(([k, v]) => k + ': ' + v).join(' · ') || 'empty';
  const f = $('df').value.toLowerCase();
  let h = '<tr><th>destination</th><th>pool</th><th class=num>waiting</th><th class=num>oldest</th></tr>';
  for (const d of st.queue.destinations) if (!f || d.destination.includes(f)) h += '<tr><td>' + esc(d.destination) + '</td><td>' + esc(d.pool) + '</td><td class=num>' + d.queued + '</td><td class=num>' + age(d.oldest_seconds) + '</td></tr>';
  $('dests').innerHTML = h;
  $('errors').innerHTML = '<tr><th>when</th><th>server</th><th>reply</th></tr>' + (st.last_errors || []).map((e) => '<tr><td>' + esc(e.at.slice(11, 19)) + '</td><td>' + esc(e.pool + '/' + e.server) + '</td><td>' + esc((e.code ?? '-') + ' ' + e.reply) + '</td></tr>').join('');
  $('throttles').innerHTML = '<tr><th>throttled pair</th><th class=num>factor</th><th class=num>rate/min</th><th>suspended until</th></tr>' + (st.throttles || []).map((t) => '<tr><td>' + esc(t.pool + '/' + t.server + ' → ' + t.destination) + '</td><td class=num>' + t.factor + '</td><td class=num>' + esc(t.rate_per_minute ?? '-') + '</td><td>' + esc(t.suspended_until || '') + '</td></tr>').join('');
  $('susp').innerHTML = '<tr><th>suspension / override</th><th>by</th><th>until</th><th>why</th></tr>' +
    (st.suspensions || []).map((s) => '<tr><td>' + esc(s.pool + ' → ' + s.destination) + ' suspended</td><td>' + esc(s.who) + '</td><td>' + esc(s.until) + '</td><td>' + esc(s.reason) + '</td></tr>').join('') +
    (st.overrides || []).map((o) => '<tr><td>' + esc(o.pool + ' → ' + o.destination + ' ' + [o.rate ? 'rate ' + o.rate : '', o.concurrency ? 'concurrency ' + o.concurrency : ''].filter(Boolean).join(', ')) + '</td><td>' + esc(o.who) + '</td><td>' + esc(o.until) + '</td><td>' + esc(o.reason) + '</td></tr>').join('');
}
function age(s) { return s < 120 ? s + 's' : s < 7200 ? Math.round(s / 60) + 'm' : Math.round(s / 3600) + 'h'; }
async function refresh() {
  try {
    const st = await api('/api/status');
    last = st; $('login').hidden = true; $('main').hidden = false; $('err').textContent = '';
    $('host').textContent = st.hostname; $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    renderServers(st); renderQueue(st);
    $('history').innerHTML = '<tr><th>when</th><th>server</th><th>event</th></tr>' + st.health_history.slice().reverse().map((e) => '<tr><td>' + esc(e.at.slice(11, 19)) + '</td><td>' + esc(e.pool + '/' + e.server) + '</td><td>' + esc(e.event + (e.detail ? ': ' + e.detail : '')) + '</td></tr>').join('');
  } catch (e) { if (e.message !== '401') $('err').textContent = 'cannot reach smtplb: ' + e.message; }
  if ($('login').hidden) timer = setTimeout(refresh, 1000);
}
document.addEventListener('click', async (ev) => {
  const b = ev.target.closest('button[data-act]');
  if (!b) return;
  await api('/api/pools/' + encodeURIComponent(b.dataset.pool) + '/servers/' + encodeURIComponent(b.dataset.name) + '/' + b.dataset.act, { method: 'POST' });
  clearTimeout(timer); refresh();
});
$('go').onclick = () => { token = $('token').value; sessionStorage.setItem('smtplb-token', token); refresh(); };
$('sf').oninput = () => last && renderServers(last);
$('df').oninput = () => last && renderQueue(last);
if (token) { sessionStorage.setItem('smtplb-token', token); refresh(); } else showLogin();
</script></body></html>`;
