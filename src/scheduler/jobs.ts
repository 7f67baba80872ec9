// A job: one message's due recipients for one (pool, destination), as the queue manager hands
// them to the delivery agent, and what it passes on with them. Pure helpers over queue rows.
import type { DeliveryRequest } from '../delivery/deliver.js';
import { decodeParams, decodeRcptDsn, type RcptDsn } from '../message/dsn-params.js';
import type { MessageRow, RecipientRow } from '../spool/spool.js';

export interface Job { msg: string; pool: string; domain: string; rows: RecipientRow[]; exclude?: ReadonlySet<string>; /** Where it counts as starting (pool and shaping key) until its delivery is admitted. */ startKey?: string }

/** What a delivery passes on to the next hop: MAIL FROM's parameters, each recipient's NOTIFY and ORCPT. */
export function passOn(m: MessageRow, rows: RecipientRow[]): Pick<DeliveryRequest, 'params' | 'rcptDsn'> {
  const rcptDsn = new Map<string, RcptDsn>();
  for (const r of rows) if (r.dsn) rcptDsn.set(r.rcpt, decodeRcptDsn(r.dsn));
  return { params: decodeParams(m.params), rcptDsn };
}

/**
 * Servers to try last for these rows: a relay server that gave no reply on the last attempt
 * (connection lost or timed out mid-transaction, outcome unknown). Not for direct-to-MX
 * sources: a retry from another address starts greylisting over.
 */
export function silentServers(rows: readonly Pick<RecipientRow, 'last_code' | 'last_server' | 'attempts'>[], kind: string | undefined): ReadonlySet<string> | undefined {
  if (kind === 'mx') return undefined;
  const names = rows.filter((r) => r.attempts > 0 && r.last_code === null && r.last_server).map((r) => r.last_server!);
  return names.length ? new Set(names) : undefined;
}

/** Rows of one destination grouped into one delivery per message, in the order read. */
export function group(rows: RecipientRow[]): Job[] {
  const jobs = new Map<string, Job>();
  for (const r of rows) {
    let j = jobs.get(r.msg);
    if (!j) jobs.set(r.msg, (j = { msg: r.msg, pool: r.pool, domain: r.domain, rows: [] }));
    j.rows.push(r);
  }
  return [...jobs.values()];
}
