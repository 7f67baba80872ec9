// The DSN the queue manager queues for recipients it gave up on (failed, expired), delayed or
// relayed onwards (RFC 3464): who hears of what (NOTIFY), what is returned (RET), the host
// that answered (Remote-MTA), and the route back to the sender. The report's text is built by
// delivery/dsn.ts; this decides whether there is one and puts it together.
import type { Logger } from 'pino';
import type { Pool } from '../balancing/pool.js';
import { buildDsn, type DsnRecipient } from '../delivery/dsn.js';
import { hasEightBit } from '../delivery/seven-bit.js';
import { decodeParams, decodeRcptDsn, wantsDelay, wantsFailure } from '../message/dsn-params.js';
import type { Bodies } from '../spool/bodies.js';
import type { DsnToQueue, Envelope, MessageRow } from '../spool/records.js';

/** RET=FULL returns the message whole up to this size (Postfix's bounce_size_limit); past it, its headers. */
const FULL_RETURN_MAX = 50_000;

export interface DsnContext {
  hostname: () => string;
  pools: () => Map<string, Pool>;
  /** Route a DSN's recipient (the original sender). */
  routeBounce: (address: string) => Envelope['recipients'][number] | null;
  bodies: Pick<Bodies, 'readWhole' | 'readHead'>;
  log: Logger;
  /** The reply class of a failure (src/outcomes), for the report's X-Smtplb-Class field. */
  classOf?: (code: number | null, text: string, expired: boolean) => string;
}

/** Recipients whose failure is not reported (NOTIFY=NEVER or without FAILURE): logged, as Postfix logs them. */
export function noteDsn(log: Logger, m: MessageRow, rcpts: DsnRecipient[]): void {
  const silent = rcpts.filter((r) => r.action === 'failed' && !wantsFailure(decodeRcptDsn(r.dsn)));
  if (silent.length) log.info({ queue_id: m.id, recipients: silent.map((r) => r.rcpt) }, `no DSN for ${silent.length} recipient(s) of ${m.id}: NOTIFY does not ask for failures`);
}

/**
 * The DSN for some recipients of `m`, or none (null sender, a bounce itself, no route, or
 * nothing the sender asked to hear: NOTIFY=NEVER, or NOTIFY without FAILURE, drops failed
 * and delayed recipients; relayed ones are only listed when NOTIFY had SUCCESS).
 */
export async function dsnFor(ctx: DsnContext, m: MessageRow, all: DsnRecipient[], reason: 'rejected' | 'expired', head?: Buffer): Promise<DsnToQueue | undefined> {
  const rcpts = all.filter((r) => r.action === 'relayed' || (r.action === 'delayed' ? wantsDelay(decodeRcptDsn(r.dsn)) : wantsFailure(decodeRcptDsn(r.dsn))));
  if (!rcpts.length) return undefined;
  // Never bounce a bounce, never to the null sender.
  if (!m.sender || m.dsn_of) return undefined;
  const route = ctx.routeBounce(m.sender);
  if (!route) {
    ctx.log.error({ queue_id: m.id, sender: m.sender }, 'no route for the DSN to the sender; bounce dropped');
    return undefined;
  }
  const params = decodeParams(m.params);
  // Remote-MTA names the host that answered: a direct-to-MX label carries it after "→", a relay
  // server's label is the pool's name for it, whose address is the host.
  for (const r of rcpts) {
    if (r.action !== 'relayed') r.class = ctx.classOf?.(r.code, r.text, reason === 'expired' && r.action === 'failed');
    if (!r.server) continue;
    const mx = r.server.split('→')[1];
    r.host = mx ?? ctx.pools().get(r.pool ?? '')?.servers.find((s) => s.name === r.server)?.address.host;
  }
  // RET=FULL: the whole message, up to Postfix's bounce_size_limit; else (and by default) its headers.
  const full = params.ret === 'FULL' && m.size <= FULL_RETURN_MAX ? await ctx.bodies.readWhole(m).catch(() => null) : null;
  const original = full ?? head ?? (await ctx.bodies.readHead(m.id).catch(() => Buffer.alloc(0)));
  const body = buildDsn({ hostname: ctx.hostname(), queueId: m.id, sender: m.sender, arrival: new Date(m.created), recipients: rcpts, reason, original, full: !!full, envid: params.envid });
  // A report that quotes 8-bit text (a returned message, an internationalized address) says so: BODY=8BITMIME.
  return { env: { sender: '', recipients: [route], listener: 'dsn', client: 'smtplb', dsnOf: m.id, ...(hasEightBit(body) ? { params: { body: '8BITMIME' as const } } : {}) }, body };
}
