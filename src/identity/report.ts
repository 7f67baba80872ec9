// The doctor's report as text for a terminal: one block per sending domain and per egress
// identity, a line per check, and under each problem why it matters and the record that fixes
// it. Kept apart from the checks so the JSON form (`--json`, /api/status) and the text say the
// same thing.
import type { CheckResult, Finding } from './checks.js';

export interface SubjectReport {
  /** A sending domain, or an egress identity's HELO name (its address when it has none). */
  subject: string;
  kind: 'domain' | 'egress';
  /** Where it comes from: "dkim, user app" / "pool direct, source ip-b, 192.0.2.11". */
  about: string;
  results: CheckResult[];
}

export interface Report {
  checked_at: string;
  resolver: string;
  subjects: SubjectReport[];
  findings: Finding[];
  errors: number;
  warnings: number;
  /** What was not checked, and why (private addresses, names that do not resolve, patterns). */
  notes: string[];
}

const LABEL = { ok: 'ok', note: 'note', warning: 'WARN', error: 'ERROR' } as const;

export function formatReport(r: Report): string {
  const lines: string[] = [];
  const domains = r.subjects.filter((s) => s.kind === 'domain').length;
  const egress = r.subjects.length - domains;
  lines.push(`smtplb doctor: ${domains} sending ${domains === 1 ? 'domain' : 'domains'}, ${egress} egress ${egress === 1 ? 'identity' : 'identities'}, resolver ${r.resolver}`);
  for (const s of r.subjects) {
    lines.push('', `${s.subject} (${s.about})`);
    for (const c of s.results) {
      if (c.findings.length === 0) {
        lines.push(`  ${LABEL[c.status].padEnd(6)} ${c.check.padEnd(8)} ${c.summary}`);
        continue;
      }
      for (const f of c.findings) {
        lines.push(`  ${LABEL[f.severity].padEnd(6)} ${c.check.padEnd(8)} ${f.problem} [${f.code}]`);
        lines.push(`  ${''.padEnd(6)} ${''.padEnd(8)} why: ${f.why}`);
        lines.push(`  ${''.padEnd(6)} ${''.padEnd(8)} fix: ${f.fix}`);
      }
    }
  }
  if (r.notes.length) {
    lines.push('', 'not checked:');
    for (const n of r.notes) lines.push(`  - ${n}`);
  }
  lines.push('', r.errors || r.warnings ? `${r.errors} ${r.errors === 1 ? 'error' : 'errors'}, ${r.warnings} ${r.warnings === 1 ? 'warning' : 'warnings'}` : 'no problems found');
  return `${lines.join('\n')}\n`;
}
