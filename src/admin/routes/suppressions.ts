// The suppression list: a page of entries (filtered by scope, reason, class, source), entries
// added by the operator or an import, an address removed. Answered from the node's one list
// file (src/suppression/list.ts), which every process of the node shares: no fan-out.
import type http from 'node:http';
import { json, readBody, type AdminContext, type Routes } from '../http.js';
import { parseDuration } from '../../config/units.js';
import { MAX_PAGE } from '../../suppression/list.js';
import { normalAddress, parseScope, validAddress, type SuppressionEntry } from '../../suppression/rules.js';
import { OUTCOME_CLASSES, type OutcomeClass } from '../../outcomes/reply-class.js';

/** At most this many entries per POST (an import is sent in batches). */
export const MAX_BATCH = 500;

export function register(r: Routes, ctx: AdminContext): void {
  const listOr404 = (res: http.ServerResponse) => {
    const list = ctx.suppressions?.();
    if (!list) json(res, 404, { error: 'no suppression list here: smtplb has no mode: smtp listener' });
    return list;
  };
  r.route('GET', /^\/api\/suppressions$/, (req, res) => {
    const list = listOr404(res);
    if (!list) return;
    const q = new URL(req.url ?? '/', 'http://admin').searchParams;
    const limit = q.has('limit') ? Number(q.get('limit')) : 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) return json(res, 400, { error: `limit must be a whole number 1-${MAX_PAGE}` });
    const scope = q.get('scope') ?? undefined;
    if (scope !== undefined && parseScope(scope) === null) return json(res, 400, { error: 'scope must be global or a domain' });
    const cls = q.get('class') ?? undefined;
    if (cls !== undefined && !(OUTCOME_CLASSES as readonly string[]).includes(cls)) return json(res, 400, { error: `class must be one of ${OUTCOME_CLASSES.join(', ')}` });
    const address = q.get('address');
    if (address !== null) {
      // One address: its entries in every scope (or the one asked), in force.
      const hits = list.forAddress(normalAddress(address)).filter((e) => !scope || e.scope === parseScope(scope));
      return json(res, 200, { suppressions: hits.map(view) });
    }
    if (q.has('after') && !/^[A-Za-z0-9_-]{1,2000}$/.test(q.get('after')!)) return json(res, 400, { error: 'after must be the next of the previous page' });
    const page = list.list({ scope: scope && parseScope(scope)!, class: cls, reason: q.get('reason') ?? undefined, source: q.get('source') ?? undefined, after: q.get('after') ?? undefined, limit });
    json(res, 200, { suppressions: page.entries.map(view), ...(page.next ? { next: page.next } : {}) });
  });
  r.route('POST', /^\/api\/suppressions$/, async (req, res) => {
    const list = listOr404(res);
    if (!list) return;
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req)) || 'null');
    } catch {
      return json(res, 400, { error: 'the body must be JSON: an entry { address, scope, reason, expires } or a list of them' });
    }
    const items = Array.isArray(body) ? body : [body];
    if (!items.length || items.length > MAX_BATCH) return json(res, 400, { error: `give 1 to ${MAX_BATCH} entries per request` });
    const now = Date.now();
    const entries: SuppressionEntry[] = [];
    for (const [i, item] of items.entries()) {
      const e = entryOf(item, now);
      if (typeof e === 'string') return json(res, 400, { error: items.length > 1 ? `entry ${i + 1}: ${e}` : e });
      entries.push(e);
    }
    list.add(entries);
    for (const e of entries) ctx.metrics.suppressionsAdded.labels(e.source).inc();
    ctx.log.info({ entries: entries.length, source: entries[0].source }, `suppression list: ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'} added (${entries.slice(0, 3).map((e) => `${e.address} for ${e.scope}`).join(', ')}${entries.length > 3 ? ', ...' : ''})`);
    json(res, 200, { ok: true, added: entries.length, suppressions: entries.length <= 10 ? entries.map(view) : undefined });
  });
  r.route('DELETE', /^\/api\/suppressions$/, (req, res) => {
    const list = listOr404(res);
    if (!list) return;
    const q = new URL(req.url ?? '/', 'http://admin').searchParams;
    const address = q.get('address');
    if (!address || !validAddress(address)) return json(res, 400, { error: 'give ?address=local@domain (and &scope= for one scope only)' });
    const scopeText = q.get('scope');
    const scope = scopeText === null ? undefined : parseScope(scopeText);
    if (scope === null) return json(res, 400, { error: 'scope must be global or a domain' });
    const removed = list.remove(normalAddress(address), scope);
    if (!removed) return json(res, 404, { error: `${normalAddress(address)} is not suppressed${scope ? ` for ${scope}` : ''}` });
    ctx.log.info({ address: normalAddress(address), scope: scope ?? '*', removed }, `suppression list: ${normalAddress(address)} removed`);
    json(res, 200, { ok: true, removed });
  });
}

/** An entry from a request, or why it is refused. */
function entryOf(item: unknown, now: number): SuppressionEntry | string {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) return 'an entry is an object { address, scope, reason, expires }';
  const o = item as Record<string, unknown>;
  if (typeof o.address !== 'string' || !validAddress(o.address)) return 'address must be local@domain';
  const scope = o.scope === undefined ? 'global' : typeof o.scope === 'string' ? parseScope(o.scope) : null;
  if (scope === null) return 'scope must be global or a domain';
  if (o.reason !== undefined && (typeof o.reason !== 'string' || o.reason.length > 200)) return 'reason must be text of at most 200 characters';
  const source = o.source === undefined ? 'operator' : o.source;
  if (typeof source !== 'string' || !['operator', 'import', 'unsubscribe', 'complaint', 'bounce'].includes(source)) return 'source must be operator, import, unsubscribe, complaint or bounce';
  const cls = o.class === undefined || o.class === null ? null : o.class;
  if (cls !== null && !(OUTCOME_CLASSES as readonly unknown[]).includes(cls)) return `class must be one of ${OUTCOME_CLASSES.join(', ')}`;
  let expires: number | null = null;
  if (o.expires !== undefined && o.expires !== null) {
    if (typeof o.expires !== 'string') return 'expires is a duration such as 30d';
    try {
      const ms = parseDuration(o.expires);
      if (ms <= 0 || ms > 100 * 365 * 86_400_000) return 'expires must be longer than 0 and at most 100 years (leave it out for no end)';
      expires = now + ms;
    } catch (e) {
      return `expires: ${(e as Error).message}`;
    }
  }
  return { address: normalAddress(o.address), scope, reason: typeof o.reason === 'string' && o.reason.trim() ? o.reason.trim() : source, class: cls as OutcomeClass | null, source, created: now, expires };
}

function view(e: SuppressionEntry) {
  return { ...e, created: new Date(e.created).toISOString(), expires: e.expires === null ? null : new Date(e.expires).toISOString() };
}
