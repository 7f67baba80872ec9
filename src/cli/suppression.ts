// `smtplb suppression list|add|remove|import|export`: the suppression list through the admin API.
import fs from 'node:fs';
import { admin, UsageError } from './admin-client.js';
import { CSV_COLUMNS, csvField, importRows } from '../suppression/csv.js';

export const SUPPRESSION_USAGE = `  suppression list [--scope S] [--reason TEXT] [--class C] [--address A] -c FILE [--json]
  suppression add ADDRESS [--scope global|DOMAIN] [--reason "..."] [--for 90d] -c FILE
  suppression remove ADDRESS [--scope S] -c FILE      (every scope without --scope)
  suppression import FILE.csv [--scope S] -c FILE     (columns address[,scope,reason,expires])
  suppression export [--scope S] -c FILE > FILE.csv
`;

interface Entry { address: string; scope: string; reason: string; class: string | null; source: string; created: string; expires: string | null }
interface Page { suppressions: Entry[]; next?: string }

export interface SuppressionOptions { scope?: string; reason?: string; class?: string; address?: string; for?: string; json?: boolean }

/** Entries per POST: well under the admin API's 64 KB body and its 500 entries. */
const BATCH_BYTES = 48 * 1024;
const BATCH_MAX = 500;

export async function runSuppression(file: string, action: string | undefined, arg: string | undefined, o: SuppressionOptions): Promise<void> {
  switch (action) {
    case 'list': {
      const q = new URLSearchParams();
      for (const k of ['scope', 'reason', 'class', 'address'] as const) if (o[k]) q.set(k, o[k]!);
      const all: Entry[] = [];
      // Pages of 1,000 up to 100,000 entries on a terminal; `export` is for the whole list.
      for (let after: string | undefined, n = 0; n < 100; n++) {
        if (after) q.set('after', after);
        q.set('limit', '1000');
        const page = (await admin(file, 'GET', `/api/suppressions?${q}`)) as Page;
        all.push(...page.suppressions);
        if (!page.next || o.address) break;
        after = page.next;
      }
      if (o.json) return console.log(JSON.stringify({ suppressions: all }, null, 2));
      if (!all.length) return console.log('no suppressed addresses');
      for (const e of all) console.log(`${e.address.padEnd(36)} ${e.scope.padEnd(20)} ${e.source.padEnd(9)} ${e.created.slice(0, 19)}  ${e.expires ? `until ${e.expires.slice(0, 19)}  ` : ''}${e.reason}`);
      return;
    }
    case 'add': {
      if (!arg) throw new UsageError(`usage:\n${SUPPRESSION_USAGE}`);
      await admin(file, 'POST', '/api/suppressions', { address: arg, scope: o.scope ?? 'global', reason: o.reason, expires: o.for });
      return console.log(`${arg.toLowerCase()} suppressed for ${o.scope ?? 'global'}`);
    }
    case 'remove': {
      if (!arg) throw new UsageError(`usage:\n${SUPPRESSION_USAGE}`);
      const q = new URLSearchParams({ address: arg });
      if (o.scope) q.set('scope', o.scope);
      const r = (await admin(file, 'DELETE', `/api/suppressions?${q}`)) as { removed: number };
      return console.log(`${arg.toLowerCase()}: ${r.removed} entr${r.removed === 1 ? 'y' : 'ies'} removed`);
    }
    case 'import': {
      if (!arg) throw new UsageError(`usage:\n${SUPPRESSION_USAGE}`);
      let text: string;
      try {
        text = fs.readFileSync(arg, 'utf8');
      } catch (e) {
        throw new UsageError(`cannot read ${arg}: ${(e as Error).message}`);
      }
      const parsed = importRows(text);
      if ('error' in parsed) throw new UsageError(`${arg}: ${parsed.error}`);
      let batch: unknown[] = [];
      let bytes = 0;
      let sent = 0;
      const send = async () => {
        if (!batch.length) return;
        try {
          await admin(file, 'POST', '/api/suppressions', batch);
        } catch (e) {
          throw new UsageError(`${arg}: after ${sent} entries: ${(e as Error).message}`);
        }
        sent += batch.length;
        batch = [];
        bytes = 0;
      };
      const now = Date.now();
      for (const r of parsed.rows) {
        // An exported time (ISO 8601) comes back as what is left of it; one already past is skipped.
        let expires = r.expires;
        if (expires && /^\d{4}-\d\d-\d\dT/.test(expires)) {
          const left = Date.parse(expires) - now;
          if (!(left > 0)) continue;
          expires = `${Math.ceil(left / 1000)}s`;
        }
        const entry = { address: r.address, scope: r.scope ?? o.scope ?? 'global', reason: r.reason ?? o.reason ?? 'import', source: r.source ?? 'import', class: r.class, expires };
        const size = JSON.stringify(entry).length + 1;
        if (batch.length >= BATCH_MAX || bytes + size > BATCH_BYTES) await send();
        batch.push(entry);
        bytes += size;
      }
      await send();
      return console.log(`${sent} entries imported from ${arg}`);
    }
    case 'export': {
      const q = new URLSearchParams({ limit: '1000' });
      if (o.scope) q.set('scope', o.scope);
      process.stdout.write(`${CSV_COLUMNS.join(',')}\n`);
      for (let after: string | undefined; ; ) {
        if (after) q.set('after', after);
        const page = (await admin(file, 'GET', `/api/suppressions?${q}`)) as Page;
        process.stdout.write(page.suppressions.map((e) => `${CSV_COLUMNS.map((c) => csvField(e[c])).join(',')}\n`).join(''));
        if (!page.next) return;
        after = page.next;
      }
    }
    default:
      throw new UsageError(`usage:\n${SUPPRESSION_USAGE}`);
  }
}
