// Delivers one message to some recipients through a pool: tries servers one after another
// (bounded by the pool's `retries`) until every recipient has a final answer or no server is
// left. A connect failure, a 421, or a 4xx for the whole message moves on to the next server
// at once; per-recipient 4xx are tried on the next server too. Permanent answers are final.
// One exception: when the body went out and no reply to the final dot came (data_timeout, a
// lost connection), the upstream may have the message; sending it elsewhere at once would
// deliver it twice, so the recipients are deferred and retried on the queue's schedule.
import { usable } from '../balancing/eligible.js';
import type { Pool, PoolSet, Server } from '../balancing/pool.js';
import type { MxAnswer } from '../discovery/mx.js';
import { needsSmtpUtf8, type MessageParams, type RcptDsn } from '../message/dsn-params.js';
import { offers, openUpstream, sendOn, SmtpError, type Body, type Parked, type Upstream, type UpstreamCache } from './upstream.js';

export type OutcomeKind = 'delivered' | 'deferred' | 'failed';

export interface RcptOutcome {
  rcpt: string;
  kind: OutcomeKind;
  code: number | null;
  text: string;
  server: string | null;
  /** Delivered to a hop that offered DSN: it was handed NOTIFY and reports from here on (RFC 3461 5.2.2). */
  hopDsn?: boolean;
  /** The reply was about this recipient (its RCPT, or its domain taking no mail), not the message or the sender. */
  perRecipient?: boolean;
}

export interface Attempt {
  at: number;
  /** Who was talked to: the server, or source → MX host. */
  server: string;
  /** The pool member (server or source) it counts against, for metrics. */
  member: string;
  rcpts: string[];
  code: number | null;
  text: string;
  ms: number;
}

export interface DeliveryRequest {
  pool: string;
  sender: string;
  recipients: string[];
  body: Body;
  /** MAIL FROM's parameters (RET, ENVID, BODY) to pass on, and each recipient's NOTIFY and ORCPT. */
  params?: MessageParams;
  rcptDsn?: ReadonlyMap<string, RcptDsn>;
  /** The recipients' domain (one per request): direct-to-MX pools look up its MX hosts. */
  domain?: string;
  /** Servers the queue manager found throttled or capped for this destination. */
  exclude?: ReadonlySet<string>;
  /**
   * Server names tried only when no other server is up: the ones that went silent on this
   * message last time (an outcome left unknown), so a retry does not meet the same fault.
   */
  avoid?: ReadonlySet<string>;
  gate?: DeliveryGate;
}

/**
 * What a delivery holds on a cluster from its admission to its end: its concurrency lease
 * (null when the destination has no concurrency limit) and whether the shared store counted it.
 */
export interface Ticket {
  lease: string | null;
  granted: boolean;
}

/** Shaping for one destination: may a server take it now, and what came of it. */
export interface DeliveryGate {
  /**
   * May `server` take the mail now? Yes counts the delivery against the limits until `end`.
   * `parked`: the cluster lease the reused connection holds, which the delivery takes over.
   */
  admit(pool: Pool, server: Server, newConnection: boolean, parked?: Parked): Promise<{ ok: true; ticket?: Ticket } | { ok: false; reason: string; at: number; hold?: boolean }>;
  /** The delivery ended; `keep`: its connection stays open, and keeps the delivery's cluster lease (returned) until it closes. */
  end(pool: Pool, server: Server, code: number | null, text: string, delivered: boolean, keep: boolean, ticket?: Ticket): Parked | undefined;
  /** Connection group and its message cap (messages_per_connection), if the destination has one. */
  connection?: { group: string; maxMessages: number };
}

export interface DeliveryResult {
  outcomes: RcptOutcome[];
  attempts: Attempt[];
  /** Set when nothing was tried because shaping holds the mail back until then. */
  waitUntil?: number;
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
  /** A new connection to a server was tried: for metrics. */
  connected?: (pool: Pool, server: Server, ms: number, ok: boolean) => void;
  /** MX hosts of a domain, for direct-to-MX pools. */
  mx?: (pool: Pool, domain: string) => Promise<MxAnswer>;
  /**
   * The body for a hop without 8BITMIME: null when it has no 8-bit byte (sent as it is), the
   * converted body (signed again), or why it cannot be converted.
   */
  sevenBit?: (body: Body) => Promise<{ body: Body } | { error: string } | null>;
}

/**
 * A new connection from `server`: to the server itself, or, for a direct-to-MX pool (where
 * the server is a source address), to the destination's MX hosts in preference order.
 */
async function connect(pool: Pool, server: Server, req: DeliveryRequest, ctx: DeliveryContext, group: string, maxMessages: number | undefined): Promise<Upstream> {
  const helo = server.helo ?? ctx.helo(pool.name);
  if (pool.cfg.kind !== 'mx') return openUpstream(pool, server, helo, group, maxMessages);
  const answer = req.domain && ctx.mx ? await ctx.mx(pool, req.domain) : { ok: false as const, permanent: false, reason: '4.3.5 No MX lookup available' };
  if (!answer.ok) throw new SmtpError(answer.reason, answer.permanent ? 550 : null, 'MX', answer.reason);
  let lastErr: unknown;
  for (const t of answer.targets) {
    try {
      return await openUpstream(pool, server, helo, group, maxMessages, { host: t.ip, port: pool.cfg.mx.port, servername: t.host });
    } catch (e) {
      // A refused or silent MX host: the next one (RFC 5321 5.1); an answer in SMTP is final for this try.
      lastErr = e;
      if (e instanceof SmtpError && e.code !== null) throw e;
    }
  }
  throw lastErr ?? new SmtpError('no MX host', null, 'CONN', 'no MX host could be reached');
}

/**
 * Direct-to-MX connections shared by the domains of one MX site (a group other than the
 * domain's own): one is taken for this domain only when it goes to one of the domain's MX
 * addresses. Two customers of one provider may have different MX hosts on one site.
 */
async function sameEndpoint(pool: Pool, req: DeliveryRequest, ctx: DeliveryContext, group: string): Promise<((up: Upstream) => boolean) | undefined> {
  if (pool.cfg.kind !== 'mx' || !req.domain || !ctx.mx || group === req.domain || group === `mx:${req.domain}`) return undefined;
  let ips = new Set<string>();
  try {
    const answer = await ctx.mx(pool, req.domain);
    if (answer.ok) ips = new Set(answer.targets.map((t) => t.ip));
  } catch {
    /* no answer: reuse nothing (the new connection's own lookup says why) */
  }
  return (up) => up.endpoint !== undefined && ips.has(up.endpoint);
}

/**
 * `tried` plus the keys of the servers named in `avoid`, when another usable primary server
 * of the pool is left to take the message; otherwise `tried` alone. Avoiding is a preference
 * among equals: it never sends mail to a backup server or the fallback pool while an avoided
 * primary is up.
 */
export function avoided(tried: ReadonlySet<string>, avoid: ReadonlySet<string> | undefined, pool: Pool | undefined): ReadonlySet<string> {
  if (!avoid?.size || !pool) return tried;
  const now = Date.now();
  const other = pool.servers.some((s) => !s.backup && !avoid.has(s.name) && !tried.has(s.key) && usable(s, now));
  if (!other) return tried;
  const out = new Set(tried);
  for (const s of pool.servers) if (avoid.has(s.name)) out.add(s.key);
  return out;
}

export async function deliver(req: DeliveryRequest, ctx: DeliveryContext): Promise<DeliveryResult> {
  const outcomes = new Map<string, RcptOutcome>();
  const attempts: Attempt[] = [];
  let remaining = [...req.recipients];
  let last: { code: number | null; text: string; server: string | null } = { code: null, text: 'no server available', server: null };
  const tried = new Set<string>(req.exclude);
  const gate = req.gate;
  // Connections of a direct-to-MX pool go to one destination's hosts: kept apart per domain.
  const group = gate?.connection?.group ?? (req.domain && ctx.pools.get(req.pool)?.cfg.kind === 'mx' ? `mx:${req.domain}` : '');
  let waitUntil: number | undefined;
  const maxTries = (ctx.pools.get(req.pool)?.cfg.retries ?? 0) + 1;
  // An internationalized envelope goes only to a hop that offers SMTPUTF8 (RFC 6531 3.4):
  // each server that does not is passed over (not counted as a try), and when none does the
  // recipients bounce with 5.6.7, as Postfix's do.
  const utf8 = needsSmtpUtf8(req.sender, req.recipients);
  // Likewise an 8-bit message and a hop without 8BITMIME (RFC 6152): converted to 7-bit once,
  // for every such hop; what cannot be converted bounces with 5.6.3 when no hop takes it.
  let missing: { code: number; text: string; server: string } | undefined;
  // The servers reached and found lacking: only when every server of every pool the delivery
  // drew from is among them is it final; one busy, down or held back is tried later.
  const lacking = new Set<string>();
  const drawnFrom = new Set<Pool>();
  let converted: Promise<{ body: Body } | { error: string; temporary?: boolean } | null> | undefined;
  // Servers the gate turns away are not tries; `tried` grows each round, so this ends.
  for (let n = 0; n < maxTries && remaining.length; n++) {
    const exclude = avoided(tried, req.avoid, ctx.pools.get(req.pool));
    let { pool, result } = await ctx.pools.acquire(req.pool, { exclude });
    // The others were busy or went down meanwhile: the avoided server after all.
    if (result.kind !== 'lease' && exclude !== tried) ({ pool, result } = await ctx.pools.acquire(req.pool, { exclude: tried }));
    if (result.kind !== 'lease') {
      if (attempts.length === 0 && waitUntil === undefined) last = { code: null, text: result.kind === 'busy' ? 'all servers of the pool are at max_connections' : `no server of pool ${req.pool} is up`, server: null };
      break;
    }
    const server = result.server;
    tried.add(server.key);
    drawnFrom.add(pool);
    const started = Date.now();
    const accept = await sameEndpoint(pool, req, ctx, group);
    let up = ctx.cache.take(pool, server, group, accept);
    let ticket: Ticket | undefined;
    if (gate) {
      let v = await gate.admit(pool, server, !up, up?.parked);
      // On a cluster the site's limit may be held by idle connections to another domain's MX
      // hosts (each keeps its lease): the oldest of them closes, giving its lease back, and this
      // domain asks again (now or at its next turn), so one domain's backlog cannot keep another
      // of its site waiting.
      if (!v.ok && !v.hold && !up && accept && ctx.cache.closeOldest(pool, server, group, (u) => !accept(u) && !!u.parked)) v = await gate.admit(pool, server, true, undefined);
      if (!v.ok) {
        pool.release(server);
        if (up) ctx.cache.give(pool, up);
        if (attempts.length === 0) last = { code: null, text: v.reason, server: server.name };
        waitUntil = Math.min(waitUntil ?? Infinity, v.at);
        if (v.hold) break;
        n--;
        continue;
      }
      // The delivery holds the connection's lease now; `end` parks it again or gives it back.
      if (up) up.parked = undefined;
      ticket = v.ticket;
    }
    let reply: { code: number | null; text: string; delivered: boolean } = { code: null, text: '', delivered: false };
    try {
      if (!up) {
        try {
          up = await connect(pool, server, req, ctx, group, gate?.connection?.maxMessages);
        } finally {
          ctx.connected?.(pool, server, Date.now() - started, !!up);
        }
        pool.passiveResult(server, true);
      }
      // This hop lacks what the message needs: recorded, and the next server (not counted as a try).
      const passOver = (code: number, text: string) => {
        lacking.add(server.key);
        last = missing = { code, text, server: up!.label };
        attempts.push({ at: started, server: up!.label, member: server.name, rcpts: remaining, code, text, ms: Date.now() - started });
        n--;
      };
      if (utf8 && !offers(up, 'SMTPUTF8')) {
        passOver(550, `5.6.7 SMTPUTF8 is required, but was not offered by ${up.label}`);
        continue;
      }
      let body = req.body;
      if (ctx.sevenBit && !offers(up, '8BITMIME')) {
        // A spool read that fails is the queue's trouble, not the server's: deferred, not counted against it.
        const c = await (converted ??= ctx.sevenBit(req.body).catch((e: Error) => ({ error: `4.3.0 reading the message to convert it failed: ${e.message}`, temporary: true })));
        if (c && 'temporary' in c) {
          last = { code: 451, text: c.error, server: up.label };
          break;
        }
        if (c && 'error' in c) {
          passOver(554, `5.6.3 Conversion to 7-bit for ${up.label}, which does not offer 8BITMIME, is not possible: ${c.error}`);
          continue;
        }
        if (c) body = c.body;
      }
      const r = await sendOn(up, req.sender, remaining, body, pool.cfg.data_timeout, pool.cfg.timeout, { params: body === req.body ? req.params : { ...req.params, body: undefined }, rcptDsn: req.rcptDsn });
      const hopDsn = offers(up, 'DSN');
      const next: string[] = [];
      const label = up.label;
      for (const rcpt of r.accepted) outcomes.set(rcpt, { rcpt, kind: 'delivered', code: codeOf(r.response) ?? 250, text: r.response, server: label, hopDsn });
      for (const rej of r.rejected) {
        const kind = classify(rej.code);
        if (kind === 'failed') outcomes.set(rej.rcpt, { rcpt: rej.rcpt, kind, code: rej.code, text: rej.text, server: label, perRecipient: true });
        else {
          next.push(rej.rcpt);
          last = { code: rej.code, text: rej.text, server: label };
        }
      }
      const a: Attempt = { at: started, server: label, member: server.name, rcpts: remaining, code: r.accepted.length ? codeOf(r.response) ?? 250 : r.rejected[0]?.code ?? null, text: r.accepted.length ? r.response : r.rejected[0]?.text ?? '', ms: Date.now() - started };
      attempts.push(a);
      // A throttling answer to some recipients counts even when others went through.
      const throttled = r.rejected.find((x) => x.code === 421 || x.code === 450 || x.code === 451);
      reply = throttled ? { code: throttled.code, text: throttled.text, delivered: r.accepted.length > 0 } : { code: a.code, text: a.text, delivered: r.accepted.length > 0 };
      remaining = next;
      if (r.rejected.some((x) => x.code === 421) && up) up.broken = true;
    } catch (e) {
      const err = e instanceof SmtpError ? e : new SmtpError((e as Error).message, null, 'CONN', (e as Error).message);
      if (err.code === null && !up?.sent && err.stage !== 'MX' && pool.cfg.kind !== 'mx') pool.passiveResult(server, false);
      attempts.push({ at: started, server: server.name, member: server.name, rcpts: remaining, code: err.code, text: err.text, ms: Date.now() - started });
      last = { code: err.code, text: err.text, server: server.name };
      reply = { code: err.code, text: err.text, delivered: false };
      if (err.unknown) {
        const text = `4.4.2 No reply to the end of data from ${server.name} (${err.text}); the outcome is unknown, so it is retried later rather than sent elsewhere now`;
        for (const rcpt of remaining) outcomes.set(rcpt, { rcpt, kind: 'deferred', code: null, text, server: server.name });
        remaining = [];
      } else if (err.stage === 'MX' && err.code === null) {
        // DNS failed for the destination: another source address cannot fix that.
        last = { code: null, text: err.text, server: server.name };
        for (const rcpt of remaining) outcomes.set(rcpt, { rcpt, kind: 'deferred', code: null, text: err.text, server: server.name });
        remaining = [];
      } else if (classify(err.code) === 'failed' && (err.stage === 'MAIL FROM' || err.stage === 'DATA' || err.stage === 'MX')) {
        // The server refused the message itself (MAIL FROM or DATA 5xx), or the domain takes
        // no mail at all: final for everyone.
        for (const rcpt of remaining) outcomes.set(rcpt, { rcpt, kind: 'failed', code: err.code, text: err.text, server: server.name, perRecipient: err.stage === 'MX' });
        remaining = [];
      }
      if (up) up.broken = true;
    } finally {
      // Kept unless broken: a connection the cache will not reuse is closed with QUIT, and its
      // lease goes back only once it is closed (else the receiver would count it and its successor).
      const parked = gate?.end(pool, server, reply.code, reply.text, reply.delivered, !!up && !up.broken, ticket);
      pool.release(server);
      if (up) {
        if (parked) up.parked = parked;
        ctx.cache.give(pool, up);
      } else parked?.release();
    }
  }
  // Every server reached lacked SMTPUTF8 (or 8BITMIME for a message that cannot be converted):
  // final, no retry will find one that has it.
  const final = !!missing && last === missing && attempts.every((a) => /^5\.6\.[37] /.test(a.text)) && [...drawnFrom].every((p) => p.servers.every((s) => lacking.has(s.key)));
  for (const rcpt of remaining) outcomes.set(rcpt, final ? { rcpt, kind: 'failed', ...missing! } : { rcpt, kind: 'deferred', code: last.code, text: last.text, server: last.server });
  return { outcomes: req.recipients.map((r) => outcomes.get(r)!), attempts, waitUntil: attempts.length === 0 ? waitUntil : undefined };
}

function codeOf(response: string): number | null {
  const m = /^(\d{3})/.exec(response);
  return m ? Number(m[1]) : null;
}
