// One destination's page on the dashboard (and `GET /api/destinations/<domain>`): its queue per
// pool, its oldest recipients, throttle state, suspensions and overrides, warm-up against the
// plan, and the last replies (from the delivery log's tail, else from the queue's rows).
import fs from 'node:fs';
import type { Pool } from '../balancing/pool.js';
import type { Relay } from '../runtime/relay.js';
import { domainMatches } from '../routing/route.js';
import { recipientProgress } from './views.js';

export interface DestinationView {
  destination: string;
  /** The pool a plain message to this domain is routed to now (null when no route takes it). */
  routed_pool: string | null;
  queue: { pool: string; queued: number; held: number; failed: number; oldest_seconds: number | null; waiting_for: string | null }[];
  messages: { id: string; created: string; age_seconds: number; sender: string; recipient: string; pool: string; state: string; attempts: number; next_attempt: string | null; last_code: number | null; last_reply: string | null; last_server: string | null; waiting_for: string | null }[];
  throttles: ReturnType<Relay['shaper']['throttles']>;
  suspensions: { id: string; pool: string; destination: string; until: string; reason: string; who: string }[];
  overrides: { id: string; pool: string; destination: string; until: string; reason: string; who: string; rate: string | null; concurrency: number | null }[];
  warmup: { pool: string; server: string; state: 'warming' | 'warm' | 'not started'; day: number; plan_days: number; cap: number | null; sent: number; remaining: number | null; overflow: 'spill' | 'hold'; schedule: number[] }[];
  replies: { at: string; event: string; queue_id: string | null; pool: string; server: string | null; recipient: string | null; code: number | null; reply: string }[];
  replies_source: 'delivery_log' | 'queue';
}

/** Recipient rows listed on a destination's page (the oldest message first). */
const PAGE_MESSAGES = 50;
const PAGE_REPLIES = 20;

export async function destinationView(relay: Relay, pools: Map<string, Pool>, raw: string, deliveryLog: string | undefined, now = Date.now()): Promise<DestinationView> {
  const domain = raw.trim().toLowerCase().replace(/\.$/, '');
  const routed = relay.route({ domain })?.rule.pool ?? null;
  const poolNames = new Set<string>();
  if (routed) poolNames.add(routed);
  for (const name of pools.keys()) if (relay.spool.index.summary(name, domain)) poolNames.add(name);
  // One index seek per pool (a handful): never a scan of the queue, however large it is.
  const queue = [...poolNames].map((pool) => {
    const s = relay.spool.index.summary(pool, domain);
    const oldest = s ? relay.spool.view.oldest(pool, domain) : null;
    return {
      pool,
      queued: s?.queued ?? 0,
      held: s?.held ?? 0,
      failed: s?.failed ?? 0,
      oldest_seconds: oldest === null ? null : Math.max(0, Math.round((now - oldest) / 1000)),
      waiting_for: relay.scheduler.waiting(pool, domain, now)?.reason ?? null,
    };
  });
  // The oldest recipients across its pools, one row each, at most a page of them.
  const rows = [...poolNames]
    .filter((pool) => relay.spool.index.summary(pool, domain))
    .flatMap((pool) => relay.spool.view.openFor(pool, domain, PAGE_MESSAGES))
    .sort((a, b) => (a.msg < b.msg ? -1 : a.msg > b.msg ? 1 : a.rcpt < b.rcpt ? -1 : a.rcpt > b.rcpt ? 1 : 0))
    .slice(0, PAGE_MESSAGES);
  // Flat rows (one per recipient, with its message's time and sender): server.ts's messageView
  // nests recipients under each message, which this page's table does not show.
  const messages: DestinationView['messages'] = rows.map((r) => ({
    id: r.msg,
    created: new Date(r.created).toISOString(),
    age_seconds: Math.round((now - r.created) / 1000),
    sender: r.sender,
    recipient: r.rcpt,
    ...recipientProgress(r),
    waiting_for: relay.waitingFor(r, now),
  }));
  const warmup: DestinationView['warmup'] = [];
  for (const name of poolNames) {
    const pool = pools.get(name);
    for (const s of pool?.servers ?? []) {
      if (!s.warmup) continue;
      const p = relay.shaper.serverWarmup(name, s, now)!;
      const days = s.warmup.schedule.length;
      warmup.push({ pool: name, server: s.name, state: p.day < 0 ? 'not started' : p.cap === null ? 'warm' : 'warming', day: p.day, plan_days: days, cap: p.cap, sent: p.sent, remaining: p.remaining, overflow: s.warmup.overflow, schedule: s.warmup.schedule });
    }
  }
  let replies: DestinationView['replies'] = [];
  let source: DestinationView['replies_source'] = 'queue';
  if (deliveryLog) {
    const fromLog = await lastReplies(deliveryLog, domain, PAGE_REPLIES);
    if (fromLog?.length) {
      replies = fromLog;
      source = 'delivery_log';
    }
  }
  if (source === 'queue') {
    replies = messages
      .filter((m) => m.last_reply)
      .map((m) => ({ at: m.created, event: 'attempt', queue_id: m.id, pool: m.pool, server: m.last_server, recipient: m.recipient, code: m.last_code, reply: m.last_reply ?? '' }))
      .slice(-PAGE_REPLIES)
      .reverse();
  }
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    destination: domain,
    routed_pool: routed,
    queue,
    messages,
    throttles: relay.shaper.throttles(now).filter((t) => t.destination === domain),
    suspensions: relay.shaper.suspensions(now).filter((s) => domainMatches(s.destination, domain)).map((s) => ({ id: s.id, pool: s.pool, destination: s.destination, until: iso(s.until), reason: s.reason, who: s.who })),
    overrides: relay.shaper.overrides(now).filter((o) => domainMatches(o.destination, domain)).map((o) => ({ id: o.id, pool: o.pool, destination: o.destination, until: iso(o.until), reason: o.reason, who: o.who, rate: o.rate, concurrency: o.concurrency })),
    warmup,
    replies,
    replies_source: source,
  };
}

/** Bytes read from the end of the delivery log for a destination's last replies. */
const LOG_TAIL_BYTES = 1 << 20;

/** The newest replies to `domain` in the delivery log's last megabyte (null when it cannot be read). */
export async function lastReplies(file: string, domain: string, max: number): Promise<DestinationView['replies'] | null> {
  let fh: fs.promises.FileHandle | undefined;
  try {
    fh = await fs.promises.open(file, 'r');
    const { size } = await fh.stat();
    const start = Math.max(0, size - LOG_TAIL_BYTES);
    const buf = Buffer.alloc(size - start);
    await fh.read(buf, 0, buf.length, start);
    const lines = buf.toString('utf8').split('\n');
    if (start > 0) lines.shift(); // a partial first line
    const out: DestinationView['replies'] = [];
    const needle = `"recipient_domain":${JSON.stringify(domain)}`;
    for (let i = lines.length - 1; i >= 0 && out.length < max; i--) {
      const line = lines[i];
      if (!line.includes(needle)) continue;
      try {
        const r = JSON.parse(line) as { time?: string; event: string; queue_id?: string; pool: string; server: string | null; recipient?: string; code: number | null; reply: string };
        out.push({ at: r.time ?? '', event: r.event, queue_id: r.queue_id ?? null, pool: r.pool, server: r.server, recipient: r.recipient ?? null, code: r.code, reply: String(r.reply ?? '').slice(0, 500) });
      } catch {
        // a line cut by rotation or a crash: skipped
      }
    }
    return out;
  } catch {
    return null;
  } finally {
    await fh?.close();
  }
}
