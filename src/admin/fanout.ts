// The admin API of a primary whose workers own the queue (`workers: N` with mode: smtp
// listeners). Each worker spools into its own shard and runs a private admin API on
// 127.0.0.1 (the same AdminServer, its own relay); the primary has no relay. So that the
// queue tools, `smtplb status`, and the dashboard show one queue, the primary answers the
// relay routes by asking every shard and merging what they say.
//
// Layout: the merge rules are pure functions over the shards' JSON answers (tested without
// processes); the I/O is at the edge (callShard / fanOut / firstAnswer), every call bounded
// by a timeout, so a slow or dead shard shows up in the answer (`shards_unreachable`, a
// `warning`) instead of hanging or failing the primary's API. No shard answering a route that
// needs one is a 503; `/api/status` always answers with the primary's own part.
import type { DestinationRow, RelayStatus, ThrottleView, WarmupView } from './api-types.js';
import http from 'node:http';

export interface Shard {
  shard: number;
  port: number;
}

/** One shard's answer: an HTTP status and its JSON body, or why there was none. */
export type ShardAnswer =
  | { shard: number; ok: true; status: number; body: unknown }
  | { shard: number; ok: false; error: string; /** the request may have reached the shard (a timeout, a cut answer), not a refused connection */ maybeApplied: boolean };

/** What the primary answers: a status and a JSON body. */
export interface Answer {
  status: number;
  body: unknown;
}

/** Per request to a shard, answer included. */
export const SHARD_TIMEOUT_MS = 2000;
/** A shard's answer is read up to this size (a queue listing of 1,000 messages is far below it). */
const MAX_ANSWER_BYTES = 64 << 20;
/** What `GET /api/queue` lists at most (the spool's own listing limit). */
export const QUEUE_LIST_LIMIT = 1000;

/** One request to one shard's private admin API; never throws, never outlives `timeoutMs`. */
export function callShard(s: Shard, token: string | undefined, method: string, path: string, body?: string, timeoutMs = SHARD_TIMEOUT_MS): Promise<ShardAnswer> {
  return new Promise((resolve) => {
    let done = false;
    let sent = false;
    const finish = (a: ShardAnswer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(a);
    };
    const headers: http.OutgoingHttpHeaders = { accept: 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(body);
    }
    const req = http.request({ host: '127.0.0.1', port: s.port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER_BYTES) {
          req.destroy();
          finish({ shard: s.shard, ok: false, error: `answer larger than ${MAX_ANSWER_BYTES} bytes`, maybeApplied: true });
        } else chunks.push(c);
      });
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          finish({ shard: s.shard, ok: true, status: res.statusCode ?? 502, body: JSON.parse(text) });
        } catch {
          finish({ shard: s.shard, ok: false, error: `answered ${res.statusCode} without JSON`, maybeApplied: true });
        }
      });
      res.on('error', (e) => finish({ shard: s.shard, ok: false, error: e.message, maybeApplied: true }));
    });
    const timer = setTimeout(() => {
      req.destroy();
      finish({ shard: s.shard, ok: false, error: `no answer within ${timeoutMs} ms`, maybeApplied: sent });
    }, timeoutMs);
    req.on('error', (e: NodeJS.ErrnoException) => finish({ shard: s.shard, ok: false, error: e.code === 'ECONNREFUSED' ? 'connection refused' : (e.code ?? e.message), maybeApplied: sent && e.code !== 'ECONNREFUSED' }));
    req.on('finish', () => (sent = true));
    req.end(body);
  });
}

/** The same request to every shard at once. */
export function fanOut(shards: Shard[], token: string | undefined, method: string, path: string, body?: string, timeoutMs = SHARD_TIMEOUT_MS): Promise<ShardAnswer[]> {
  return Promise.all(shards.map((s) => callShard(s, token, method, path, body, timeoutMs)));
}

/**
 * Shared state (suspensions, overrides) and config (routes): one shard answers, the first
 * that does. The next is tried only when the request surely did not reach the one before
 * (connection refused): a change that may have been applied is never sent twice.
 */
export async function firstAnswer(shards: Shard[], token: string | undefined, method: string, path: string, body?: string, timeoutMs = SHARD_TIMEOUT_MS): Promise<Answer> {
  const failed: Extract<ShardAnswer, { ok: false }>[] = [];
  for (const s of shards) {
    const a = await callShard(s, token, method, path, body, timeoutMs);
    if (a.ok) return { status: a.status, body: withUnreachable(a.body, failed) };
    failed.push(a);
    if (a.maybeApplied && method !== 'GET') {
      return { status: 504, body: { error: `shard ${a.shard} did not answer (${a.error}): the change may or may not have been made; look before trying again`, shards_unreachable: failed.map((f) => f.shard) } };
    }
  }
  return noShard(failed);
}

// ---- merge rules (pure) ----

type Failed = Extract<ShardAnswer, { ok: false }>;
type Ok = Extract<ShardAnswer, { ok: true }>;

/** Shards that gave no usable answer, with the reason, for the `warning` of a partial answer. */
function unreachableOf(answers: ShardAnswer[]): Failed[] {
  return answers.filter((a): a is Failed => !a.ok);
}

function describe(failed: Failed[]): string {
  return failed.map((f) => `shard ${f.shard} (${f.error})`).join(', ');
}

/** A partial answer says so: which shards are missing from it, and why. */
export function withUnreachable(body: unknown, failed: Failed[]): unknown {
  if (!failed.length || body === null || typeof body !== 'object' || Array.isArray(body)) return body;
  return { ...body, shards_unreachable: failed.map((f) => f.shard), warning: `no answer from ${describe(failed)}: what it holds is missing from this answer` };
}

export function noShard(failed: Failed[]): Answer {
  return { status: 503, body: { error: failed.length ? `no worker's queue answered: ${describe(failed)}` : 'no worker process is running', shards_unreachable: failed.map((f) => f.shard) } };
}

/**
 * The common frame of a merged answer: the 200s are merged; when no shard said 200 but some
 * answered (a 400 for a bad filter, the same at every shard), the first of those is the answer;
 * when none answered, 503.
 */
function merged(answers: ShardAnswer[], merge: (oks: Ok[]) => unknown): Answer {
  const failed = unreachableOf(answers);
  const oks = answers.filter((a): a is Ok => a.ok && a.status === 200);
  if (oks.length) return { status: 200, body: withUnreachable(merge(oks), failed) };
  const other = answers.find((a): a is Ok => a.ok);
  if (other) return { status: other.status, body: withUnreachable(other.body, failed) };
  return noShard(failed);
}

interface QueueListing {
  messages: { id: string }[];
  counts: { state: string; n: number }[];
}

/** Recipients by state summed over shards, in the order states first appear. */
export function sumCounts(lists: { state: string; n: number }[][]): { state: string; n: number }[] {
  const out = new Map<string, number>();
  for (const l of lists) for (const c of l ?? []) out.set(c.state, (out.get(c.state) ?? 0) + c.n);
  return [...out].map(([state, n]) => ({ state, n }));
}

/** `GET /api/queue`: the messages of every shard in queue id order (ids sort by time, as one spool lists them), `limit` at most; counts summed. */
export function mergeQueueList(answers: ShardAnswer[], limit = QUEUE_LIST_LIMIT): Answer {
  return merged(answers, (oks) => {
    const parts = oks.map((a) => a.body as QueueListing);
    const messages = parts.flatMap((p) => p.messages ?? []).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).slice(0, limit);
    return { messages, counts: sumCounts(parts.map((p) => p.counts)) };
  });
}

/**
 * One message (`GET /api/queue/:id`, `POST /api/queue/:id/ACTION`): it is in one shard, which
 * answers; the others say 404. All 404: 404. Not found in the shards that answered while some
 * did not: 503, since the message may be in a silent one.
 */
export function ownerAnswer(answers: ShardAnswer[]): Answer {
  const failed = unreachableOf(answers);
  const found = answers.find((a): a is Ok => a.ok && a.status >= 200 && a.status < 300) ?? answers.find((a): a is Ok => a.ok && a.status !== 404);
  if (found) return { status: found.status, body: withUnreachable(found.body, failed) };
  const notFound = answers.find((a): a is Ok => a.ok);
  if (!notFound) return noShard(failed);
  if (!failed.length) return { status: 404, body: notFound.body };
  const err = (notFound.body as { error?: string })?.error ?? 'not found';
  return { status: 503, body: { error: `${err} of the workers that answered; no answer from ${describe(failed)}, which may hold it: try again`, shards_unreachable: failed.map((f) => f.shard) } };
}

/** `POST /api/queue/flush`: every shard retries its own queued mail; `flushed` summed. */
export function mergeFlush(answers: ShardAnswer[]): Answer {
  return merged(answers, (oks) => ({ ok: true, flushed: oks.reduce((n, a) => n + Number((a.body as { flushed?: number }).flushed ?? 0), 0) }));
}

/**
 * One entry per pool/server/destination. Backoff is shared between workers through the
 * primary's store, so shards agree on it once a change has spread (~250 ms); until then the
 * most cautious view wins: the lowest factor, with the limits in force that go with it (from
 * the same shard's entry), the latest suspension. In-flight deliveries are each worker's own,
 * so they are summed. The last throttle reply is the cautious entry's, else any shard's.
 */
export function mergeThrottles(lists: ThrottleView[][]): ThrottleView[] {
  const out = new Map<string, ThrottleView>();
  for (const list of lists) {
    for (const t of list ?? []) {
      const key = `${t.pool}/${t.server}|${t.destination}`;
      const prev = out.get(key);
      if (!prev) {
        out.set(key, { ...t });
        continue;
      }
      const base = t.factor < prev.factor ? { ...t } : { ...prev };
      base.inflight = prev.inflight + t.inflight;
      base.suspended_until = [prev.suspended_until, t.suspended_until].filter((x): x is string => !!x).sort().pop() ?? null;
      base.last_throttle_reply = base.last_throttle_reply ?? prev.last_throttle_reply ?? t.last_throttle_reply;
      out.set(key, base);
    }
  }
  return [...out.values()];
}

export function mergeThrottleAnswers(answers: ShardAnswer[]): Answer {
  return merged(answers, (oks) => ({ throttles: mergeThrottles(oks.map((a) => (a.body as { throttles: ThrottleView[] }).throttles)) }));
}

/** Shared state listed by id (suspensions, overrides): every shard has it; one copy each (a change still spreading is listed too). */
export function unionById<T extends { id: string }>(lists: T[][]): T[] {
  const out = new Map<string, T>();
  for (const l of lists) for (const x of l ?? []) if (!out.has(x.id)) out.set(x.id, x);
  return [...out.values()];
}


/** Destinations listed in status (Relay.status lists its 1,000 largest). */
const STATUS_DESTINATIONS = 1000;

/**
 * The relay's part of status over all shards, in the shape one process gives: counts summed;
 * a destination queued in several shards is one row (queued summed, the oldest message's age,
 * the first reason it waits), the largest first; spool writable only when every shard's is.
 * `destination_count` is exact while every shard lists all its destinations; past that a
 * destination in several shards cannot be told apart, and the count is a lower bound (the
 * largest of the union listed and any shard's count).
 */
export function mergeRelayStatus(parts: RelayStatus[]): RelayStatus {
  const counts: Record<string, number> = {};
  for (const p of parts) for (const [k, n] of Object.entries(p.queue?.counts ?? {})) counts[k] = (counts[k] ?? 0) + n;
  const dests = new Map<string, DestinationRow>();
  let complete = true;
  let largestCount = 0;
  for (const p of parts) {
    const list = p.queue?.destinations ?? [];
    if (list.length < (p.queue?.destination_count ?? 0)) complete = false;
    largestCount = Math.max(largestCount, p.queue?.destination_count ?? 0);
    for (const d of list) {
      const key = `${d.pool}|${d.destination}`;
      const prev = dests.get(key);
      if (!prev) dests.set(key, { ...d });
      else {
        prev.queued += d.queued;
        prev.oldest_seconds = Math.max(prev.oldest_seconds, d.oldest_seconds);
        prev.waiting_for = prev.waiting_for ?? d.waiting_for;
        if (d.classes) {
          const sum = (prev.classes = { ...prev.classes });
          for (const [k, n] of Object.entries(d.classes)) sum[k] = (sum[k] ?? 0) + n;
        }
      }
    }
  }
  const destinations = [...dests.values()].sort((a, b) => b.queued - a.queued || b.oldest_seconds - a.oldest_seconds).slice(0, STATUS_DESTINATIONS);
  const spools = parts.map((p) => p.spool).filter(Boolean);
  const since = spools.map((s) => s.since).filter((x): x is string => !!x).sort()[0] ?? null;
  const out: RelayStatus = {
    queue: { counts, destinations, destination_count: complete ? dests.size : Math.max(dests.size, largestCount) },
    spool: { writable: spools.every((s) => s.writable), full: spools.some((s) => s.full), error: spools.find((s) => s.error)?.error ?? null, since },
    throttles: mergeThrottles(parts.map((p) => p.throttles)),
    suspensions: unionById(parts.map((p) => p.suspensions)),
    overrides: unionById(parts.map((p) => p.overrides)),
    last_errors: parts.flatMap((p) => p.last_errors ?? []).sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0)).slice(0, 20),
  };
  const cluster = parts.find((p) => p.cluster !== undefined)?.cluster;
  if (cluster !== undefined) out.cluster = cluster;
  // One file for the node's processes: every shard reports the same rates.
  const complaints = parts.find((p) => p.complaints?.length)?.complaints;
  if (complaints) out.complaints = complaints;
  const compliance = parts.find((p) => p.compliance)?.compliance;
  if (compliance) out.compliance = { ...compliance, domains: parts.flatMap((p) => p.compliance?.domains ?? []), daily: parts.flatMap((p) => p.compliance?.daily ?? []) };
  return out;
}

interface StatusPools {
  pools?: { name: string; servers: { name: string; warmup: WarmupView | null }[] }[];
}

/**
 * `GET /api/status` at the primary: its own status (pools, health, listeners), the relay's
 * part merged over the shards, each server's warm-up from the shards (the primary has no
 * relay to count it; warm-up counts are shared, so the highest count seen is the freshest),
 * and a `shards` list: each shard's queue size, or that it did not answer. Always 200: the
 * primary's own part stands whatever the shards do.
 */
export function mergeStatus(own: Record<string, unknown>, shards: Shard[], answers: ShardAnswer[]): Answer {
  const oks = answers.filter((a): a is Ok => a.ok && a.status === 200);
  const failed: Failed[] = [...unreachableOf(answers), ...answers.filter((a): a is Ok => a.ok && a.status !== 200).map((a) => ({ shard: a.shard, ok: false as const, error: `answered ${a.status}`, maybeApplied: false }))];
  const parts = oks.map((a) => a.body as RelayStatus & StatusPools);
  const body: Record<string, unknown> = { ...own };
  if (parts.length) {
    Object.assign(body, mergeRelayStatus(parts));
    const warm = new Map<string, WarmupView>();
    for (const p of parts) {
      for (const pool of p.pools ?? []) {
        for (const s of pool.servers ?? []) {
          const key = `${pool.name}/${s.name}`;
          const prev = warm.get(key);
          if (s.warmup && (!prev || s.warmup.sent > prev.sent)) warm.set(key, s.warmup);
        }
      }
    }
    const pools = own.pools as StatusPools['pools'];
    if (pools && warm.size) body.pools = pools.map((pool) => ({ ...pool, servers: pool.servers.map((s) => ({ ...s, warmup: warm.get(`${pool.name}/${s.name}`) ?? s.warmup })) }));
  }
  const byShard = new Map(answers.map((a) => [a.shard, a]));
  body.shards = shards.map((s) => {
    const a = byShard.get(s.shard);
    if (!a || !a.ok || a.status !== 200) return { shard: s.shard, port: s.port, reachable: false, queue: null, error: !a ? 'not asked' : a.ok ? `answered ${a.status}` : a.error };
    const counts = (a.body as RelayStatus).queue?.counts ?? {};
    return { shard: s.shard, port: s.port, reachable: true, queue: Object.values(counts).reduce((n, c) => n + c, 0), counts };
  });
  return { status: 200, body: withUnreachable(body, failed) };
}

/** A destination's page as a shard answers it (history.ts DestinationView). */
interface DestinationPage {
  destination: string;
  routed_pool: string | null;
  queue: { pool: string; queued: number; held: number; failed: number; oldest_seconds: number | null; waiting_for: string | null }[];
  messages: { id: string; recipient: string }[];
  throttles: ThrottleView[];
  suspensions: { id: string }[];
  overrides: { id: string }[];
  warmup: { pool: string; server: string; sent: number }[];
  replies: { at: string }[];
  replies_source: 'delivery_log' | 'queue';
}

/** Rows on a destination's page (as history.ts lists them for one process). */
const PAGE_MESSAGES = 50;
const PAGE_REPLIES = 20;

/**
 * A destination's page over all shards: per pool its queue summed (the oldest message's age,
 * the first reason it waits), the oldest recipients of all shards (a page at most), throttles
 * as in status, the shared suspensions and warm-up once each. The delivery log is one file
 * all workers append to, so every shard reads the same replies from it: the first such answer
 * is taken; replies read from the queue are each shard's own and are merged, newest first.
 */
export function mergeDestinationPages(pages: DestinationPage[]): DestinationPage {
  const first = pages[0];
  const queue = new Map<string, DestinationPage['queue'][number]>();
  for (const p of pages) {
    for (const q of p.queue ?? []) {
      const prev = queue.get(q.pool);
      if (!prev) queue.set(q.pool, { ...q });
      else {
        prev.queued += q.queued;
        prev.held += q.held;
        prev.failed += q.failed;
        prev.oldest_seconds = prev.oldest_seconds === null ? q.oldest_seconds : q.oldest_seconds === null ? prev.oldest_seconds : Math.max(prev.oldest_seconds, q.oldest_seconds);
        prev.waiting_for = prev.waiting_for ?? q.waiting_for;
      }
    }
  }
  const messages = pages
    .flatMap((p) => p.messages ?? [])
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.recipient < b.recipient ? -1 : a.recipient > b.recipient ? 1 : 0))
    .slice(0, PAGE_MESSAGES);
  const warm = new Map<string, DestinationPage['warmup'][number]>();
  for (const p of pages) for (const w of p.warmup ?? []) if (!warm.has(`${w.pool}/${w.server}`) || w.sent > warm.get(`${w.pool}/${w.server}`)!.sent) warm.set(`${w.pool}/${w.server}`, w);
  const fromLog = pages.find((p) => p.replies_source === 'delivery_log' && p.replies?.length);
  const replies = fromLog
    ? fromLog.replies
    : pages
        .flatMap((p) => p.replies ?? [])
        .sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0))
        .slice(0, PAGE_REPLIES);
  return {
    ...first,
    routed_pool: pages.find((p) => p.routed_pool)?.routed_pool ?? first.routed_pool,
    queue: [...queue.values()],
    messages,
    throttles: mergeThrottles(pages.map((p) => p.throttles)),
    suspensions: unionById(pages.map((p) => p.suspensions)),
    overrides: unionById(pages.map((p) => p.overrides)),
    warmup: [...warm.values()],
    replies,
    replies_source: fromLog ? 'delivery_log' : 'queue',
  };
}

export function mergeDestinationAnswers(answers: ShardAnswer[]): Answer {
  return merged(answers, (oks) => mergeDestinationPages(oks.map((a) => a.body as DestinationPage)));
}

export type { RelayStatus, ThrottleView } from './api-types.js';
