// The admin API and metrics as tests read them, and the raw socket some tests speak through:
// one copy for every test file.
import type { GatewayStatus } from '../../src/admin/api-types.js';
import net from 'node:net';
import assert from 'node:assert/strict';
import { session, waitFor, type Smtplb } from './peers.js';

/** The admin token the test configs use. */
export const TOKEN = 'test-token-1';

/** GET (or another method with `init`) on the admin API with the token; the JSON answer. */
export async function api<T>(admin: number, path: string, init: RequestInit = {}): Promise<T> {
  const r = await fetch(`http://127.0.0.1:${admin}${path}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) } });
  return (await r.json()) as T;
}

/** The sum of a metric's series whose labels include `labels` (0 when there is none), from /metrics. */
export async function metric(admin: number, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!(line.startsWith(`${name}{`) || line.startsWith(`${name} `))) continue;
    const labelText = line.startsWith(`${name}{`) ? line.slice(name.length, line.lastIndexOf('}') + 1) : '';
    if (want.every((w) => labelText.includes(w))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** The API's contract (src/admin/api-types.ts). */
type IdleStatus = GatewayStatus;

/**
 * Wait until the relay has nothing left to do, as its admin API (`GET /api/status`) says: no
 * recipient queued, held or failed in the queue, and no delivery in flight (every server of
 * every pool at 0 active; a delivery gives its server back before its outcome leaves the
 * queue). From then on nothing more can leave the relay, so a count at a sink is final: this
 * replaces "sleep, then check nothing more arrived" where the mail had to leave the queue.
 */
export async function queueIdle(admin: number, timeoutMs = 15_000, token = TOKEN): Promise<IdleStatus> {
  let last: IdleStatus | undefined;
  try {
    return await waitFor('the queue empty and no delivery in flight', async () => {
      // A request that fails (a kept-alive connection the server has just closed) is asked again.
      const r = await fetch(`http://127.0.0.1:${admin}/api/status`, { headers: { authorization: `Bearer ${token}` } }).catch(() => null);
      if (!r) return null;
      last = (await r.json()) as IdleStatus;
      const open = Object.values(last.queue?.counts ?? {}).reduce((n, x) => n + x, 0);
      const active = last.pools.reduce((n, p) => n + p.servers.reduce((m, s) => m + (s.active ?? 0), 0), 0);
      return open === 0 && active === 0 ? last : null;
    }, timeoutMs);
  } catch (e) {
    throw new Error(`${(e as Error).message}: ${JSON.stringify({ counts: last?.queue?.counts, active: last?.pools.map((p) => [p.name, p.servers.map((s) => s.active)]) })}`);
  }
}

/** SIGHUP, then wait until the reload is counted: resolves with its result (applied or refused). */
export async function reload(lb: Smtplb, admin: number): Promise<'applied' | 'refused'> {
  const before = { applied: await metric(admin, 'smtplb_config_reloads_total', { result: 'applied' }), refused: await metric(admin, 'smtplb_config_reloads_total', { result: 'refused' }) };
  lb.reload();
  return waitFor('the reload counted', async () => {
    if ((await metric(admin, 'smtplb_config_reloads_total', { result: 'applied' })) > before.applied) return 'applied' as const;
    if ((await metric(admin, 'smtplb_config_reloads_total', { result: 'refused' })) > before.refused) return 'refused' as const;
    return null;
  }, 10_000);
}

/** Write `bytes` on a new connection; what the server said until it closed (or `ms` passed). */
export function raw(port: number, bytes: string, ms = 2000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let out = '';
    s.on('data', (c) => (out += c));
    s.on('error', () => resolve(out));
    s.on('close', () => resolve(out));
    s.write(bytes);
    setTimeout(() => s.destroy(), ms);
  });
}

/**
 * 1,000 destinations waiting in the queue (d0.wait … d999.wait, one message of 100 recipients
 * to each hundred), held by a suspension of *.wait on `pool`: the dashboard tests' big queue.
 */
export async function queueThousandDestinations(port: number, admin: number, pool: string, token = TOKEN): Promise<void> {
  const r = await fetch(`http://127.0.0.1:${admin}/api/suspensions`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ destination: '*.wait', pool, for: '1h', reason: '1,000 destinations waiting' }) });
  assert.equal(r.status, 200, await r.text());
  const s = session(port);
  await s.reply();
  await s.send('EHLO c.test');
  for (let m = 0; m < 10; m++) {
    await s.send('MAIL FROM:<a@c.test>');
    for (let i = 0; i < 100; i++) await s.send(`RCPT TO:<u@d${m * 100 + i}.wait>`);
    await s.send('DATA');
    assert.match(await s.send('Subject: many\r\n\r\nx\r\n.'), /^250/);
  }
  s.close();
}
