// Delivers one message to some recipients through a pool: tries servers one after another
// (bounded by the pool's `retries`) until every recipient has a final answer or no server is
// left. A connect failure, a 421, or a 4xx for the whole message moves on to the next server
// at once; per-recipient 4xx are tried on the next server too. Permanent answers are final.
import type { PoolSet } from '../balancing/pool.js';
import { openUpstream, sendOn, SmtpError, type UpstreamCache } from './upstream.js';

export type OutcomeKind = 'delivered' | 'deferred' | 'failed';

export interface RcptOutcome {
  rcpt: string;
  kind: OutcomeKind;
  code: number | null;
  text: string;
  server: string | null;
}

export interface Attempt {
  at: number;
  server: string;
  rcpts: string[];
  code: number | null;
  text: string;
  ms: number;
}

export interface DeliveryRequest {
  pool: string;
  sender: string;
  recipients: string[];
  body: Buffer;
}

/** 2xx delivered, 5xx failed, anything else (4xx, no answer) deferred. */
export function classify(code: number | null): OutcomeKind {
  if (code !== null && code >= 200 && code < 300) return 'delivered';
  if (code !== null && code >= 500 && code < 600) return 'failed';
  return 'deferred';
}

export interface DeliveryContext {
  pools: PoolSet;
  cache: UpstreamCache;
  helo: (pool: string) => string;
}

export async function deliver(req: DeliveryRequest, ctx: DeliveryContext): Promise<{ outcomes: RcptOutcome[]; attempts: Attempt[] }> {
  const outcomes = new Map<string, RcptOutcome>();
  const attempts: Attempt[] = [];
  let remaining = [...req.recipients];
  let last: { code: number | null; text: string; server: string | null } = { code: null, text: 'no server available', server: null };
  const tried = new Set<string>();
  const maxTries = (ctx.pools.get(req.pool)?.cfg.retries ?? 0) + 1;
  for (let n = 0; n < maxTries && remaining.length; n++) {
    const { pool, result } = await ctx.pools.acquire(req.pool, { exclude: tried });
    if (result.kind !== 'lease') {
      if (n === 0) last = { code: null, text: result.kind === 'busy' ? 'all servers of the pool are at max_connections' : `no server of pool ${req.pool} is up`, server: null };
      break;
    }
    const server = result.server;
    tried.add(server.key);
    const started = Date.now();
    let up = ctx.cache.take(pool, server);
    try {
      if (!up) {
        up = await openUpstream(pool, server, ctx.helo(pool.name));
        pool.passiveResult(server, true);
      }
      const r = await sendOn(up, req.sender, remaining, req.body);
      const next: string[] = [];
      for (const rcpt of r.accepted) outcomes.set(rcpt, { rcpt, kind: 'delivered', code: codeOf(r.response) ?? 250, text: r.response, server: server.name });
      for (const rej of r.rejected) {
        const kind = classify(rej.code);
        if (kind === 'failed') outcomes.set(rej.rcpt, { rcpt: rej.rcpt, kind, code: rej.code, text: rej.text, server: server.name });
        else {
          next.push(rej.rcpt);
          last = { code: rej.code, text: rej.text, server: server.name };
        }
      }
      attempts.push({ at: started, server: server.name, rcpts: remaining, code: r.accepted.length ? codeOf(r.response) ?? 250 : r.rejected[0]?.code ?? null, text: r.accepted.length ? r.response : r.rejected[0]?.text ?? '', ms: Date.now() - started });
      remaining = next;
      if (r.rejected.some((x) => x.code === 421) && up) up.broken = true;
    } catch (e) {
      const err = e instanceof SmtpError ? e : new SmtpError((e as Error).message, null, 'CONN', (e as Error).message);
      if (err.code === null && !up?.sent) pool.passiveResult(server, false);
      attempts.push({ at: started, server: server.name, rcpts: remaining, code: err.code, text: err.text, ms: Date.now() - started });
      last = { code: err.code, text: err.text, server: server.name };
      if (classify(err.code) === 'failed' && (err.stage === 'MAIL FROM' || err.stage === 'DATA')) {
        // The server refused the message itself (MAIL FROM or DATA 5xx): final for everyone.
        for (const rcpt of remaining) outcomes.set(rcpt, { rcpt, kind: 'failed', code: err.code, text: err.text, server: server.name });
        remaining = [];
      }
      if (up) up.broken = true;
    } finally {
      pool.release(server);
      if (up) ctx.cache.give(pool, up);
    }
  }
  for (const rcpt of remaining) outcomes.set(rcpt, { rcpt, kind: 'deferred', code: last.code, text: last.text, server: last.server });
  return { outcomes: req.recipients.map((r) => outcomes.get(r)!), attempts };
}

function codeOf(response: string): number | null {
  const m = /^(\d{3})/.exec(response);
  return m ? Number(m[1]) : null;
}
