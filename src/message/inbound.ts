// What the SMTP side hands to the queue or to cut-through (the narrow interface between smtpd
// and the rest, as Postfix's cleanup hands a queue file to qmgr), and the reply it gets back.
import type { Incoming } from '../spool/incoming.js';
import type { Envelope } from '../spool/records.js';

/** The envelope, and the message whole, or as the spool file it was written to as it arrived. */
export type InboundMessage = Omit<Envelope, 'dsnOf'> & ({ body: Buffer } | { incoming: Incoming; prefix: Buffer | null });

/** The reply for an accepted or refused message: code and text with its enhanced code. */
export interface Reply { code: number; text: string }

/** A message as the runtime holds it once received: its spool file (an Incoming), not bytes. */
export type InboundInSpool = Exclude<InboundMessage, { body: Buffer }>;
