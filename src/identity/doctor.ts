// `smtplb doctor`: does the world's DNS agree with the identity smtplb sends mail under? For
// every sending domain (SPF, DKIM, DMARC, MX, MTA-STS) and every egress address (PTR/HELO), it
// gathers the answers (gather.ts), judges them (checks.ts) and reports findings with their
// fixes. The CLI prints the report; the daemon runs the same function every hour (monitor.ts).
import type { Config } from '../config/schema.js';
import { checkDkim, checkDmarc, checkMtaSts, checkMx, checkPtr, checkSpf, type CheckResult, type Finding } from './checks.js';
import { gatherDkim, gatherDmarc, gatherMtaSts, gatherMx, gatherPtr, gatherSpf, resolveEgress } from './gather.js';
import { dkimFor, egressByPool, isPrivateAddress, poolsFor, sendingDomains, type Egress, type SendingDomain } from './inventory.js';
import { chooseResolver, createLookup, parseResolver, type Lookup } from './lookup.js';
import { formatReport, type Report, type SubjectReport } from './report.js';

export type { Report, SubjectReport } from './report.js';

/** Run `fn` over `items`, at most `limit` at a time. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  }));
  return out;
}

export async function runChecks(config: Config, opts: { lookup: Lookup; domain?: string; timeout?: number }): Promise<Report> {
  const { lookup } = opts;
  // A resolver given by name that does not resolve: one clear failure, not one per record.
  await lookup.ready;
  const notes: string[] = [];
  let domains: SendingDomain[] = sendingDomains(config);
  if (opts.domain) {
    const d = opts.domain.toLowerCase().replace(/\.$/, '');
    domains = domains.filter((x) => x.domain === d);
    if (!domains.length) {
      domains = [{ domain: d, why: ['--domain'], dkim: dkimFor(config, d) }];
      notes.push(`${d} is not a sending domain of this config (no DKIM key, user or class names it); checked anyway`);
    }
  }
  for (const p of [...Object.keys(config.dkim?.domains ?? {}), ...config.users.flatMap((u) => u.sender_domains ?? []), ...Object.keys(config.classes.sender_domains)]) {
    if (!opts.domain && (p.startsWith('*') || p.startsWith('.'))) notes.push(`${p} is a pattern: check each domain it covers with --domain`);
  }

  // Egress identities: every pool's, or (with --domain) the pools that send that domain's mail.
  const poolsOf = new Map(domains.map((d) => [d.domain, poolsFor(config, d.domain)]));
  const wantedPools = opts.domain ? new Set([...poolsOf.values()].flat()) : new Set(Object.keys(config.pools));
  const specs = [...egressByPool(config)].filter(([p]) => wantedPools.has(p)).flatMap(([, s]) => s);
  const resolved = await resolveEgress(specs, lookup);
  notes.push(...resolved.notes);
  const publicEgress: Egress[] = [];
  for (const e of resolved.egress) {
    if (isPrivateAddress(e.ip)) notes.push(`${e.pool}/${e.name} (${e.ip}) is a private address: its mail reaches the Internet through an address smtplb cannot see, so SPF and PTR are not checked for it`);
    else publicEgress.push(e);
  }
  for (const [name, p] of Object.entries(config.pools)) if (wantedPools.has(name) && p.kind === 'mx' && p.sources.length === 0) notes.push(`pool ${name} has no sources: it sends from this machine's default address, which smtplb cannot tell; SPF and PTR are not checked for it`);

  const subjects: SubjectReport[] = [];
  const timeout = opts.timeout ?? 5000;
  const domainReports = await mapLimit(domains, 8, async (d) => {
    const pools = poolsOf.get(d.domain) ?? [];
    if (!pools.length) notes.push(`no route carries mail from ${d.domain}: no egress address is checked against its SPF`);
    const egress = publicEgress.filter((e) => pools.includes(e.pool));
    const [spf, dkim, dmarc, mx, sts] = await Promise.all([
      gatherSpf(d.domain, egress, lookup),
      d.dkim ? gatherDkim(d.domain, d.dkim, lookup) : undefined,
      gatherDmarc(d.domain, lookup),
      gatherMx(d.domain, lookup),
      gatherMtaSts(d.domain, lookup, timeout),
    ]);
    const results: CheckResult[] = [];
    const spfResult = checkSpf(d.domain, spf, egress);
    results.push(spfResult);
    const dkimResult = dkim ? checkDkim(d.domain, dkim) : undefined;
    if (dkimResult) results.push(dkimResult);
    const dkimOk = !!dkimResult && dkimResult.findings.length === 0;
    const spfOk = spf.perIp.length === 0 ? null : spf.perIp.every((p) => p.eval.result === 'pass');
    results.push(checkDmarc(d.domain, dmarc, { dkim: dkimOk, spf: spfOk, dkimConfigured: !!d.dkim }));
    const mxResult = checkMx(d.domain, mx);
    results.push(mxResult);
    const mxHosts = mx.mx.ok ? mx.mx.value.map((m) => m.exchange).filter((h) => h && h !== '.') : [];
    results.push(checkMtaSts(d.domain, sts, mxHosts));
    return { subject: d.domain, kind: 'domain' as const, about: `${d.why.join(', ')}; sent through ${pools.length ? pools.join(', ') : 'no pool'}${egress.length ? ` from ${[...new Set(egress.map((e) => e.ip))].join(', ')}` : ''}`, results };
  });
  subjects.push(...domainReports);

  // PTR/HELO: one check per (address, HELO).
  const groups = new Map<string, { ip: string; helo?: string; egress: Egress[] }>();
  for (const e of publicEgress) {
    const key = `${e.ip}|${e.helo ?? ''}`;
    const g = groups.get(key) ?? { ip: e.ip, helo: e.helo, egress: [] };
    g.egress.push(e);
    groups.set(key, g);
  }
  const egressReports = await mapLimit([...groups.values()], 8, async (g) => {
    const subject = g.helo?.toLowerCase() ?? g.ip;
    const facts = await gatherPtr(g.ip, g.egress, g.helo, lookup);
    return { subject, kind: 'egress' as const, about: `${g.egress.map((e) => `pool ${e.pool}, ${e.kind} ${e.name}`).join('; ')}, ${g.ip}${g.helo ? `, EHLO ${g.helo}` : ''}`, results: [checkPtr(subject, facts)] };
  });
  subjects.push(...egressReports);

  const findings = subjects.flatMap((s) => s.results.flatMap((r) => r.findings));
  return {
    checked_at: new Date().toISOString(),
    resolver: lookup.resolver,
    subjects,
    findings,
    errors: findings.filter((f) => f.severity === 'error').length,
    warnings: findings.filter((f) => f.severity === 'warning').length,
    notes: [...new Set(notes)],
  };
}

/** Rows for smtplb_identity_problems{domain,check}: problems (errors and warnings) per subject and check, 0 where the check is clean. */
export function problemRows(report: Report): { domain: string; check: string; problems: number }[] {
  const rows = new Map<string, { domain: string; check: string; problems: number }>();
  for (const s of report.subjects) {
    for (const r of s.results) {
      const key = `${s.subject}|${r.check}`;
      const row = rows.get(key) ?? { domain: s.subject, check: r.check, problems: 0 };
      row.problems += r.findings.length;
      rows.set(key, row);
    }
  }
  return [...rows.values()];
}

/** `smtplb doctor -c FILE [--domain D] [--resolver HOST:PORT] [--json]`: prints the report; 1 when there are errors. */
export async function doctorCommand(config: Config, opts: { domain?: string; resolver?: string; json?: boolean }): Promise<number> {
  const resolver = chooseResolver(config, opts.resolver ? parseResolver(opts.resolver) : undefined);
  const lookup = createLookup(resolver, { timeout: config.doctor?.timeout ?? 2000 });
  try {
    const report = await runChecks(config, { lookup, domain: opts.domain, timeout: Math.max(5000, config.doctor?.timeout ?? 0) });
    process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
    return report.errors ? 1 : 0;
  } finally {
    lookup.cancel();
  }
}
