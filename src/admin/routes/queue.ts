// The queue tools (Postfix's postqueue and postsuper): list, show, flush, and hold, release,
// delete, bounce or flush one message. Under workers each is answered by the shards.
import { json, type AdminContext, type Routes } from '../http.js';
import { parseDuration } from '../../config/units.js';
import type { MessageRow, RecipientRow } from '../../spool/records.js';
import { fanOut, mergeFlush, mergeQueueList, ownerAnswer } from '../fanout.js';
import { recipientProgress } from '../views.js';

export function register(r: Routes, ctx: AdminContext): void {
  r.relayRoute('GET', /^\/api\/queue$/, (req, res) => {
    const relay = r.relayOr404(res);
    if (!relay) return;
    const q = new URL(req.url ?? '/', 'http://admin').searchParams;
    let olderThanMs: number | undefined;
    if (q.get('older_than')) {
      try {
        olderThanMs = parseDuration(q.get('older_than')!);
      } catch (e) {
        return json(res, 400, { error: (e as Error).message });
      }
    }
    const list = relay.spool.view.list({ domain: q.get('domain') ?? undefined, pool: q.get('pool') ?? undefined, state: q.get('state') ?? undefined, olderThanMs });
    json(res, 200, { messages: list.map((m) => messageView(m, (r) => relay.waitingFor(r))), counts: relay.spool.counts() });
  }, (shards, path) => fanOut(shards, ctx.token, 'GET', path).then((a) => mergeQueueList(a)));
  r.relayRoute('GET', /^\/api\/queue\/([A-Za-z0-9]+)$/, (_req, res, [id]) => {
    const relay = r.relayOr404(res);
    if (!relay) return;
    const m = relay.spool.message(id);
    if (!m) return json(res, 404, { error: `no message ${id} in the queue` });
    json(res, 200, { ...messageView({ ...m, recipients: relay.spool.recipients(id) }, (r) => relay.waitingFor(r), (code, text) => relay.outcomes.classOf(code, text), (r) => relay.siteOf(r.pool, r.domain)), history: relay.spool.view.events(id).map((e) => ({ ...e, at: new Date(e.at).toISOString() })) });
  }, async (shards, path) => ownerAnswer(await fanOut(shards, ctx.token, 'GET', path)));
  r.relayRoute('POST', /^\/api\/queue\/flush$/, async (req, res) => {
    const relay = r.relayOr404(res);
    if (!relay) return;
    const q = new URL(req.url ?? '/', 'http://admin').searchParams;
    const ids = relay.spool.view.list({ domain: q.get('domain') ?? undefined, state: 'queued' }).map((m) => m.id);
    for (const id of ids) await relay.spool.setState(id, ['queued'], 'queued', Date.now(), 'flushed');
    relay.scheduler.wake();
    json(res, 200, { ok: true, flushed: ids.length });
  }, async (shards, path, body) => mergeFlush(await fanOut(shards, ctx.token, 'POST', path, body)));
  r.relayRoute('POST', /^\/api\/queue\/([A-Za-z0-9]+)\/(hold|release|delete|bounce|flush)$/, async (_req, res, [id, action]) => {
    const relay = r.relayOr404(res);
    if (!relay) return;
    const m = relay.spool.message(id);
    if (!m) return json(res, 404, { error: `no message ${id} in the queue` });
    let changed = 0;
    switch (action) {
      case 'hold':
        changed = await relay.spool.setState(id, ['queued'], 'held', Date.now(), 'held by operator');
        break;
      case 'release':
        changed = await relay.spool.setState(id, ['held'], 'queued', Date.now(), 'released by operator');
        // Waiting for its sender's records (compliance: hold): let it go now despite them.
        if (relay.compliance.release(id)) changed += await relay.spool.setState(id, ['queued'], 'queued', Date.now(), 'released by operator (compliance)');
        break;
      case 'flush':
        changed = await relay.spool.setState(id, ['queued'], 'queued', Date.now(), 'flushed by operator');
        break;
      case 'delete':
        changed = relay.spool.recipients(id).length;
        await relay.spool.remove(id);
        break;
      case 'bounce': {
        changed = await relay.scheduler.bounceNow(id);
        break;
      }
    }
    relay.scheduler.wake();
    ctx.log.info({ queue_id: id, action }, `admin: queue ${action} ${id}`);
    json(res, 200, { ok: true, id, action, recipients: changed });
  }, async (shards, path, body) => ownerAnswer(await fanOut(shards, ctx.token, 'POST', path, body)));
}

function messageView(m: MessageRow & { recipients: RecipientRow[] }, waitingFor: (r: RecipientRow) => string | null, classOf?: (code: number | null, text: string) => string, siteOf?: (r: RecipientRow) => string | null) {
  return {
    id: m.id,
    created: new Date(m.created).toISOString(),
    age_seconds: Math.round((Date.now() - m.created) / 1000),
    sender: m.sender,
    size: m.size,
    message_id: m.message_id,
    listener: m.listener,
    user: m.user,
    class: m.class,
    client: m.client,
    dsn_of: m.dsn_of,
    recipients: m.recipients.map((r) => ({
      address: r.rcpt,
      domain: r.domain,
      ...recipientProgress(r),
      // The class of the last failure (src/outcomes/reply-class.ts), with the operator's rules.
      reply_class: classOf && r.last_reply !== null && (r.last_code === null || r.last_code >= 400) ? classOf(r.last_code, r.last_reply) : null,
      waiting_for: waitingFor(r),
      // The MX site its limits count under (routing/sites.ts), when one is known.
      ...(siteOf ? { site: siteOf(r) } : {}),
    })),
  };
}
