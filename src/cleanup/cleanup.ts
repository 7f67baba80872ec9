// The cleanup stage (Postfix's cleanup, between smtpd and the queue manager): from a message
// received (receive.ts) and the session's envelope to what the queue takes. In order: the
// traffic class decided (user, class header, sender domain, listener); the recipients routed
// again when the class differs from the one they were routed with at RCPT; the author (From
// by RFC 5322, from-header.ts) bound to what the client may send as (policy/identity.ts); the
// DKIM signature asked for (signing runs in worker threads, behind `signatureFor`); the
// Message-ID read; for a class with `unsubscribe:` rules, List-Unsubscribe added (signed with
// the message) or the message refused (unsubscribe/headers.ts); our Received line put on top
// with the signature. The listener hands in the
// session's facts and gets back the message for the queue, or the reply that refuses it.
import type { Logger } from 'pino';
import { paramsFromSession, rcptDsnFrom } from '../message/dsn-params.js';
import type { InboundMessage, Reply } from '../message/inbound.js';
import { classOf } from '../policy/classify.js';
import { identity } from '../policy/identity.js';
import { domainOf, type RouteChoice, type RouteQuery } from '../routing/route.js';
import { authorOf } from './from-header.js';
import { parseTags } from '../events/event.js';
import type { Received } from './receive.js';
import { unsubscribeDecision, type UnsubscribeSettings } from '../unsubscribe/headers.js';

export interface CleanupInput {
  got: Received;
  /** The session as smtp-server describes it: envelope (with MAIL and RCPT parameters), client, HELO name. */
  session: {
    envelope: { mailFrom: false | { address: string }; rcptTo: { address: string; dsn?: { notify?: string[]; orcpt?: string } }[] } & Parameters<typeof paramsFromSession>[0];
    remoteAddress: string;
    hostNameAppearsAs?: string;
    openingCommand?: string | false;
    secure?: boolean;
  };
  user?: { name: string; class?: string; sender_domains?: string[]; tags?: Record<string, string> };
  /** The routes chosen at RCPT, and the class they were chosen for. */
  routes?: Map<string, { pool: string; route: number; domain: string }>;
  rcptClass?: string;
  listener: { name: string; class?: string; identity: 'aligned' | 'any' };
  hostname: string;
}

export interface CleanupDeps {
  classes: () => { header: string; sender_domains: Record<string, string> };
  route: (q: RouteQuery) => RouteChoice | null;
  /** The DKIM-Signature header for the message, with the key of the first of these domains that has one ('' for none). */
  signatureFor: (message: Buffer | string, domains: (string | undefined)[], prefix?: Buffer) => Promise<string>;
  /** One-click unsubscribe per class (`unsubscribe:` in the config), if configured. */
  unsubscribe?: () => UnsubscribeSettings | undefined;
  /** A pause of this class or tag (its complaint rate): the reply that refuses the message for now. */
  paused?: (cls: string | undefined, tags: Record<string, string>) => Reply | undefined;
  log: Logger;
}

export async function cleanup(i: CleanupInput, deps: CleanupDeps): Promise<{ message: InboundMessage } | { reply: Reply }> {
  const { got, session } = i;
  const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
  const senderDomain = domainOf(sender) || undefined;
  const cls = classOf({ userClass: i.user?.class, headerClass: got.classValue && /^[A-Za-z0-9_.-]+$/.test(got.classValue) ? got.classValue : undefined, senderDomain, listenerClass: i.listener.class }, deps.classes().sender_domains);
  const rcpts = session.envelope.rcptTo.map((r) => r.address);
  const routes = new Map(i.routes);
  if (cls !== i.rcptClass) {
    for (const address of rcpts) {
      const domain = domainOf(address);
      const choice = deps.route({ domain, class: cls, senderDomain, user: i.user?.name, listener: i.listener.name });
      if (!choice) return { reply: { code: 550, text: `5.4.4 No route to ${domain} for class ${cls}` } };
      routes.set(address, { pool: choice.rule.pool, route: choice.index, domain });
    }
  }
  const who = identity({ user: i.user, author: authorOf(got.header), senderDomain, rule: i.listener.identity });
  if (!who.ok) return { reply: { code: who.code, text: who.text } };
  // The application's tags, then the user's from the config (binding, like its class).
  const tags = { ...parseTags(got.tagsValue), ...(i.user?.tags ?? {}) };
  const paused = deps.paused?.(cls, tags);
  if (paused) return { reply: paused };
  const header = got.header.subarray(0, Math.min(got.header.length, 64 * 1024)).toString('latin1');
  const unsub = unsubscribeDecision({ header, cls: cls ?? '', recipients: rcpts, senderDomain: senderDomain ?? '', tags, now: Date.now(), settings: deps.unsubscribe?.() });
  if (unsub.kind === 'refuse') return { reply: { code: unsub.code, text: unsub.text } };
  if (unsub.kind === 'not-added') deps.log.info({ listener: i.listener.name, class: cls, id: got.incoming.id }, `List-Unsubscribe not added: ${unsub.why}`);
  const added = unsub.kind === 'add' ? Buffer.from(unsub.fields, 'latin1') : undefined;
  let signature: string;
  try {
    await got.incoming.close();
    signature = await deps.signatureFor(got.incoming.content(), who.signFor, added);
  } catch (e) {
    deps.log.error({ listener: i.listener.name, err: (e as Error).message }, 'DKIM signing failed');
    // A worker that died or hung, or a key that failed: nothing is acknowledged, the client retries.
    return { reply: { code: 451, text: '4.3.0 Signing failed (temporary), please try again later' } };
  }
  const messageId = /^message-id:\s*(<[^>\r\n]*>)/im.exec(header)?.[1];
  const received =
    `Received: from ${session.hostNameAppearsAs || 'unknown'} ([${session.remoteAddress}])\r\n` +
    `\tby ${i.hostname} (smtplb) with ${protocolOf(session, !!i.user)} id ${got.incoming.id}\r\n` +
    `\t${rcpts.length === 1 ? `for <${rcpts[0]}>` : ''}; ${new Date().toUTCString().replace('GMT', '+0000')}\r\n`;
  return {
    message: {
      sender,
      recipients: session.envelope.rcptTo.map((r) => ({ address: r.address, ...routes.get(r.address)!, dsn: rcptDsnFrom(r.dsn) })),
      params: { ...paramsFromSession(session.envelope), ...signedDomain(signature) },
      listener: i.listener.name,
      user: i.user?.name,
      class: cls,
      client: session.remoteAddress,
      messageId,
      tags,
      incoming: got.incoming,
      prefix: Buffer.concat([Buffer.from(received + signature, 'latin1'), added ?? Buffer.alloc(0)]),
    },
  };
}

/** The domain smtplb signed for (a 7-bit conversion later signs again only for it). */
function signedDomain(signature: string): { signed?: string } {
  const d = /[;\s]d=([^;\s]+)/.exec(signature.replace(/\r\n[ \t]/g, ' '))?.[1];
  return d ? { signed: d.toLowerCase() } : {};
}

/**
 * The Received line's `with` (RFC 3848, RFC 6531): SMTP after HELO; after EHLO ESMTP, or
 * UTF8SMTP when the transaction used SMTPUTF8, with S for TLS and A for AUTH.
 */
export function protocolOf(session: { openingCommand?: string | false; secure?: boolean; envelope?: { smtpUtf8?: boolean } }, authenticated: boolean): string {
  if (session.openingCommand !== 'EHLO') return 'SMTP';
  return `${session.envelope?.smtpUtf8 ? 'UTF8SMTP' : 'ESMTP'}${session.secure ? 'S' : ''}${authenticated ? 'A' : ''}`;
}
