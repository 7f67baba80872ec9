// How a queued recipient's progress reads in the admin API: one shape for the queue listing
// (server.ts) and the destination page (history.ts).
import type { RecipientRow } from '../spool/spool.js';

export function recipientProgress(r: RecipientRow) {
  return {
    pool: r.pool,
    state: r.state,
    attempts: r.attempts,
    next_attempt: r.state === 'queued' ? new Date(r.next_at).toISOString() : null,
    last_code: r.last_code,
    last_reply: r.last_reply,
    last_server: r.last_server,
  };
}
