// The spool's records as the rest of smtplb reads them: a message, its recipients and their
// states, its events, a destination's summary, and the queue id's time. Plain data.
import type { MessageParams, RcptDsn } from '../message/dsn-params.js';

/** `failed`: permanently failed, its DSN not yet queued (spool.ts, invariant 1). */
export type RcptState = 'queued' | 'held' | 'failed' | 'delivered' | 'bounced' | 'deleted';

/** Recipients still owed something: a delivery attempt, an operator's release, or a DSN. */
export const OPEN: ReadonlySet<string> = new Set(['queued', 'held', 'failed']);

/** What the queue holds for one (pool, destination), kept as rows move. */
export interface DestSummary {
  pool: string;
  domain: string;
  queued: number;
  held: number;
  failed: number;
  /** Earliest next_at of a queued, unleased row; may be early (then a look finds nothing due and corrects it). */
  nextDue: number | null;
}

/** The creation time encoded in a queue id (ids start with the time in base 36). */
export function idTime(id: string): number {
  return parseInt(id.slice(0, 9), 36);
}

/** The smallest id made at or after `ms`: ids sort by creation time. */
export function idAt(ms: number): string {
  return Math.max(0, Math.floor(ms)).toString(36).toUpperCase().padStart(9, '0');
}

export interface Envelope {
  sender: string; // '' for the null sender
  /** `dsn`: the RCPT's NOTIFY and ORCPT (RFC 3461). */
  recipients: { address: string; domain: string; pool: string; route: number; dsn?: RcptDsn }[];
  listener: string;
  user?: string;
  class?: string;
  client: string;
  messageId?: string;
  /** For DSNs: the queue id of the message this reports on. */
  dsnOf?: string;
  /** MAIL FROM's RET, ENVID, BODY and SMTPUTF8, kept for the next hop and for DSNs. */
  params?: MessageParams;
  /** The message's tags (X-Smtplb-Tags), for its events. */
  tags?: Record<string, string>;
}

export interface MessageRow {
  id: string;
  created: number;
  sender: string;
  size: number;
  message_id: string | null;
  listener: string;
  user: string | null;
  class: string | null;
  client: string;
  /** The body's file; '' when the body is in the index (then the stored body holds the prefix too). */
  file: string;
  dsn_of: string | null;
  /** MAIL FROM's parameters as stored (JSON; dsn-params.ts), null for none. */
  params?: string | null;
  /** Header lines added at acceptance (Received, DKIM-Signature), sent before the file's bytes. */
  prefix?: Buffer | null;
  /** Tags as JSON, null for none. */
  tags?: string | null;
}

/** A message's bytes: in memory, or a file with the header lines to send before it (the shape of delivery's Body). */
export type StoredBody = Buffer | { file: string; size: number; prefix?: Buffer | null };

export interface RecipientRow {
  msg: string;
  rcpt: string;
  domain: string;
  pool: string;
  route: number;
  state: RcptState;
  attempts: number;
  next_at: number;
  last_code: number | null;
  last_reply: string | null;
  last_server: string | null;
  updated: number;
  /** Why a queued recipient is waiting (retry schedule, throttle, suspension, warm-up cap). */
  wait?: string | null;
  /** The RCPT's NOTIFY and ORCPT as stored (JSON; dsn-params.ts), null for none. */
  dsn?: string | null;
}

export type { Override, Suspension } from '../control/types.js';

export interface EventRow { msg: string; at: number; rcpt: string | null; kind: string; server: string | null; code: number | null; text: string | null }

/** A DSN to queue in the same transaction as the outcomes that cause it. */
export interface DsnToQueue { env: Envelope; body: Buffer }

/** A message stored by the spool: its row, its body when kept in the index, the directory synced for its file. */
export interface Stored { row: MessageRow; body: Buffer | null; dir?: string }

export interface SettleOpts {
  /** Only rows not in flight (the queue tools' bounce, which must not race a delivery). */
  unleasedOnly?: boolean;
  /** Event bodies for the outbox, each with the recipient whose outcome it reports. */
  outbox?: readonly { rcpt: string; body: string }[];
}
