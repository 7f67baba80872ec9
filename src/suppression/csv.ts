// The suppression list as CSV (RFC 4180: fields with commas, quotes or line breaks are quoted,
// quotes doubled), for `smtplb suppression import` and `export`. Pure. Hand-written: two
// dozen lines, where a CSV library would be a dependency for one flat table.

export const CSV_COLUMNS = ['address', 'scope', 'reason', 'class', 'source', 'created', 'expires'] as const;

/** Rows of a CSV text; a field's quotes are removed. Bounded: one pass over the text. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === '') quoted = true;
    else if (c === ',') row.push(field), (field = '');
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field), (field = '');
      if (row.some((f) => f !== '')) rows.push(row);
      row = [];
    } else field += c;
  }
  row.push(field);
  if (row.some((f) => f !== '')) rows.push(row);
  return rows;
}

export function csvField(v: string | number | null | undefined): string {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export interface ImportRow {
  address: string;
  scope?: string;
  reason?: string;
  /** A duration (`30d`), or a time as `export` writes it (ISO 8601). */
  expires?: string;
  source?: string;
  class?: string;
}

/**
 * Import rows from CSV: a header line naming the columns (`address` required; `scope`,
 * `reason`, `expires` used; others ignored), or no header and the address first. `line` in an
 * error is the CSV line's number.
 */
export function importRows(text: string): { rows: ImportRow[] } | { error: string } {
  const table = parseCsv(text.replace(/^\uFEFF/, ''));
  if (!table.length) return { rows: [] };
  const head = table[0].map((h) => h.trim().toLowerCase());
  const named = head.includes('address');
  const col = (name: string) => (named ? head.indexOf(name) : name === 'address' ? 0 : name === 'scope' ? 1 : name === 'reason' ? 2 : -1);
  const rows: ImportRow[] = [];
  for (const [i, r] of table.slice(named ? 1 : 0).entries()) {
    const get = (name: string) => {
      const k = col(name);
      const v = k >= 0 ? r[k]?.trim() : undefined;
      return v ? v : undefined;
    };
    const address = get('address');
    if (!address) return { error: `line ${i + (named ? 2 : 1)}: no address` };
    rows.push({ address, scope: get('scope'), reason: get('reason'), expires: get('expires'), ...(get('source') ? { source: get('source') } : {}), ...(get('class') ? { class: get('class') } : {}) });
  }
  return { rows };
}
