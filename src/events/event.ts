// The events smtplb tells the application about (issue 24): one per outcome, built here from
// plain data, pure. An event's id is derived from what it reports (queue id, recipient, type,
// attempt), so the same event sent again after a crash carries the same id and a receiver can
// drop the duplicate; two different events never share one.
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { enhancedCode } from '../outcomes/facts.js';

export const EVENT_TYPES = ['received', 'delivered', 'deferred', 'bounced', 'expired', 'suppressed', 'unsubscribed', 'complained'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface SmtplbEvent {
  id: string;
  type: EventType;
  /** ISO 8601. */
  at: string;
  /** null for a recipient refused at RCPT (no message was taken). */
  queue_id: string | null;
  message_id: string | null;
  sender: string;
  recipient: string | null;
  tags: Record<string, string>;
  class: string | null;
  code: number | null;
  enhanced_code: string | null;
  /** The reply, at most REPLY_MAX characters. */
  reply: string | null;
  /** pool/server that answered, or the listener that took the message. */
  server: string | null;
  attempt: number | null;
  queue_delay_ms: number | null;
  /** unsubscribed and complained: the sending domain the recipient is suppressed for. */
  sender_domain?: string;
}

export const REPLY_MAX = 1000;
const TAGS_MAX = 10;

export function eventId(queueId: string, recipient: string | null, type: EventType, attempt: number | null): string {
  return createHash('sha256').update(`${queueId}\0${recipient ?? ''}\0${type}\0${attempt ?? 0}`).digest('base64url').slice(0, 22);
}

export function makeEvent(e: Omit<SmtplbEvent, 'id' | 'reply'> & { reply: string | null }): SmtplbEvent {
  // A refusal at RCPT has no queue id: a random key makes it an event of its own (stored with
  // its id, so a resend still carries the same one).
  const key = e.queue_id ?? `rcpt:${randomBytes(12).toString('hex')}`;
  return { id: eventId(key, e.recipient, e.type, e.attempt), ...e, reply: e.reply === null ? null : e.reply.slice(0, REPLY_MAX) };
}

/**
 * Tags from a header value such as `X-Smtplb-Tags: campaign=spring, tenant=42`: at most 10,
 * keys of letters, digits, `_ . -` (64 at most), values of printable text (256 at most).
 * Whatever does not fit is left out rather than refused: tags are for the application's
 * bookkeeping, never a reason to refuse mail.
 */
export function parseTags(value: string | undefined): Record<string, string> {
  const tags: Record<string, string> = {};
  if (!value) return tags;
  for (const part of value.slice(0, 4096).split(',')) {
    const m = /^\s*([A-Za-z0-9_.-]{1,64})\s*=\s*(.*?)\s*$/.exec(part);
    if (!m || Object.keys(tags).length >= TAGS_MAX) continue;
    const v = m[2].replace(/[^\x20-\x7e]/g, '').slice(0, 256);
    tags[m[1]] = v;
  }
  return tags;
}

/** `X-Smtplb-Signature`: the HMAC-SHA256 of the exact body bytes, hex. */
export function signBody(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** The message as its events describe it (a queue row or an accepted envelope). */
export interface EventMessage {
  id: string;
  message_id: string | null;
  sender: string;
  created: number;
  tags: Record<string, string>;
}

/** One `received` event per recipient of a message just taken. */
export function receivedEvents(m: EventMessage, recipients: readonly string[], listener: string): { rcpt: string; body: string }[] {
  const at = new Date(m.created).toISOString();
  return recipients.map((rcpt) => ({
    rcpt,
    body: JSON.stringify(makeEvent({ type: 'received', at, queue_id: m.id, message_id: m.message_id, sender: m.sender, recipient: rcpt, tags: m.tags, class: null, code: 250, enhanced_code: null, reply: null, server: listener, attempt: null, queue_delay_ms: 0 })),
  }));
}

/** A recipient's outcome as an event: delivered, deferred (each failed attempt), bounced or expired. */
export function outcomeEvent(
  m: EventMessage,
  o: { rcpt: string; type: 'delivered' | 'deferred' | 'bounced' | 'expired'; code: number | null; text: string; server: string | null; attempt: number; class: string | null },
  now: number,
): { rcpt: string; body: string } {
  return {
    rcpt: o.rcpt,
    body: JSON.stringify(makeEvent({ type: o.type, at: new Date(now).toISOString(), queue_id: m.id, message_id: m.message_id, sender: m.sender, recipient: o.rcpt, tags: m.tags, class: o.class, code: o.code, enhanced_code: enhancedCode(o.text), reply: o.text, server: o.server, attempt: o.attempt, queue_delay_ms: now - m.created })),
  };
}

/** A recipient found on the suppression list (refused at RCPT, or taken and dropped). */
export function suppressedEvent(m: { id: string | null; sender: string; tags?: Record<string, string> }, rcpt: string, reply: string, listener: string, now: number): string {
  return JSON.stringify(makeEvent({ type: 'suppressed', at: new Date(now).toISOString(), queue_id: m.id, message_id: null, sender: m.sender, recipient: rcpt, tags: m.tags ?? {}, class: null, code: 550, enhanced_code: '5.1.1', reply, server: listener, attempt: null, queue_delay_ms: null }));
}

/**
 * A recipient who unsubscribed (one-click, RFC 8058) or complained (a feedback-loop report):
 * the sender domain it was for, the original message's tags, how (`via`). Its id is derived
 * from what it reports, so a repeated click or report is recognisably the same event.
 */
export function listEvent(type: 'unsubscribed' | 'complained', e: { recipient: string; sender: string; senderDomain: string; tags: Record<string, string>; queueId: string | null; messageId: string | null; via: string; key: string }, now: number): string {
  return JSON.stringify({
    id: eventId(`${type}:${e.key}`, e.recipient, type, null),
    type,
    at: new Date(now).toISOString(),
    queue_id: e.queueId,
    message_id: e.messageId,
    sender: e.sender,
    recipient: e.recipient,
    tags: e.tags,
    class: null,
    code: null,
    enhanced_code: null,
    reply: e.via,
    server: null,
    attempt: null,
    queue_delay_ms: null,
    sender_domain: e.senderDomain,
  } satisfies SmtplbEvent);
}

/** Tags as stored with a message (JSON), back to an object. */
export function storedTags(text: string | null | undefined): Record<string, string> {
  if (!text) return {};
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, string>) : {};
  } catch {
    return {};
  }
}
